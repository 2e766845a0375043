"""Tables (`+dataset=table dataset.path=FILE dataset.target=COLUMN`): CSV or Parquet rows as float32 features.

One column is the class to predict; every other column is a feature. Numeric
columns are kept in their units (the dataset's per-feature mean and std, from
the training split, standardise them on the device, as images are normalised);
text, category and boolean columns become one-hot columns named `column=value`,
a missing value its own category. A missing number is filled with the median of
the rows that are not held out for testing. The test split is a stratified 20%
fixed by `dataset.split_seed` (validation is then carved from the rest, as for
any dataset).

The target must be categorical: text, booleans or integers (any float column
whose values are all whole numbers counts). A continuous target is refused:
searcher compares classifiers (paired tests on which rows each gets right), and
regression is not built yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from searcher.data.dataset import stratified_mask
from searcher.data.errors import DatasetError

TEST_FRACTION = 0.2
MAX_CLASSES = 1000  # more distinct target values than this is a continuous column or an id, not classes
MAX_ONE_HOT = 100  # a text column with more distinct values than this is an id or free text, not a category


def read_frame(path: Path) -> Any:
    """The file as a pandas DataFrame: .csv (any delimiter pandas sniffs: , ; tab) or .parquet."""
    import pandas as pd

    if not path.is_file():
        raise DatasetError(f"dataset.path={path} is not a file; give a CSV or Parquet file (dataset.path=FILE).")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt", ".gz"):
            return pd.read_csv(path, sep=None, engine="python")
    except (ValueError, OSError, ImportError) as error:
        raise DatasetError(f"dataset.path={path} could not be read as a table ({type(error).__name__}: {str(error)[:200]}).") from None
    raise DatasetError(f"dataset.path={path}: {suffix or 'no'} suffix; searcher reads .csv and .parquet tables.")


def class_labels(column: Any, target: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each row's class index (classes in sorted order) and the class names; refuses a continuous or incomplete target."""
    import pandas as pd

    if column.isna().any():
        raise DatasetError(f"dataset.target={target}: {int(column.isna().sum())} rows have no value; drop them or fill them in the file.")
    if pd.api.types.is_float_dtype(column) and not np.all(np.mod(column.to_numpy(), 1) == 0):
        raise DatasetError(
            f"dataset.target={target} holds continuous values; searcher searches classifiers only so far (regression is not "
            "built yet): bin the column into classes, or choose a categorical column."
        )
    values = column.astype("int64") if pd.api.types.is_float_dtype(column) else column
    classes = sorted(values.unique().tolist(), key=lambda value: (str(type(value)), value))
    if len(classes) < 2:
        raise DatasetError(f"dataset.target={target} has a single value ({classes[0]!r}); a classifier needs two or more classes.")
    if len(classes) > MAX_CLASSES:
        raise DatasetError(f"dataset.target={target} has {len(classes)} distinct values: an id or a continuous column, not classes.")
    index = {value: position for position, value in enumerate(classes)}
    return values.map(index).to_numpy(np.int64), tuple(str(value) for value in classes)


def features(frame: Any, fill_rows: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """(rows, features) float32 and each feature's name: numbers as they are (a gap: the median of `fill_rows`), the rest one-hot."""
    import pandas as pd

    columns: list[np.ndarray] = []
    names: list[str] = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(np.float64)
            known = values[fill_rows][~np.isnan(values[fill_rows])]
            values = np.where(np.isnan(values), np.median(known) if known.size else 0.0, values)
            columns.append(values)
            names.append(str(name))
            continue
        text = column.astype("string").fillna("<missing>")
        categories = sorted(text.unique().tolist())
        if len(categories) > MAX_ONE_HOT:
            raise DatasetError(
                f"dataset.path: column {name!r} has {len(categories)} distinct text values (an id or free text?); drop it from the file "
                f"or encode it as numbers (searcher one-hot encodes up to {MAX_ONE_HOT} categories)."
            )
        for category in categories:
            columns.append((text == category).to_numpy(np.float64))
            names.append(f"{name}={category}")
    if not columns:
        raise DatasetError("dataset.path: the table has no feature columns besides dataset.target.")
    return np.stack(columns, axis=1).astype(np.float32), tuple(names)


Table = tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[str, ...], tuple[str, ...]]


def read_table(path: Path, target: str | None, split_seed: int) -> Table:
    """(train rows, labels, test rows, labels) with the test split held out, the feature names and the class names."""
    if not target:
        raise DatasetError("dataset.target is not set; name the column to predict, e.g. dataset.target=label.")
    frame = read_frame(path)
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise DatasetError(f"dataset.target={target} is not a column of {path.name}; its columns are: {shown}.")
    labels, classes = class_labels(frame[target], target)
    test = stratified_mask(labels, TEST_FRACTION, split_seed)
    rows, names = features(frame.drop(columns=[target]), fill_rows=~test)
    return (rows[~test], labels[~test], rows[test], labels[test]), names, classes


def feature_stats(rows: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-feature mean and std of the training rows, in the features' units (a constant feature: std 1, left as it is)."""
    values = rows.double()
    std = values.std(dim=0, unbiased=True) if values.shape[0] > 1 else values.new_ones(values.shape[1])
    std = std.where(std > 1e-12, std.new_ones(()))
    return tuple(values.mean(dim=0).tolist()), tuple(std.tolist())
