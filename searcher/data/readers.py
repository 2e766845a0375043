"""Readers for the published file formats: CIFAR pickle batches, IDX (MNIST), SVHN's MATLAB files.

Each returns NumPy arrays in the project's layout: images (N, C, H, W) uint8,
labels (N,) int64. The CIFAR batches are pickles; they are read with an
unpickler that can build only NumPy arrays and plain containers, so even a
file that passed its checksum cannot run code.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from searcher.data.errors import DatasetError

_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol-5 pickles of arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles store array bytes through it
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset batch")
        return super().find_class(module, name)


def read_cifar_batches(paths: Sequence[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10/100 python batches: dicts with data (N, 3072) uint8 rows (R, G, B planes of 32x32) and labels."""
    images, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as source:
                batch = _ArrayUnpickler(source, encoding="latin1").load()  # Python 2 pickles: latin1 keeps bytes intact
        except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
            raise DatasetError(f"{path} is not a readable CIFAR batch ({error}); delete the dataset's folder and re-run.") from None
        batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
        if "data" not in batch or label_key not in batch:
            raise DatasetError(f"{path} has no 'data' or {label_key!r} entry; delete the dataset's folder and re-run.")
        data = np.asarray(batch["data"], dtype=np.uint8)
        images.append(data.reshape(len(data), 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


_IDX_TYPES: dict[int, np.dtype] = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed or not): magic 0 0 TYPE NDIM, NDIM big-endian uint32 sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as source:
            raw = source.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path} could not be read ({error}); delete it and re-run to fetch it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number); delete it and re-run to fetch it again.")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(shape)) * dtype.itemsize:
        raise DatasetError(f"{path} holds {len(raw) - start} data bytes, not the {shape} its header declares; delete it and re-run.")
    return np.array(np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape), dtype=dtype.newbyteorder("="))  # writable, native order


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) do not pair up as images and labels.")
    return images.astype(np.uint8, copy=False)[:, None], labels.astype(np.int64)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's cropped digits: X (32, 32, 3, N) uint8 and y (N, 1) with 10 standing for the digit 0."""
    import scipy.io  # only SVHN needs scipy

    try:
        contents = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (OSError, ValueError, TypeError) as error:
        raise DatasetError(f"{path} is not a readable MATLAB file ({error}); delete it and re-run to fetch it again.") from None
    if "X" not in contents or "y" not in contents or contents["X"].ndim != 4:
        raise DatasetError(f"{path} lacks SVHN's X (32, 32, 3, N) and y (N, 1); delete it and re-run to fetch it again.")
    images = np.ascontiguousarray(contents["X"].transpose(3, 2, 0, 1), dtype=np.uint8)  # (H, W, C, N) -> (N, C, H, W)
    labels = contents["y"].reshape(-1).astype(np.int64) % 10
    return images, labels
