"""Dataset loaders by name. Each loader returns uint8 images split into train/val/test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from searcher.data.dataset import (
    ImageDataset,
    channel_stats,
    restrict_classes,
    split_off_validation,
    stratified_mask,
    to_split,
)
from searcher.data.errors import DatasetError


@dataclass(frozen=True)
class DatasetOptions:
    name: str
    classes: tuple[int, ...] | None = None  # restrict to these, relabelled 0..k-1
    val_fraction: float = 0.2  # of the training split, stratified
    split_seed: int = 0  # fixes the validation (and, where unpublished, the test) split
    data_dir: Path = Path(".")


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train images, labels, test images, labels
Loader = Callable[[DatasetOptions], tuple[Arrays, bool]]  # -> arrays (N, C, H, W) uint8, flip allowed

LOADERS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    def add(loader: Loader) -> Loader:
        LOADERS[name] = loader
        return loader

    return add


@register("digits")
def load_digits(options: DatasetOptions) -> tuple[Arrays, bool]:
    """scikit-learn's 8x8 handwritten digits (1,797 images): ships with the package, works offline.

    It has no published test split, so a stratified 20% is held out with a fixed seed (0),
    the same for every run whatever `split_seed` says.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    test_mask = stratified_mask(labels, fraction=0.2, seed=0)
    return (images[~test_mask], labels[~test_mask], images[test_mask], labels[test_mask]), False


def load_dataset(options: DatasetOptions) -> ImageDataset:
    if options.name not in LOADERS:
        raise DatasetError(f"dataset.name={options.name!r} is unknown; choose one of {sorted(LOADERS)}.")
    (train_images, train_labels, test_images, test_labels), flip = LOADERS[options.name](options)
    classes = list(options.classes) if options.classes else None
    if classes:
        present = set(np.unique(train_labels).tolist())
        missing = [c for c in classes if c not in present]
        if missing:
            raise DatasetError(f"dataset.classes names {missing}, which {options.name} does not have; its classes are {sorted(present)}.")
    train_images, train_labels = restrict_classes(train_images, train_labels, classes)
    test_images, test_labels = restrict_classes(test_images, test_labels, classes)
    train, val = split_off_validation(train_images, train_labels, options.val_fraction, options.split_seed)
    mean, std = channel_stats(train.images)
    num_classes = len(classes) if classes else int(max(train_labels.max(), test_labels.max()) + 1)
    identity = f"{options.name}|classes={classes}|val={options.val_fraction}|split_seed={options.split_seed}|n={len(train)},{len(val)}"
    return ImageDataset(
        name=options.name,
        train=train,
        val=val,
        _test=to_split(test_images, test_labels),
        num_classes=num_classes,
        mean=mean,
        std=std,
        flip=flip,
        identity=identity,
    )
