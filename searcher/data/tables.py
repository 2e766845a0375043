"""Tables (`+dataset=table dataset.path=FILE dataset.target=COLUMN`): CSV or Parquet rows as float32 features.

One column is the target; every other column is a feature. Numeric
columns are kept in their units (the dataset's per-feature mean and std, from
the training split, standardise them on the device, as images are normalised);
text, category and boolean columns become one-hot columns named `column=value`,
a missing value its own category. A missing number is filled with the median of
the rows that are not held out for testing. The test split is 20% fixed by
`dataset.split_seed`, stratified by class (by decile of the target for
regression); validation is then carved from the rest, as for any dataset.

The task (`dataset.task`): classification for a text or boolean target, or
numbers that are all whole with at most 100 distinct values; regression for
numbers with fractions or more distinct values. `dataset.task=regression` or
`classification` overrides that guess (a count with few values as a quantity;
integer labels of more than 100 classes as classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from searcher.columns import ClassName, Column, ColumnError, encode, fit_columns
from searcher.data.dataset import stratified_mask
from searcher.data.errors import DatasetError

TEST_FRACTION = 0.2
MAX_CLASSES = 1000  # more distinct target values than this is a continuous column or an id, not classes
MAX_AUTO_CLASSES = 100  # dataset.task=auto: a numeric target with more distinct whole numbers than this is a quantity


SKLEARN_TABLES = ("iris", "wine", "breast_cancer", "diabetes")  # bundled with scikit-learn (offline): dataset.path=sklearn:NAME
SKLEARN_PREFIX = "sklearn:"


def read_frame(path: Path) -> Any:
    """The file as a pandas DataFrame: .csv (any delimiter pandas sniffs: , ; tab) or .parquet; or a table scikit-learn
    ships (`sklearn:diabetes`: its target column is `target`)."""
    import pandas as pd

    if str(path).startswith(SKLEARN_PREFIX):
        return sklearn_frame(str(path).removeprefix(SKLEARN_PREFIX))
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


def sklearn_frame(name: str) -> Any:
    """One of scikit-learn's bundled tables as a DataFrame (features and `target`): no download, no file."""
    if name not in SKLEARN_TABLES:
        raise DatasetError(f"dataset.path=sklearn:{name} is not a table scikit-learn ships; choose one of {', '.join(SKLEARN_TABLES)}.")
    import sklearn.datasets

    return getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame


def is_continuous(column: Any) -> bool:
    """A float column with a value that is not a whole number: a quantity to predict, not classes."""
    import pandas as pd

    return bool(pd.api.types.is_float_dtype(column) and not np.all(np.mod(column.to_numpy(), 1) == 0))


def looks_like_a_quantity(column: Any) -> bool:
    """`dataset.task=auto`: fractions, or whole numbers with more distinct values than classes usually have (a count,
    a price in cents: scikit-learn's diabetes target has 214 values over 442 rows)."""
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    return is_continuous(column) or (numeric and column.nunique() > MAX_AUTO_CLASSES)


def regression_targets(column: Any, target: str) -> np.ndarray:
    """Each row's value as float32; refuses a column that is not numbers or has gaps."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DatasetError(f"dataset.target={target} is not numeric; regression needs numbers (or set dataset.task=classification).")
    values = column.to_numpy(np.float64)
    if np.unique(values).size < 2:
        raise DatasetError(f"dataset.target={target} has a single value; there is nothing to predict.")
    return values.astype(np.float32)


def class_labels(column: Any, target: str) -> tuple[np.ndarray, tuple[ClassName, ...]]:
    """Each row's class index (classes in sorted order) and the class names, the column's own values (an integer
    target's classes are 0 and 1, not "0" and "1": `class_names[i] == frame[target]` holds); refuses an id-like or
    one-valued target."""
    import pandas as pd

    values = column.astype("int64") if pd.api.types.is_float_dtype(column) and not is_continuous(column) else column
    classes = sorted(values.unique().tolist(), key=lambda value: (str(type(value)), value))
    if len(classes) < 2:
        raise DatasetError(f"dataset.target={target} has a single value ({classes[0]!r}); a classifier needs two or more classes.")
    if len(classes) > MAX_CLASSES:
        raise DatasetError(
            f"dataset.target={target} has {len(classes)} distinct values: an id or a quantity, not classes (a quantity: dataset.task=regression)."
        )
    index = {value: position for position, value in enumerate(classes)}
    return values.map(index).to_numpy(np.int64), tuple(value if isinstance(value, ClassName) else str(value) for value in classes)


def features(frame: Any, fill_rows: np.ndarray) -> tuple[np.ndarray, tuple[Column, ...]]:
    """(rows, features) float32 and how each column became features (searcher/columns.py: numbers as they are, a gap
    the median of `fill_rows`; the rest one-hot), which the final model keeps to encode new rows the same way."""
    try:
        columns = fit_columns(frame, fill_rows)
    except ColumnError as error:
        raise DatasetError(f"dataset.path: {error}") from None
    if not columns:
        raise DatasetError("dataset.path: the table has no feature columns besides dataset.target.")
    return encode(columns, frame), columns


Table = tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[Column, ...], tuple[ClassName, ...]]


def columns_hint(target: str, columns: list[Any]) -> str:
    """What the target might have been meant to be: a column differing only in case, else the columns (the first 20)."""
    same = [str(c) for c in columns if str(c).casefold() == str(target).casefold()]
    if same:
        return f"did you mean {same[0]}?"
    more = f" and {len(columns) - 20} more" if len(columns) > 20 else ""
    return f"its columns are: {', '.join(map(str, columns[:20]))}{more}"


def read_table(path: Path, target: str | None, split_seed: int, task: str = "auto") -> Table:
    """(train rows, targets, test rows, targets) with the test split held out, the columns' encoding and the class names
    (none for regression, whose targets are float32 values)."""
    if not target and str(path).startswith(SKLEARN_PREFIX):
        target = "target"  # (scikit-learn's name for it)
    if not target:
        raise DatasetError("dataset.target is not set; name the column to predict, e.g. dataset.target=label.")
    frame = read_frame(path)
    if target not in frame.columns:
        raise DatasetError(f"dataset.target={target} is not a column of {path.name}; {columns_hint(target, list(frame.columns))}.")
    column = frame[target]
    if column.isna().any():
        raise DatasetError(f"dataset.target={target}: {int(column.isna().sum())} rows have no value; drop them or fill them in the file.")
    regression = task == "regression" or (task == "auto" and looks_like_a_quantity(column))
    if task == "classification" and is_continuous(column):
        raise DatasetError(f"dataset.target={target} holds fractions; classes are whole numbers or text (a quantity: dataset.task=regression).")
    labels, classes = (regression_targets(column, target), ()) if regression else class_labels(column, target)
    test = stratified_mask(labels, TEST_FRACTION, split_seed)
    rows, columns = features(frame.drop(columns=[target]), fill_rows=~test)
    return (rows[~test], labels[~test], rows[test], labels[test]), columns, classes


def feature_stats(rows: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-feature mean and std of the training rows, in the features' units (a constant feature: std 1, left as it is)."""
    values = rows.double()
    std = values.std(dim=0, unbiased=True) if values.shape[0] > 1 else values.new_ones(values.shape[1])
    std = std.where(std > 1e-12, std.new_ones(()))
    return tuple(values.mean(dim=0).tolist()), tuple(std.tolist())
