"""The published datasets read from files written in their exact published formats, with the checksums passed in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from datafiles import md5, random_images, write_cifar10, write_cifar100, write_mnist, write_svhn

from searcher.data import DatasetError, DatasetOptions, load_dataset
from searcher.data.archives import MARKER

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, connections are refused at once


def cifar_like(rng, classes, per_class, images=None):
    labels = rng.permutation(np.repeat(np.arange(classes), per_class))
    return (random_images(rng, len(labels)) if images is None else images), labels


def make_files(name: str, root: Path, rng: np.random.Generator) -> tuple[DatasetOptions, dict]:
    """Small files for `name` under root/<name>/ and the options (with their checksums) to load them."""
    folder = root / name
    if name == "cifar10":
        train, test = cifar_like(rng, 10, 6), cifar_like(rng, 10, 2)
        archive = write_cifar10(folder, train, test)
        checksums = {archive.name: md5(archive)}
    elif name == "cifar100":
        train, test = cifar_like(rng, 100, 2), cifar_like(rng, 100, 1)
        archive = write_cifar100(folder, train, test)
        checksums = {archive.name: md5(archive)}
    elif name in ("mnist", "fashion_mnist"):
        train = (rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), rng.permutation(np.repeat(np.arange(10), 6)).astype(np.uint8))
        test = (rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.repeat(np.arange(10), 2).astype(np.uint8))
        checksums = write_mnist(folder, train, test)
        train, test = (train[0][:, None], train[1]), (test[0][:, None], test[1])
    elif name == "svhn":
        train, test = cifar_like(rng, 10, 6), cifar_like(rng, 10, 2)
        checksums = {"train_32x32.mat": write_svhn(folder / "train_32x32.mat", *train), "test_32x32.mat": write_svhn(folder / "test_32x32.mat", *test)}
    else:
        raise ValueError(name)
    options = DatasetOptions(name=name, data_dir=root, checksums=tuple(checksums.items()), progress=False, mirror=UNREACHABLE)
    return options, {"train": train, "test": test}


def rows(images) -> set[bytes]:
    return {bytes(np.asarray(image).tobytes()) for image in images}


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist", "svhn"])
def test_reader_returns_the_written_images_and_labels(name, tmp_path):
    options, written = make_files(name, tmp_path, np.random.default_rng(0))
    dataset = load_dataset(options)  # the mirror is unreachable: files in data_dir are used without fetching
    test = dataset.test()
    assert torch.equal(test.images, torch.from_numpy(written["test"][0]))  # published order, (N, C, H, W)
    assert test.labels.tolist() == written["test"][1].tolist()
    train_images = torch.cat([dataset.train.images, dataset.val.images])
    train_labels = torch.cat([dataset.train.labels, dataset.val.labels]).tolist()
    assert len(train_labels) == len(written["train"][1])
    by_image = {image.numpy().tobytes(): label for image, label in zip(train_images, train_labels, strict=True)}
    assert by_image == {image.tobytes(): int(label) for image, label in zip(written["train"][0], written["train"][1], strict=True)}
    assert dataset.train.images.dtype == torch.uint8 and dataset.train.labels.dtype == torch.int64
    assert dataset.flip == (name in ("cifar10", "cifar100", "fashion_mnist"))


def test_svhn_label_10_is_the_digit_0_and_extra_joins_training(tmp_path):
    rng = np.random.default_rng(1)
    options, written = make_files("svhn", tmp_path, rng)
    extra = cifar_like(rng, 10, 3)
    digest = write_svhn(tmp_path / "svhn" / "extra_32x32.mat", *extra)
    import scipy.io

    stored = scipy.io.loadmat(tmp_path / "svhn" / "test_32x32.mat")["y"].ravel()
    assert 0 not in stored and 10 in stored  # the file really uses 10 for zero
    dataset = load_dataset(replace(options, extra=True, checksums=options.checksums + (("extra_32x32.mat", digest),)))
    assert len(dataset.train) + len(dataset.val) == len(written["train"][1]) + len(extra[1])
    assert dataset.test().labels.min() == 0 and dataset.num_classes == 10


@pytest.mark.parametrize("name", ["cifar10", "mnist", "svhn"])
def test_class_subset_is_remapped_to_0_to_k_minus_1(name, tmp_path):
    options, written = make_files(name, tmp_path, np.random.default_rng(2))
    dataset = load_dataset(replace(options, classes=(7, 2, 5)))
    assert dataset.num_classes == 3
    test_images, test_labels = written["test"]
    for new, old in enumerate((7, 2, 5)):
        expected = rows(test_images[test_labels == old])
        assert rows(dataset.test().images[dataset.test().labels == new].numpy()) == expected
    assert set(torch.cat([dataset.train.labels, dataset.val.labels]).tolist()) == {0, 1, 2}
    assert "classes=[7, 2, 5]" in dataset.identity


def test_published_statistics_are_used_for_the_whole_dataset_only(tmp_path):
    options, _ = make_files("cifar10", tmp_path, np.random.default_rng(3))
    published = replace(options, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    assert load_dataset(published).mean == (0.49, 0.48, 0.45)
    subset = load_dataset(replace(published, classes=(0, 1)))
    assert subset.mean != (0.49, 0.48, 0.45) and abs(subset.mean[0] - 0.5) < 0.05  # random pixels: computed, about 0.5
    with pytest.raises(DatasetError, match="one per channel"):
        load_dataset(replace(published, mean=(0.5,), std=(0.2,)))


def test_a_file_failing_its_checksum_is_never_used(tmp_path):
    options, _ = make_files("cifar10", tmp_path, np.random.default_rng(4))
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    with pytest.raises(DatasetError) as caught:
        load_dataset(replace(options, checksums=()))  # the published MD5 cannot match a file this test wrote
    message = str(caught.value)
    assert str(archive) in message and "checksum" in message and "delete it and re-run" in message
    assert archive.exists() and not (tmp_path / "cifar10" / "cifar-10-python").exists()  # kept for the user, never extracted


def test_extraction_happens_once_and_is_redone_for_another_archive(tmp_path):
    options, _ = make_files("cifar10", tmp_path, np.random.default_rng(5))
    load_dataset(options)
    marker = tmp_path / "cifar10" / "cifar-10-python" / MARKER
    first = marker.stat().st_mtime_ns
    load_dataset(options)
    assert marker.stat().st_mtime_ns == first
    options, written = make_files("cifar10", tmp_path, np.random.default_rng(6))  # a different archive, same name
    assert torch.equal(load_dataset(options).test().images, torch.from_numpy(written["test"][0]))


def test_missing_files_and_no_network_name_every_file_url_and_path(tmp_path):
    with pytest.raises(DatasetError) as caught:
        load_dataset(DatasetOptions(name="mnist", data_dir=tmp_path, mirror=UNREACHABLE, progress=False))
    message = str(caught.value)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert f"{UNREACHABLE}{name} -> {tmp_path / 'mnist' / name}" in message
    assert not list((tmp_path / "mnist").glob("*.gz"))


def test_cli_offline_without_files_exits_2_naming_url_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCHER_DATASET_MIRROR", UNREACHABLE)  # read by conf/dataset/cifar10.yaml
    done = run_cli("+dataset=cifar10", f"data_dir={tmp_path / 'data'}", cwd=tmp_path, timeout=120)
    output = (done.stdout + done.stderr).replace("\n", "")
    assert done.returncode == 2, output
    assert f"{UNREACHABLE}cifar-10-python.tar.gz" in output
    assert str(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz") in output
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started


def test_cifar_batches_written_by_python3_are_read_too_and_code_in_a_pickle_is_refused(tmp_path):
    import pickle

    from searcher.data.readers import read_cifar_batches

    images = random_images(np.random.default_rng(7), 4)
    modern = tmp_path / "modern"
    modern.write_bytes(pickle.dumps({b"data": images.reshape(4, 3072), b"labels": [3, 1, 4, 1]}, protocol=5))
    read_images, labels = read_cifar_batches([modern], "labels")
    assert np.array_equal(read_images, images) and labels.tolist() == [3, 1, 4, 1]

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    hostile = tmp_path / "hostile"
    hostile.write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetError, match=r"print is not allowed in a dataset batch"):
        read_cifar_batches([hostile], "labels")


def test_a_data_dir_that_cannot_hold_files_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where data_dir should be")
    with pytest.raises(DatasetError, match="set data_dir"):
        load_dataset(DatasetOptions(name="cifar10", data_dir=blocker, mirror=UNREACHABLE, progress=False))


def test_digits_are_scikit_learns_own_read_without_importing_it():
    """The built-in dataset is scikit-learn's load_digits, pixel for pixel, read from the file it ships: importing
    scikit-learn cost ~1 s of every start on digits."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from searcher.data.registry import sklearn_digits

    pixels, targets = sklearn_digits()
    expected_pixels, expected_targets = load_digits(return_X_y=True)
    assert np.array_equal(pixels, expected_pixels) and np.array_equal(targets, expected_targets)
    script = "import sys; from searcher.data import DatasetOptions, load_dataset; load_dataset(DatasetOptions('digits')); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize(
    ("classes", "said"),
    [
        ((42,), "dataset.classes names [42], which digits does not have; its classes are [0, 1, 2"),
        ((0, 42), "dataset.classes names [42], which digits does not have"),
        ((3,), "dataset.classes=[3] names one class; a classifier needs two or more, e.g. dataset.classes=[3,0]."),
    ],
)
def test_a_class_subset_names_the_missing_class_before_counting_them(classes, said):
    """[42] on digits was refused as "two or more distinct class indices", which hid that class 42 is not there."""
    with pytest.raises(DatasetError) as raised:
        load_dataset(DatasetOptions(name="digits", classes=classes))
    assert said in str(raised.value)
