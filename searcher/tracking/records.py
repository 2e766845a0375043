"""A search as plain data, read back from the tracking store (reader.py): what the report and the terminal show.

Figures and documents are made from these records only, never from the objects of
a running search, so `python -m searcher.report` rebuilds exactly what the search
published at its end. The records name the record contract's fields (schema.py),
so their readers never spell a tag or metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from searcher.tracking.schema import Metrics, Params, Tags
from searcher.train.metrics import Metric


@dataclass(frozen=True)
class Curve:
    steps: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class TrialRecord:
    run_id: str
    name: str  # the run name: "w64 d2", "d3 +w32", "reg wd=5e-4 do=0.1", "final seed 1", "transfer d3 +w16"
    stage: str
    status: str  # MLflow run status: FINISHED, FAILED, KILLED, RUNNING
    decision: str  # selected | rejected | pruned | failed | "" (not decided yet)
    behavior: str  # stable | overfitting | unstable | capped | diverged | pruned | "" (records before pruned existed say capped)
    started_ms: int
    metrics: dict[str, float] = field(default_factory=dict)  # per-trial summaries: score, best_val_acc, epochs, train_seconds...
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)  # per-epoch train_loss, val_loss, val_acc, lr

    @property
    def val_acc(self) -> float:
        """The single best epoch's validation accuracy: label it "best epoch" wherever it is shown."""
        return self.metrics.get(Metrics.BEST_VAL_ACC, math.nan)

    @property
    def score(self) -> float:
        """What the decisions compare (schema.Metrics.SCORE); a trial recorded without one scored its best epoch."""
        return self.metrics.get(Metrics.SCORE, self.val_acc)

    @property
    def seconds(self) -> float:
        return self.metrics.get(Metrics.TRAIN_SECONDS, 0.0)

    @property
    def epochs(self) -> int:
        return int(self.metrics.get(Metrics.EPOCHS, 0))

    @property
    def best_epoch(self) -> float | None:
        return self.metrics.get(Metrics.BEST_EPOCH)

    @property
    def test_acc(self) -> float:
        return self.metrics.get(Metrics.TEST_ACC, math.nan)

    @property
    def depth(self) -> int:
        return int(self.params.get(Params.ARCH_DEPTH, "0") or 0)

    @property
    def widths(self) -> tuple[int, ...]:
        text = self.params.get(Params.ARCH_WIDTHS, "")
        return tuple(int(w) for w in text.split(",") if w)


@dataclass(frozen=True)
class StageRecord:
    run_id: str
    stage: str
    title: str  # the run name, e.g. "2 depth"
    status: str
    started_ms: int
    winner: str
    winner_arch: dict | None
    metrics: dict[str, float]
    decisions: tuple[dict, ...]  # the stage run's decisions.json: {stage, decision, reason, numbers}
    trials: tuple[TrialRecord, ...]  # in the order they started

    @property
    def score(self) -> float:
        """The winner's score; a search recorded before stage runs had `score` logged it as best_val_acc."""
        return self.metrics.get(Metrics.SCORE, self.metrics.get(Metrics.BEST_VAL_ACC, math.nan))


@dataclass(frozen=True)
class ModelRecord:
    uri: str  # what searcher.load_model (and mlflow.pyfunc.load_model) take
    registered_name: str | None = None
    version: str | None = None
    logged_uri: str | None = None  # models:/<model id>


@dataclass(frozen=True)
class SearchRecord:
    run_id: str
    name: str
    experiment_id: str
    tracking_uri: str
    status: str
    started_ms: int
    ended_ms: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    stages: tuple[StageRecord, ...]  # in procedure order
    model: ModelRecord | None = None

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.stage == name), None)

    @property
    def trials(self) -> list[TrialRecord]:
        return sorted((t for s in self.stages for t in s.trials), key=lambda t: t.started_ms)

    @property
    def seconds(self) -> float | None:
        if Metrics.SEARCH_SECONDS in self.metrics:
            return self.metrics[Metrics.SEARCH_SECONDS]
        return (self.ended_ms - self.started_ms) / 1000 if self.ended_ms else None

    @property
    def metric(self) -> Metric:
        """What the search optimised (searcher.metric tag); a search recorded before metrics were chosen: accuracy."""
        return Metric.from_description(json.loads(self.tags[Tags.METRIC]) if Tags.METRIC in self.tags else None)

    @property
    def input(self) -> dict:
        """Channels, size, per-channel mean/std and classes of the model's input (the search run's searcher.input tag)."""
        return json.loads(self.tags.get(Tags.INPUT, "{}"))
