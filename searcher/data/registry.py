"""Dataset loaders by name. Each loader returns uint8 images split into train/val/test.

A loader maps DatasetOptions to (train images, train labels, test images, test
labels) and whether horizontal flips keep labels; `load_dataset` then applies
the generic steps every dataset shares: class subsets, the validation split,
normalisation statistics and the identity that trial keys hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from searcher.columns import ClassName, Column
from searcher.data import published, sequences, synthetic
from searcher.data.dataset import (
    ImageDataset,
    channel_stats,
    restrict_classes,
    split_off_validation,
    stratified_mask,
    to_split,
)
from searcher.data.errors import DatasetError
from searcher.data.sources import SOURCES, Source

__all__ = ["LOADERS", "DatasetError", "DatasetOptions", "load_dataset", "register"]


@dataclass(frozen=True)
class DatasetOptions:
    name: str
    classes: tuple[int, ...] | None = None  # restrict to these, relabelled 0..k-1
    val_fraction: float = 0.2  # of the training split, stratified
    split_seed: int = 0  # fixes the validation (and, where unpublished, the test) split
    data_dir: Path = Path(".")  # downloads go to data_dir/<name>/
    mirror: str | None = None  # base URL replacing the official hosts (file name appended)
    checksums: tuple[tuple[str, str], ...] = ()  # (file name, digest) replacing published ones: files you wrote yourself
    progress: bool = True  # a download progress bar on stderr
    extra: bool = False  # svhn: add the 531k extra_32x32.mat images to training
    path: Path | None = None  # imagefolder: the folder of class folders
    image_size: int | None = None  # imagefolder, synthetic: square side in pixels
    channels: int | None = None  # imagefolder (1 or 3), synthetic
    num_classes: int | None = None  # synthetic
    train_size: int | None = None  # synthetic: images in the training split (validation is carved from it)
    test_size: int | None = None  # synthetic
    data_seed: int = 0  # synthetic: fixes the generated images
    difficulty: float = 0.0  # synthetic: 0 the original pairs; (0, 1] relational classes with distractors (1: calibrated hard)
    flip: bool | None = None  # imagefolder: horizontal flips keep labels (your data, your call)
    mean: tuple[float, ...] | None = None  # published per-channel statistics (0..1 scale); None: from the training split
    std: tuple[float, ...] | None = None
    target: str | None = None  # table: the column to predict
    task: str = "auto"  # table: classification | regression | auto (a float target with fractions is regression)
    sequence_length: int | None = None  # sequences
    vocabulary: int | None = None  # sequences; grammar: symbols at every level (the classes are the top level's)
    levels: int | None = None  # grammar: levels of expansion (a sentence is branching^levels tokens)
    branching: int | None = None  # grammar: symbols each symbol expands into
    rules: int | None = None  # grammar: ways each symbol can expand (more: harder)

    def source(self) -> Source:
        return SOURCES[self.name].with_digests(dict(self.checksums))

    def identity(self) -> str:
        """What distinguishes this data for trial keys: options beyond the generic ones, when set."""
        skip = {"name", "classes", "val_fraction", "split_seed", "data_dir", "mirror", "checksums", "progress"}
        default = DatasetOptions(self.name)
        return "".join(
            f"|{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name not in skip and getattr(self, f.name) != getattr(default, f.name)
        )


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
    pixels, targets = sklearn_digits()
    images = np.rint(pixels.reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), 0..16 -> 0..255
    labels = targets.astype(np.int64)
    test_mask = stratified_mask(labels, fraction=0.2, seed=0)
    return (images[~test_mask], labels[~test_mask], images[test_mask], labels[test_mask]), False


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels, targets) from the CSV scikit-learn ships, read as its `load_digits` reads it. Read directly: importing
    scikit-learn took ~1 s of every search's start on digits (it is only a fallback, for a release that moves the file)."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # (finds the package without importing it)
    shipped = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if shipped is None or not shipped.is_file():
        from sklearn.datasets import load_digits as load

        return load(return_X_y=True)
    with gzip.open(shipped, "rt", encoding="utf-8") as rows:
        data = np.loadtxt(rows, delimiter=",")
    return data[:, :-1], data[:, -1]


@register("cifar10")
@register("cifar100")
def load_cifar(options: DatasetOptions) -> tuple[Arrays, bool]:
    """CIFAR-10/100 python batches from the Toronto archive; objects and animals: mirror images keep their class."""
    return published.load_cifar(options.name, options.data_dir / options.name, options.source(), options.mirror, options.progress), True


@register("mnist")
@register("fashion_mnist")
def load_mnist_like(options: DatasetOptions) -> tuple[Arrays, bool]:
    """MNIST (digits: a mirrored digit is not a digit, no flips) and Fashion-MNIST (clothes: mirrored, still the same class)."""
    arrays = published.load_idx(options.name, options.data_dir / options.name, options.source(), options.mirror, options.progress)
    return arrays, options.name == "fashion_mnist"


@register("svhn")
def load_svhn(options: DatasetOptions) -> tuple[Arrays, bool]:
    """SVHN house-number digits: no flips."""
    return published.load_svhn(options.data_dir / "svhn", options.source(), options.mirror, options.extra, options.progress), False


@register("imagefolder")
def load_imagefolder(options: DatasetOptions) -> tuple[Arrays, bool]:
    from searcher.data.imagefolder import read_image_folder  # Pillow only when asked for

    if options.path is None:
        raise DatasetError("dataset.path is not set; imagefolder needs dataset.path=DIR, a folder with one sub-folder of images per class.")
    arrays = read_image_folder(Path(options.path).expanduser(), options.image_size or 32, options.channels or 3, options.split_seed)
    return arrays, bool(options.flip)


@register("arrays")
def load_arrays(options: DatasetOptions) -> tuple[Arrays, bool]:
    """Your own arrays in an .npz file (data/arrays.py); flips only where you say mirrored images keep their class."""
    from searcher.data.arrays import read_arrays

    if options.path is None:
        raise DatasetError("dataset.path is not set; arrays needs dataset.path=FILE.npz, with arrays inputs and labels.")
    return read_arrays(Path(options.path).expanduser(), options.split_seed), bool(options.flip)


@register("synthetic")
@register("synthetic_hard")  # conf/dataset/synthetic_hard.yaml: the same generator, difficulty 1 at a size for CPU searches
def load_synthetic(options: DatasetOptions) -> tuple[Arrays, bool]:
    """Generated textures: a mirror image swaps left and right (difficulty 0) or turns one part into another, so no flips."""
    arrays = synthetic.generate(
        options.image_size or 32,
        options.channels or 3,
        options.num_classes or 10,
        options.train_size or 10_000,
        options.test_size or 2_000,
        options.data_seed,
        options.difficulty,
    )
    return arrays, False  # type: ignore[return-value]


NAMED_BY_CONTENT = {"table", "arrays"}  # your own files: their identity includes a digest of their rows
TABLES = {"table"}  # datasets of feature rows, not images: read by data/tables.py (arrays, feature names, class names)


@register("sequences")
def load_sequences(options: DatasetOptions) -> tuple[Arrays, bool]:
    """Generated token sequences, one-hot (data/sequences.py): nothing to flip."""
    arrays = sequences.generate(
        options.sequence_length or 16, options.vocabulary or 8, options.train_size or 8000, options.test_size or 2000, options.data_seed
    )
    return arrays, False


@register("grammar")
def load_grammar(options: DatasetOptions) -> tuple[Arrays, bool]:
    """Sentences of a random hierarchical grammar, one-hot (data/sequences.py): nothing to flip."""
    shape = (options.vocabulary or 8, options.levels or 3, options.branching or 2, options.rules or 4)
    sizes = (options.train_size or 16_000, options.test_size or 2000)  # conf/dataset/grammar.yaml's
    available = sequences.sentence_count(*shape)
    if 2 * sum(sizes) > available:  # distinct draws: near all of them, drawing would crawl
        raise DatasetError(
            f"dataset.train_size + dataset.test_size = {sum(sizes)} sentences, more than half the {available} the grammar"
            " has; lower them, or raise dataset.rules or dataset.levels."
        )
    arrays = sequences.grammar(*shape, *sizes, options.data_seed)
    return arrays, False


def load_dataset(options: DatasetOptions) -> ImageDataset:
    if options.name not in LOADERS and options.name not in TABLES:
        raise DatasetError(f"dataset.name={options.name!r} is unknown; choose one of {sorted(set(LOADERS) | TABLES)}.")
    columns: tuple[Column, ...] = ()
    class_names: tuple[ClassName, ...] = ()
    if options.name in TABLES:
        from searcher.data.tables import read_table  # pandas only when asked for

        if options.path is None:
            raise DatasetError("dataset.path is not set; table needs dataset.path=FILE, a CSV or Parquet file.")
        arrays, columns, class_names = read_table(Path(options.path).expanduser(), options.target, options.split_seed, options.task)
        (train_images, train_labels, test_images, test_labels), flip = arrays, False
    else:
        (train_images, train_labels, test_images, test_labels), flip = LOADERS[options.name](options)
    classes = list(options.classes) if options.classes else None
    regression = np.issubdtype(train_labels.dtype, np.floating)
    if classes and regression:
        raise DatasetError(f"dataset.classes={classes} picks classes, but dataset.target={options.target} is a regression target; remove dataset.classes.")
    if classes:
        present = set(np.unique(train_labels).tolist())
        missing = [c for c in classes if c not in present]
        if missing:
            raise DatasetError(f"dataset.classes names {missing}, which {options.name} does not have; its classes are {sorted(present)}.")
        if len(classes) < 2:
            other = min(present - set(classes), default=None)
            example = f", e.g. dataset.classes=[{classes[0]},{other}]" if other is not None else ""
            raise DatasetError(f"dataset.classes={classes} names one class; a classifier needs two or more{example}.")
    train_images, train_labels = restrict_classes(train_images, train_labels, classes)
    test_images, test_labels = restrict_classes(test_images, test_labels, classes)
    train, val = split_off_validation(train_images, train_labels, options.val_fraction, options.split_seed)
    mean, std = normalisation(options, train.images, classes)
    num_classes = 1 if regression else len(classes) if classes else int(max(train_labels.max(), test_labels.max()) + 1)
    target_mean, target_std = (float(train.labels.double().mean()), max(float(train.labels.double().std()), 1e-12)) if regression else (0.0, 1.0)
    identity = (
        f"{options.name}|classes={classes}|val={options.val_fraction}|split_seed={options.split_seed}|n={len(train)},{len(val)}"
        + options.identity()
        + (f"|rows={content_digest(train_images, train_labels)}" if options.name in NAMED_BY_CONTENT else "")  # a file edited in place is other data
    )
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
        columns=columns,
        class_names=tuple(class_names[c] for c in classes) if classes and class_names else class_names,
        target_mean=target_mean,
        target_std=target_std,
    )


def content_digest(*arrays: np.ndarray) -> str:
    import hashlib

    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def normalisation(options: DatasetOptions, train_images, classes: list[int] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Published statistics when the config gives them for the whole dataset; otherwise the training split's own."""
    if train_images.dtype != torch.uint8 and train_images.dim() == 3:  # one-hot tokens: fed as they are
        return (0.0,) * train_images.shape[1], (1.0,) * train_images.shape[1]
    if train_images.dtype != torch.uint8:  # a table's rows: per-feature statistics in their own units
        from searcher.data.tables import feature_stats

        return feature_stats(train_images)
    if options.mean is None or options.std is None or classes:
        return channel_stats(train_images)
    channels = int(train_images.shape[1])
    if len(options.mean) != channels or len(options.std) != channels:
        raise DatasetError(
            f"dataset.mean and dataset.std need {channels} values for {options.name} (one per channel), not {len(options.mean)} and {len(options.std)}."
        )
    return tuple(options.mean), tuple(options.std)
