"""Image folders: real PNG/JPEG files written with Pillow, mixed sizes, a corrupt file, both layouts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from searcher.data import DatasetError, DatasetOptions, load_dataset

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "eel": (30, 30, 200)}


def save(path: Path, colour, size, kind="PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, kind)


def make_folder(root: Path, per_class: int = 5) -> None:
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        for i in range(per_class):
            size = tuple(int(s) for s in rng.integers(10, 60, 2))  # mixed sizes and aspect ratios
            save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}", colour, size, "PNG" if i % 2 else "JPEG")


def options(path: Path, **kw) -> DatasetOptions:
    return DatasetOptions(name="imagefolder", path=path, image_size=16, channels=3, **kw)


def test_classes_from_sorted_folders_resized_and_split_with_the_seed(tmp_path):
    make_folder(tmp_path / "pets")
    dataset = load_dataset(options(tmp_path / "pets"))
    assert dataset.num_classes == 3 and dataset.size == 16 and dataset.channels == 3
    assert len(dataset.train) + len(dataset.val) + len(dataset.test()) == 15
    for split in (dataset.train, dataset.val, dataset.test()):
        for image, label in zip(split.images, split.labels, strict=True):
            colour = torch.tensor(COLOURS[sorted(COLOURS)[label]], dtype=torch.float32)
            assert (image.float().mean((1, 2)) - colour).abs().max() < 3  # JPEG keeps a flat colour within a few levels
    again = load_dataset(options(tmp_path / "pets"))
    assert torch.equal(again.test().images, dataset.test().images)
    other = load_dataset(options(tmp_path / "pets", split_seed=1))
    assert not torch.equal(other.test().images, dataset.test().images) or not torch.equal(other.val.images, dataset.val.images)
    assert dataset.flip is False and load_dataset(options(tmp_path / "pets", flip=True)).flip is True


def test_corrupt_and_foreign_files_are_reported_and_skipped(tmp_path, caplog):
    make_folder(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = tmp_path / "pets" / "dog" / "truncated.jpg"
    save(good, (1, 2, 3), (40, 40), "JPEG")
    good.write_bytes(good.read_bytes()[:200])
    (tmp_path / "pets" / "eel" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="searcher.data.imagefolder"):
        dataset = load_dataset(options(tmp_path / "pets"))
    assert len(dataset.train) + len(dataset.val) + len(dataset.test()) == 15  # only the good images
    text = caplog.text
    assert "skipped 2 unreadable image file(s)" in text and "cat/broken.png" in text and "dog/truncated.jpg" in text
    assert "skipped 1 file(s) that are not .png/.jpg/.jpeg" in text and "eel/notes.txt" in text


def test_train_and_test_trees_and_greyscale(tmp_path):
    make_folder(tmp_path / "data" / "train", per_class=4)
    make_folder(tmp_path / "data" / "test", per_class=2)
    dataset = load_dataset(DatasetOptions(name="imagefolder", path=tmp_path / "data", image_size=8, channels=1))
    assert len(dataset.test()) == 6 and len(dataset.train) + len(dataset.val) == 12
    assert dataset.test().images.shape == (6, 1, 8, 8)
    assert sorted(dataset.test().labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_subset_of_folder_classes(tmp_path):
    make_folder(tmp_path / "pets")
    dataset = load_dataset(options(tmp_path / "pets", classes=(2, 0)))  # eel -> 0, cat -> 1
    assert dataset.num_classes == 2
    blue = dataset.test().images[dataset.test().labels == 0].float().mean((0, 2, 3))
    assert blue.argmax() == 2


@pytest.mark.parametrize(
    "layout, message",
    [("none", "is not a folder"), ("one-class", "at least 2"), ("test-only", "no train/ folder"), ("empty-class", "no readable PNG/JPEG")],
)
def test_bad_folders_say_what_to_fix(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "one-class":
        save(root / "cat" / "a.png", (1, 1, 1), (4, 4))
    elif layout == "test-only":
        save(root / "test" / "cat" / "a.png", (1, 1, 1), (4, 4))
    elif layout == "empty-class":
        save(root / "cat" / "a.png", (1, 1, 1), (4, 4))
        (root / "dog").mkdir()
    with pytest.raises(DatasetError, match=message):
        load_dataset(options(root))


def test_a_class_too_small_for_every_split_is_named(tmp_path):
    make_folder(tmp_path / "pets")
    for extra in ("cat", "dog"):  # two images left: one for the test split, one for validation, none to train on
        for file in sorted((tmp_path / "pets" / extra).iterdir())[2:]:
            file.unlink()
    with pytest.raises(DatasetError, match=r"class folder\(s\) cat \(2\), dog \(2\) have fewer than 3 readable images"):
        load_dataset(options(tmp_path / "pets"))
    make_folder(tmp_path / "data" / "train", per_class=4)
    make_folder(tmp_path / "data" / "test", per_class=1)
    (tmp_path / "data" / "train" / "eel" / "0.jpg").unlink()
    for file in sorted((tmp_path / "data" / "train" / "eel").iterdir())[1:]:
        file.unlink()
    with pytest.raises(DatasetError, match=r"eel \(1\) have fewer than 2 readable images in the train/ folder"):
        load_dataset(options(tmp_path / "data"))


def test_links_out_of_the_folder_are_refused_and_links_within_it_are_read(tmp_path):
    make_folder(tmp_path / "pets")
    outside = tmp_path / "elsewhere"
    save(outside / "x.png", (1, 2, 3), (8, 8))
    (tmp_path / "pets" / "cat" / "within.png").symlink_to(tmp_path / "pets" / "cat" / "1.png")
    assert len(load_dataset(options(tmp_path / "pets")).train) > 0
    (tmp_path / "pets" / "dog" / "x.png").symlink_to(outside / "x.png")
    with pytest.raises(DatasetError, match=r"dog/x.png is a link to .*elsewhere/x.png, outside"):
        load_dataset(options(tmp_path / "pets"))
    (tmp_path / "pets" / "dog" / "x.png").unlink()
    (tmp_path / "pets" / "fox").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match=r"pets/fox is a link to .*elsewhere, outside"):
        load_dataset(options(tmp_path / "pets"))
