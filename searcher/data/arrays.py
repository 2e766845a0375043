"""Your own arrays (`+dataset=arrays dataset.path=FILE.npz`): images, feature rows or token sequences, as NumPy saved them.

The file holds `inputs` and `labels` (and, optionally, `test_inputs` and `test_labels`;
without them a stratified 20% of the rows is the test split, fixed by `dataset.split_seed`):

- images: uint8 (N, C, H, W) on the 0..255 scale (a float image is refused: its scale is a guess);
- feature rows: float32 (N, F), in their own units (standardised on the training split, as a table's);
- token sequences: float32 (N, length, vocabulary), one-hot (the format of data/sequences.py).

Labels are class indices 0..k-1 (integers), or floats with fractions for regression. This is
also what `searcher.search(data=(inputs, labels))` writes for arrays that are not a table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from searcher.data.dataset import stratified_mask
from searcher.data.errors import DatasetError

TEST_FRACTION = 0.2

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def read_arrays(path: Path, split_seed: int) -> Arrays:
    """(train inputs, labels, test inputs, labels) from an .npz file, checked."""
    if not path.is_file():
        raise DatasetError(f"dataset.path={path} is not a file; give a .npz file with arrays `inputs` and `labels` (np.savez).")
    try:
        with np.load(path, allow_pickle=False) as saved:
            found = {name: saved[name] for name in saved.files}
    except (ValueError, OSError) as error:
        raise DatasetError(f"dataset.path={path} could not be read as a .npz file ({type(error).__name__}: {str(error)[:200]}).") from None
    missing = [name for name in ("inputs", "labels") if name not in found]
    if missing:
        raise DatasetError(f"dataset.path={path} has no array {missing[0]!r}; it holds {sorted(found)} (np.savez(path, inputs=..., labels=...)).")
    inputs, labels = checked(found["inputs"], found["labels"], "")
    if "test_inputs" in found or "test_labels" in found:
        test_inputs, test_labels = checked(found.get("test_inputs"), found.get("test_labels"), "test_")
        if test_inputs.shape[1:] != inputs.shape[1:]:
            raise DatasetError(f"dataset.path: test_inputs are {test_inputs.shape[1:]} per example but inputs {inputs.shape[1:]}; they must match.")
        return inputs, labels, test_inputs, test_labels
    test = stratified_mask(labels, TEST_FRACTION, split_seed)
    return inputs[~test], labels[~test], inputs[test], labels[test]


def checked(inputs: np.ndarray | None, labels: np.ndarray | None, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """One split's inputs and labels in the dtypes searcher keeps, or a sentence saying what is wrong."""
    if inputs is None or labels is None:
        raise DatasetError(f"dataset.path: give both {prefix}inputs and {prefix}labels, or neither.")
    if labels.ndim != 1 or len(labels) != len(inputs):
        raise DatasetError(f"dataset.path: {prefix}labels must be one per example ({len(inputs)}), got shape {labels.shape}.")
    if inputs.ndim == 4 and inputs.dtype != np.uint8:
        raise DatasetError(
            f"dataset.path: {prefix}inputs are {inputs.dtype} images; give them as uint8 on the 0..255 scale "
            "(e.g. (x * 255).round().astype(np.uint8) for floats in 0..1)."
        )
    if inputs.ndim not in (2, 3, 4):
        raise DatasetError(f"dataset.path: {prefix}inputs of shape {inputs.shape}; give images (N, C, H, W), rows (N, F) or sequences (N, L, V).")
    if inputs.ndim < 4:
        inputs = inputs.astype(np.float32)
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
        labels = labels.astype(np.int64)  # whole numbers: classes
    elif not np.issubdtype(labels.dtype, np.floating):
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise DatasetError(f"dataset.path: {prefix}labels must be class indices 0..k-1 or float values (regression), got {labels.dtype}.")
        labels = labels.astype(np.int64)
    else:
        labels = labels.astype(np.float32)
    return inputs, labels
