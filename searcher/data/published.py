"""The five published datasets: fetch (or find) their files in data_dir/<name>/, verify, extract, read.

Each function returns (train images, train labels, test images, test labels)
as NumPy arrays, images (N, C, H, W) uint8, using the publishers' own
train/test split. Fetching and extracting happen under a lock on the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from searcher.data.archives import extract_tar
from searcher.data.download import ensure_files, folder_lock
from searcher.data.errors import DatasetError
from searcher.data.readers import read_cifar_batches, read_idx_pair, read_svhn_mat
from searcher.data.sources import Source

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class CifarLayout:
    folder: str  # top-level folder inside the archive
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels"),
    "cifar100": CifarLayout("cifar-100-python", ("train",), ("test",), "fine_labels"),  # the 100 fine classes
}


def load_cifar(dataset: str, folder: Path, source: Source, mirror: str | None, progress: bool = True) -> Arrays:
    layout = CIFAR_LAYOUTS[dataset]
    (remote,) = source.files
    with folder_lock(folder):
        (archive,) = ensure_files(dataset, source.files, folder, mirror, progress)
        extracted = extract_tar(archive, folder / remote.name.removesuffix(".tar.gz"), remote.digest)
    base = extracted / layout.folder
    absent = [name for name in layout.train + layout.test if not (base / name).is_file()]
    if absent:
        raise DatasetError(f"{archive} has no {layout.folder}/{absent[0]}, so it is not the published {dataset} archive; delete it and re-run.")
    train_images, train_labels = read_cifar_batches([base / name for name in layout.train], layout.label_key)
    test_images, test_labels = read_cifar_batches([base / name for name in layout.test], layout.label_key)
    return train_images, train_labels, test_images, test_labels


def load_idx(dataset: str, folder: Path, source: Source, mirror: str | None, progress: bool = True) -> Arrays:
    """MNIST and Fashion-MNIST: four gzip IDX files, read compressed (no extraction)."""
    with folder_lock(folder):
        train_images, train_labels, test_images, test_labels = ensure_files(dataset, source.files, folder, mirror, progress)
    return (*read_idx_pair(train_images, train_labels), *read_idx_pair(test_images, test_labels))


def load_svhn(folder: Path, source: Source, mirror: str | None, extra: bool, progress: bool = True) -> Arrays:
    """SVHN cropped digits; with `extra` the 531k extra images join the training split."""
    names = ("train_32x32.mat", "test_32x32.mat") + (("extra_32x32.mat",) if extra else ())
    with folder_lock(folder):
        paths = ensure_files("svhn", [source.file(name) for name in names], folder, mirror, progress)
    train_images, train_labels = read_svhn_mat(paths[0])
    test_images, test_labels = read_svhn_mat(paths[1])
    if extra:
        extra_images, extra_labels = read_svhn_mat(paths[2])
        train_images, train_labels = np.concatenate([train_images, extra_images]), np.concatenate([train_labels, extra_labels])
    return train_images, train_labels, test_images, test_labels
