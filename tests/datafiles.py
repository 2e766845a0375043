"""Writers for small files in the datasets' published formats, so readers are tested on the real layouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be changed
    """Writes pickles as Python 2's cPickle did for the published CIFAR batches (protocol 2).

    Python 2 strings (dict keys, the array bytes) go out as BINSTRING, which Python 3
    reads back as bytes (encoding="bytes") or latin-1 str; NumPy's functions are named
    from numpy.core, as NumPy 1 (and the original files) named them.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            self.write(pickle.GLOBAL + f"{module.replace('numpy._core', 'numpy.core')}\n{name or obj.__name__}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _pickled(batch: dict) -> bytes:
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(batch)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_cifar10(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> Path:
    """cifar-10-python.tar.gz: cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta; images (N, 3, 32, 32)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "cifar-10-python.tar.gz"
    images, labels = train
    with tarfile.open(archive, "w:gz") as tar:
        for i, (part_images, part_labels) in enumerate(zip(np.array_split(images, 5), np.array_split(labels, 5), strict=True), start=1):
            batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": [int(x) for x in part_labels], b"data": part_images.reshape(len(part_images), 3072)}
            _add(tar, f"cifar-10-batches-py/data_batch_{i}", _pickled(batch))
        _add(tar, "cifar-10-batches-py/test_batch", _pickled({b"labels": [int(x) for x in test[1]], b"data": test[0].reshape(len(test[0]), 3072)}))
        _add(tar, "cifar-10-batches-py/batches.meta", _pickled({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}))
    return archive


def write_cifar100(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> Path:
    """cifar-100-python.tar.gz: cifar-100-python/train, test, meta with fine_labels and coarse_labels."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, (images, labels) in (("train", train), ("test", test)):
            batch = {b"fine_labels": [int(x) for x in labels], b"coarse_labels": [int(x) // 5 for x in labels], b"data": images.reshape(len(images), 3072)}
            _add(tar, f"cifar-100-python/{name}", _pickled(batch))
        _add(tar, "cifar-100-python/meta", _pickled({b"fine_label_names": [f"f{i}".encode() for i in range(100)]}))
    return archive


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0 0 0x08 (unsigned byte) NDIM, the sizes as big-endian uint32, then the bytes."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict[str, str]:
    """The four gzip IDX files; images (N, 28, 28). Returns {file name: md5}."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte.gz": train[0],
        "train-labels-idx1-ubyte.gz": train[1],
        "t10k-images-idx3-ubyte.gz": test[0],
        "t10k-labels-idx1-ubyte.gz": test[1],
    }
    for name, array in files.items():
        (folder / name).write_bytes(gzip.compress(idx_bytes(array)))
    return {name: md5(folder / name) for name in files}


def write_svhn(path: Path, images: np.ndarray, digits: np.ndarray) -> str:
    """SVHN .mat: X (32, 32, 3, N) uint8, y (N, 1) with the digit 0 stored as 10. Returns the md5."""
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]})
    return md5(path)


def random_images(rng: np.random.Generator, n: int, channels: int = 3, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)
