"""A user's own images: one sub-folder per class of PNG/JPEG files, read with Pillow.

Layouts: DIR/<class>/... (a stratified test split is drawn with `split_seed`),
or DIR/train/<class>/... plus DIR/test/<class>/... (the user's own split).
Class indices follow the sorted folder names. Every image is converted to the
configured channels (1: grey, 3: RGB) and resized to image_size x image_size.
Files that cannot be decoded, and files that are not PNG/JPEG, are skipped and
reported (a logged warning with the count and the first few names), never
dropped silently. A class too small to reach every split it must be in (3 images
without a test/ tree: training, validation, test; 2 in train/) is an error naming
it, and so is a link that leads out of the folder: a dataset is what its folder holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from searcher.data.dataset import stratified_mask
from searcher.data.errors import DatasetError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.2  # held out per class when the folder has no test/ tree
SHOWN = 5  # file names quoted in a report


@dataclass
class Skipped:
    unreadable: list[str] = field(default_factory=list)  # image files Pillow could not decode
    not_images: list[str] = field(default_factory=list)  # other files in class folders


def read_image_folder(path: Path, image_size: int, channels: int, split_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels), images (N, C, S, S) uint8."""
    if not path.is_dir():
        raise DatasetError(f"dataset.path={str(path)!r} is not a folder; point it at a folder with one sub-folder of images per class.")
    if channels not in (1, 3):
        raise DatasetError(f"dataset.channels={channels} is not possible for image folders; use 1 (grey) or 3 (RGB).")
    train_root, test_root = path / "train", path / "test"
    skipped = Skipped()
    if test_root.is_dir() and not train_root.is_dir():
        raise DatasetError(f"{path} has a test/ folder but no train/ folder; add train/<class>/ or move the class folders up.")
    if test_root.is_dir():
        classes = class_folders(train_root)
        train_images, train_labels = read_tree(train_root, classes, image_size, channels, skipped)
        strays = sorted(set(class_folders(test_root, minimum=1)) - set(classes))
        if strays:
            raise DatasetError(f"{test_root} has class folders {strays} that {train_root} lacks; every test class needs training images.")
        test_images, test_labels = read_tree(test_root, classes, image_size, channels, skipped, need_all=False)
    else:
        root = train_root if train_root.is_dir() else path
        classes = class_folders(root)
        images, labels = read_tree(root, classes, image_size, channels, skipped)
        test = stratified_mask(labels, TEST_FRACTION, split_seed)
        train_images, train_labels, test_images, test_labels = images[~test], labels[~test], images[test], labels[test]
    report(path, skipped)
    too_small(path, classes, train_labels, test_labels, own_test=test_root.is_dir())
    return train_images, train_labels, test_images, test_labels


def too_small(path: Path, classes: list[str], train_labels: np.ndarray, test_labels: np.ndarray, own_test: bool) -> None:
    """A class with too few images ends up in the test split only (never trained on) or without validation images."""
    needed = 2 if own_test else 3  # training + validation (+ test, when the split is drawn here)
    counts = np.bincount(train_labels, minlength=len(classes)) + (0 if own_test else np.bincount(test_labels, minlength=len(classes)))
    small = [f"{name} ({count})" for name, count in zip(classes, counts, strict=True) if count < needed]
    if small:
        where = "train/ folder" if own_test else "folder"
        raise DatasetError(
            f"{path}: class folder(s) {', '.join(small)} have fewer than {needed} readable images in the {where}; each class needs one "
            f"for training, one for validation{'' if own_test else ' and one for the test split'}: add images or remove those folders."
        )


def class_folders(root: Path, minimum: int = 2) -> list[str]:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in names:
        inside(root / name, root)
    if len(names) < minimum:
        raise DatasetError(f"{root} has {len(names)} class folder(s); an image folder needs one sub-folder per class, at least {minimum}.")
    return names


def read_tree(root: Path, classes: list[str], size: int, channels: int, skipped: Skipped, need_all: bool = True) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
        count = 0
        for file in files:
            inside(file, root)
            shown = str(file.relative_to(root))
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.not_images.append(shown)
                continue
            pixels = read_image(file, size, channels)
            if pixels is None:
                skipped.unreadable.append(shown)
                continue
            images.append(pixels)
            labels.append(label)
            count += 1
        if need_all and count == 0:
            raise DatasetError(f"{folder} has no readable PNG/JPEG images; every class folder needs at least one.")
    if not images:
        raise DatasetError(f"{root} has no readable PNG/JPEG images.")
    return np.stack(images), np.array(labels, dtype=np.int64)


def inside(path: Path, root: Path) -> None:
    """Refuses a link that leads out of the dataset's folder (links within it are fine)."""
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        raise DatasetError(
            f"{path} is a link to {target}, outside {root}; copy those images into the dataset folder (links out of it are not followed)."
        )


def read_image(file: Path, size: int, channels: int) -> np.ndarray | None:
    """(C, size, size) uint8, or None when Pillow cannot decode the file."""
    from PIL import Image, ImageOps

    try:
        with Image.open(file, formats=("PNG", "JPEG")) as opened:
            image = ImageOps.exif_transpose(opened).convert("L" if channels == 1 else "RGB")  # camera rotation, then mode
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # UnidentifiedImageError and truncation are OSErrors
        return None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def report(path: Path, skipped: Skipped) -> None:
    for files, what in ((skipped.unreadable, "unreadable image file(s)"), (skipped.not_images, "file(s) that are not .png/.jpg/.jpeg")):
        if files:
            more = f" and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
            log.warning("imagefolder %s: skipped %d %s: %s%s", path, len(files), what, ", ".join(files[:SHOWN]), more)
