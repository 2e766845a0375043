"""How a table's columns become float features: fitted once on the training file, applied the same way to new rows.

A number column stays a number in its units (a gap takes the median of the training rows); a text, category or
boolean column becomes one 0/1 feature per value it takes in the file, named `column=value`, a missing value its
own value `<missing>`. The fitted `Column`s travel with the final model, so `model.rows(frame)` encodes new rows
exactly as training did: the columns found by name (extra ones, the target among them, ignored), and a value
training never saw refused, never silently encoded as zeros.

Its own module, below both the data layer (which fits it) and the model (which carries it), because both need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ClassName = str | int | float | bool  # a target column's value, kept as the file held it (1, not "1")
MISSING = "<missing>"  # a gap in a text column: a category of its own
MAX_ONE_HOT = 100  # a text column with more distinct values than this is an id or free text, not a category


class ColumnError(ValueError):
    """Rows that cannot be encoded as the columns were fitted; the message names the column and what to do."""


@dataclass(frozen=True)
class Column:
    """One column of the file: a number (`categories` empty; a gap becomes `fill`) or one-hot over `categories`."""

    name: str
    fill: float = 0.0
    categories: tuple[str, ...] = ()

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}={category}" for category in self.categories) if self.categories else (self.name,)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "categories": list(self.categories)} if self.categories else {"name": self.name, "fill": self.fill}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Column:
        return cls(str(data["name"]), float(data.get("fill", 0.0)), tuple(data.get("categories", ())))


def is_number(column: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column))


def as_text(column: Any) -> Any:
    """A column's values as the category names one-hot features are named by."""
    return column.astype("string").fillna(MISSING)


def fit_columns(frame: Any, fill_rows: np.ndarray) -> tuple[Column, ...]:
    """Each column's encoding: numbers filled with the median of `fill_rows` (the rows not held out for testing),
    categories from every row. Raises ColumnError for a text column with more than MAX_ONE_HOT values."""
    columns = []
    for name in frame.columns:
        column = frame[name]
        if is_number(column):
            values = column.to_numpy(np.float64, na_value=np.nan)[fill_rows]
            known = values[~np.isnan(values)]
            columns.append(Column(str(name), float(np.median(known)) if known.size else 0.0))
            continue
        categories = sorted(as_text(column).unique().tolist())
        if len(categories) > MAX_ONE_HOT:
            raise ColumnError(
                f"column {name!r} has {len(categories)} distinct text values (an id or free text?); drop it from the file "
                f"or encode it as numbers (searcher one-hot encodes up to {MAX_ONE_HOT} categories)."
            )
        columns.append(Column(str(name), categories=tuple(categories)))
    return tuple(columns)


def as_frame(rows: Any) -> Any:
    import pandas as pd  # (here, not at the top: the model layer imports this module, and a search need not load pandas)

    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, (pd.Series, dict)):
        return pd.DataFrame([dict(rows)])  # (one row; each column's type read from its value, as a file's would be)
    raise ColumnError(f"rows come as a pandas DataFrame with the training file's columns (one row: a Series or a dict); got {type(rows).__name__}.")


def encode(columns: tuple[Column, ...], frame: Any) -> np.ndarray:
    """(rows, features) float32: `frame`'s columns encoded as fitted, in the fitted order. One row may come as a
    pandas Series or a dict of column: value."""
    frame = as_frame(frame)
    missing = [column.name for column in columns if column.name not in frame.columns]
    if missing:
        raise ColumnError(f"the rows lack the column(s) {', '.join(map(repr, missing))} the model reads; give every feature column of the training file.")
    features: list[np.ndarray] = []
    for column in columns:
        values = frame[column.name]
        if not column.categories:
            if not is_number(values):
                raise ColumnError(f"column {column.name!r} held numbers in training; these rows hold {values.dtype} values (convert them to numbers).")
            numbers = values.to_numpy(np.float64, na_value=np.nan)
            features.append(np.where(np.isnan(numbers), column.fill, numbers))
            continue
        text = as_text(values)
        unknown = sorted(set(text.unique().tolist()) - set(column.categories))
        if unknown:
            shown = ", ".join(map(repr, unknown[:5]))
            raise ColumnError(
                f"column {column.name!r} holds value(s) {shown} training never saw (it knows {', '.join(map(repr, column.categories[:10]))}); "
                "map them to a known value or search again on a file that has them."
            )
        features.extend((text == category).to_numpy(np.float64) for category in column.categories)
    return np.stack(features, axis=1).astype(np.float32)


def feature_names(columns: tuple[Column, ...]) -> tuple[str, ...]:
    return tuple(name for column in columns for name in column.feature_names)
