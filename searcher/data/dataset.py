"""A dataset in memory: inputs, targets (int64 classes, or float32 values for regression), three splits.

Images are uint8 (N, C, H, W), normalised on the device with per-channel statistics
on the 0..1 scale; a table's rows are float32 (N, F) features, normalised with
per-feature statistics in their own units (data/batches.py does both alike).

The test split sits behind `test()` so that reading it is a deliberate act: only
the final stage asks for it, and `test_reads` lets a test prove nothing else did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from searcher.columns import ClassName, Column, feature_names


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # the inputs: (N, C, H, W) uint8 images, (N, F) float32 table rows, or (N, L, V) one-hot float32 tokens
    labels: torch.Tensor  # (N,) int64 classes, or float32 values (regression)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class ImageDataset:
    name: str
    train: Split
    val: Split
    _test: Split = field(repr=False)
    num_classes: int  # the network's outputs: one for regression
    mean: tuple[float, ...]  # per channel, on the 0..1 scale (a table: per feature, in its units)
    std: tuple[float, ...]
    flip: bool  # horizontal flips keep labels (never for digits or letters)
    identity: str  # what the trial key hashes: name, classes, split seed, sizes
    test_reads: int = 0

    columns: tuple[Column, ...] = ()  # a table: how the file's columns became its features (searcher/columns.py)
    class_names: tuple[ClassName, ...] = ()  # a table: each class's value in the target column (class i is class_names[i])
    target_mean: float = 0.0  # regression: the training split's target mean and std (targets are standardised on the device)
    target_std: float = 1.0

    @property
    def feature_names(self) -> tuple[str, ...]:
        """A table's input columns, named after one-hot encoding (`colour=blue`); none for other data."""
        return feature_names(self.columns)

    @property
    def task(self) -> str:
        """classification, or regression (float targets)."""
        return "regression" if self.train.labels.is_floating_point() else "classification"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: (channels, height, width), or (features,) for a table."""
        return tuple(int(size) for size in self.train.images.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train.images.dim() == 4 and self.train.images.dtype == torch.uint8

    def describe_input(self) -> str:
        """What one example is, in words: "1x8x8", "9 features", "24 tokens of 9"."""
        shape = self.input_shape
        if self.is_image:
            return "x".join(map(str, shape))
        if len(shape) == 1:
            return f"{shape[0]} features"
        return f"{shape[0]} tokens of {shape[1]}" if len(shape) == 2 else "x".join(map(str, shape))

    @property
    def augmentable(self) -> bool:
        """Random crops (and flips where `flip`) keep the label: images only."""
        return self.is_image

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def size(self) -> int:
        """Image side in pixels (0 for a table)."""
        return int(self.train.images.shape[2]) if self.is_image else 0

    @property
    def nbytes(self) -> int:
        """Bytes of every split's images and labels: what a trial's DeviceData may put on its device (reads no test image)."""
        return sum(int(split.images.nbytes + split.labels.nbytes) for split in (self.train, self.val, self._test))

    def test(self) -> Split:
        self.test_reads += 1
        return self._test

    def fold(self, index: int, folds: int) -> ImageDataset:
        """Fold `index` of `folds`-fold cross-validation over the training and validation images.

        Fold 0 is the dataset itself (its validation split); folds 1..folds-1 each hold out one
        stratified part of the training split (fixed by the identity, so every process agrees)
        and train on the rest plus the validation split. The normalisation statistics stay those
        of the training split, so every fold feeds a network the same scale.
        """
        if index % folds == 0:
            return self
        part = fold_parts(self.train.labels.numpy(), folds - 1, self.identity)
        held_out = torch.from_numpy(part == index % folds)
        train = Split(
            torch.cat([self.train.images[~held_out], self.val.images]), torch.cat([self.train.labels[~held_out], self.val.labels])
        )
        val = Split(self.train.images[held_out], self.train.labels[held_out])
        return replace(self, train=train, val=val, test_reads=0)


def strata(labels: np.ndarray) -> np.ndarray:
    """What a split is stratified by: the class, or a regression target's decile (each part spans the target's range)."""
    if not np.issubdtype(labels.dtype, np.floating):
        return labels
    edges = np.quantile(labels, np.linspace(0, 1, 11)[1:-1])
    return np.searchsorted(edges, labels, side="right")


def stratified_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask picking `fraction` of each class (at least one; regression: of each decile), fixed by `seed`."""
    rng = np.random.default_rng(seed)
    labels = strata(labels)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        mask[members[: max(1, round(fraction * len(members)))]] = True
    return mask


def fold_parts(labels: np.ndarray, parts: int, identity: str) -> np.ndarray:
    """Each image's part, 1..parts, of a stratified partition fixed by `identity` (each class dealt round-robin)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"folds|{parts}|{identity}".encode()).digest()[:8], "little"))
    labels = strata(labels)
    part = np.zeros(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        part[members] = 1 + (offset + np.arange(len(members))) % parts
        offset += len(members)  # the next class starts where this one stopped: parts differ in size by one image at most
    return part


def split_off_validation(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[Split, Split]:
    """Carve a stratified validation split out of the training split, fixed by `seed`."""
    val_mask = stratified_mask(labels, fraction, seed)
    return to_split(images[~val_mask], labels[~val_mask]), to_split(images[val_mask], labels[val_mask])


def to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """Images as uint8; a table's float rows as float32; classes as int64, regression targets as float32."""
    dtype = np.float32 if np.issubdtype(images.dtype, np.floating) else np.uint8
    targets = labels.astype(np.float32 if np.issubdtype(labels.dtype, np.floating) else np.int64)
    return Split(torch.from_numpy(np.ascontiguousarray(images, dtype=dtype)), torch.from_numpy(targets))


def restrict_classes(images: np.ndarray, labels: np.ndarray, classes: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Keep only `classes`, relabelled 0..k-1 in the order given."""
    if not classes:
        return images, labels
    mapping = {original: new for new, original in enumerate(classes)}
    keep = np.isin(labels, classes)
    return images[keep], np.array([mapping[int(label)] for label in labels[keep]], dtype=np.int64)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std on the 0..1 scale, from the training split.

    Computed exactly from a 256-bin histogram per channel: no float copy of the split
    (CIFAR-10 train as float32 would be 600 MB) and about 0.2 s for 50k 32x32x3 images.
    """
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean).square()).sum() / max(float(n) - 1, 1.0)
        means.append(float(mean) / 255)
        stds.append(max(float(var.sqrt()) / 255, 1e-3))
    return tuple(means), tuple(stds)
