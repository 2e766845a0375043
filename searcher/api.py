"""`searcher.search(...)`: the staged search from Python (a script, a notebook), with the command line's settings.

The same settings (conf/, composed by Hydra from the same overrides), the same lifecycle (searcher.app.run), the
same record in MLflow and the same resume: a call with the settings of an earlier command or call reuses what it
finished. What differs from the command line: the decision log and report go to `output_dir` (by default a new
outputs/DATE/TIME-MICROSECONDS folder, as the command line's), no cli.log is written, and a search that does not
finish raises SearchError with the sentence the command line would print, instead of exiting.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from searcher.config import SearcherConfig
    from searcher.model.classifier import Classifier
    from searcher.model.family import Family


class SearchError(Exception):
    """A search that did not start or did not finish; `exit_code` is the command line's for the same case
    (2 bad settings or input, 75 a store lost mid-search, 130/143 interrupted, 1 a failed search)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Searched:
    """A finished search as recorded: its MLflow search run, test metric, decision log and final model."""

    run_id: str  # the MLflow search run (stage and trial runs are nested under it)
    search_name: str
    tracking_uri: str
    test_acc: float | None  # the final model's accuracy on the test split (mean over the final stage's seeds); None when judged by another metric
    model_uri: str | None  # what searcher.load_model takes (models:/NAME/VERSION); None if no model was logged
    decisions: tuple[dict, ...] = field(repr=False)  # every stage's decisions.json entries: stage, decision, reason, numbers
    output_dir: Path | None = None  # decisions.md and the report, when written
    metric: str = "accuracy"  # what the stages optimised (search.metric): accuracy, rmse, mae, or your function's path
    test_metric: float = float("nan")  # that metric on the test split, in the target's units (accuracy: test_acc)

    @cached_property
    def model(self) -> Classifier:
        """The final model as an nn.Module in eval mode on the CPU (images: uint8 in; tables: float32 feature rows in;
        logits out, or a regression's predictions in the target's units), read from the store."""
        from searcher.tracking.model import load_model

        if self.model_uri is None:
            raise SearchError(f"search {self.search_name} logged no model (run {self.run_id}); nothing to load.", 1)
        return load_model(self.model_uri, self.tracking_uri)


def compose(*overrides: str) -> tuple[SearcherConfig, bool]:
    """The settings the command line would run with these overrides, checked; and whether a dataset was chosen."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from searcher.cli import CONF_DIR, misplaced_dataset
    from searcher.config import ConfigError, validate

    if hint := misplaced_dataset(list(overrides)):
        raise SearchError(hint, 2)
    if GlobalHydra.instance().is_initialized():  # (a notebook that used Hydra's compose API itself)
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            composed = hydra_compose(config_name="config", overrides=list(overrides))
        return validate(OmegaConf.to_container(composed, resolve=False)), "dataset" in composed  # type: ignore[arg-type]
    except (HydraException, OmegaConfBaseException) as error:
        first_line = next(iter(str(error).strip().splitlines()), type(error).__name__)
        raise SearchError(f"{first_line} (overrides: {' '.join(overrides) or 'none'}); see python -m searcher --help.", 2) from None
    except ConfigError as error:
        raise SearchError(str(error), 2) from None


def search(
    *overrides: str,
    family: Family | None = None,
    data: Any = None,
    target: str | None = None,
    output_dir: str | Path | None = None,
    console: Console | None = None,
) -> Searched:
    """Run (or resume) one staged search with command-line overrides, e.g.
    `searcher.search("search=quick", "seed=3", "tracking.uri=sqlite:///runs.db")`, and return what it found.

    `family`: a model family object (a searcher.Family) instead of `model=...`; it is rebuilt from its class path and
    settings (`Family.identity()`), as every trial and `load_model` rebuild it. `data`: your data instead of
    `+dataset=...`: a pandas DataFrame with the class (or value: regression) in column `target`, or an (inputs, labels)
    pair of arrays or tensors: feature rows (N, F), uint8 images (N, C, H, W) or one-hot sequences (N, L, V). It is
    saved once, named by its content, under `data_dir` (a table as Parquet, searched as `+dataset=table`; images and
    sequences as .npz, searched as `+dataset=arrays`), so the same data resumes the same search.

    Prints what the command line prints (rich renders it in a notebook; without a terminal, plain lines with no
    control characters). `output_dir`: where decisions.md and the report go (default: a new folder under ./outputs)."""
    from searcher.app import run
    from searcher.model.family import Family
    from searcher.report.terminal import search_console

    if family is not None and not isinstance(family, Family):
        name = getattr(family, "__name__", type(family).__name__)
        hint = f"pass an instance, family={name}()" if isinstance(family, type) else "pass an instance of a searcher.Family subclass"
        raise SearchError(f"family={name} is not a model family object; {hint}.", 2)
    if data is not None:
        if any(o.lstrip("+~").startswith("dataset") for o in overrides):
            raise SearchError("data= and a dataset override were both given; pass one of them.", 2)
        overrides = (*overrides, *data_overrides(data, target, compose(*overrides)[0]))
    config, dataset_chosen = compose(*overrides)
    if family is not None:
        config = replace(config, model=family.identity())
    folder = Path(output_dir) if output_dir is not None else Path("outputs") / datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    folder.mkdir(parents=True, exist_ok=True)
    import mlflow  # noqa: F401  (imported first: importing it sets its logger's level, which is changed here)

    mlflow_log = logging.getLogger("mlflow")  # its INFO lines ("Created version ...") go to cli.log on the command line: not shown here either
    level = mlflow_log.level
    mlflow_log.setLevel(max(level, logging.WARNING))
    try:
        outcome = run(config, dataset_chosen, folder, console or search_console())
    finally:
        mlflow_log.setLevel(level)
        if output_dir is None:
            remove_if_empty(folder)
    if outcome.exit_code == 2 and outcome.error:  # a bad setting or input: the sentence that names it
        raise SearchError(outcome.error, 2)
    if outcome.exit_code != 0 or outcome.search_run_id is None:
        said = outcome.error or "see the lines above"
        raise SearchError(f"search {outcome.search_name} ended with exit {outcome.exit_code}: {said}", outcome.exit_code)
    return searched(config.tracking.uri, outcome.search_run_id, outcome.model_uri, folder if folder.is_dir() else None)


def remove_if_empty(folder: Path) -> None:
    """A search that wrote nothing (refused, or read back finished) leaves no folder of its own behind, as on the
    command line. (Its date folder stays: another search may be making its own folder in it.)"""
    with contextlib.suppress(OSError):
        folder.rmdir()  # (only an empty folder goes)


def data_overrides(data: Any, target: str | None, config: SearcherConfig) -> tuple[str, ...]:
    """The dataset settings that search `data`: a table's Parquet file, or (images, sequences) an .npz file."""
    import numpy as np

    if isinstance(data, (tuple, list)) and len(data) == 2:  # arrays or tensors: as NumPy arrays, once
        inputs, labels = (np.asarray(part.detach().cpu() if hasattr(part, "detach") else part) for part in data)
        if inputs.ndim in (3, 4):
            return ("+dataset=arrays", f"dataset.path={arrays_file(inputs, labels, config)}")
        data = (inputs, labels)
    path, column = table_file(data, target, config)
    return ("+dataset=table", f"dataset.path={path}", f"dataset.target={column}")


def arrays_file(inputs: Any, labels: Any, config: SearcherConfig) -> Path:
    """Images or sequences and their labels as an .npz file named by its content under `data_dir`/arrays (written once)."""
    import hashlib

    import numpy as np

    from searcher.config import data_dir

    if len(inputs) != len(labels) or labels.ndim != 1:
        raise SearchError(f"data=(inputs, labels) takes N inputs and N labels; got {inputs.shape} and {labels.shape}.", 2)
    if inputs.ndim == 4 and inputs.dtype != np.uint8:
        raise SearchError(f"data= images must be uint8 on the 0..255 scale, got {inputs.dtype}; convert with (x * 255).round().to(torch.uint8) for floats in 0..1.", 2)
    digest = hashlib.sha256(inputs.tobytes() + str(inputs.shape).encode() + labels.tobytes() + str(labels.dtype).encode()).hexdigest()[:16]
    path = data_dir(config) / "arrays" / f"{digest}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{digest}.{os.getpid()}.part.npz")
        np.savez(partial, inputs=inputs, labels=labels)
        partial.replace(path)  # (whole or absent, as a table's file)
    return path


def table_file(data: Any, target: str | None, config: SearcherConfig) -> tuple[Path, str]:
    """`data` as a Parquet file named by its content under `data_dir`/tables (written once), and its target column."""
    import hashlib

    import numpy as np
    import pandas as pd

    from searcher.config import data_dir
    from searcher.data.tables import columns_hint

    if isinstance(data, pd.DataFrame):
        if target is None:
            raise SearchError(f"data=DataFrame needs target=, the column to predict (e.g. target={str(data.columns[-1])!r}).", 2)
        if target not in data.columns:
            raise SearchError(f"target={target!r} is not a column of the DataFrame; {columns_hint(target, list(data.columns))}.", 2)
        frame, column = data, target
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        features, labels = (np.asarray(part) for part in data)  # (data_overrides made tensors arrays)
        if features.ndim != 2 or len(features) != len(labels):
            raise SearchError(
                f"data=(inputs, labels) takes rows (N, F), images (N, C, H, W) or sequences (N, L, V) and N labels; got {features.shape} and {labels.shape}.", 2
            )
        column = target or "label"
        frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])]).assign(**{column: labels})
    else:
        raise SearchError(f"data= takes a DataFrame (with target=COLUMN) or a (features, labels) pair; got {type(data).__name__}.", 2)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes() + str(list(frame.columns)).encode()).hexdigest()[:16]
    path = data_dir(config) / "tables" / f"{digest}.parquet"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        frame.to_parquet(partial, index=False)
        partial.replace(path)  # (whole or absent: a second search reading it meanwhile never sees half a file)
    return path, column


def searched(tracking_uri: str, run_id: str, model_uri: str | None, output_dir: Path | None) -> Searched:
    """A finished search read back from its store: the record is the one source of its numbers and decisions."""
    from searcher.tracking.reader import read_search
    from searcher.tracking.store import client_for

    record = read_search(client_for(tracking_uri), run_id)
    return Searched(
        run_id=run_id,
        search_name=record.name,
        tracking_uri=tracking_uri,
        test_acc=record.metrics["test_acc"] if record.metric.name == "accuracy" else None,  # (test_acc records the score: -RMSE in target stds)
        metric=record.metric.name,
        test_metric=record.metrics[f"test_{record.metric.short}"],
        model_uri=model_uri or (record.model.uri if record.model else None),
        decisions=tuple(entry for stage in record.stages for entry in stage.decisions),
        output_dir=output_dir,
    )
