"""What the controller asks for (TrialRequest) and what it is told back (TrialOutcome).

Both are plain values: a request is a spec plus settings plus a seed, keyed by a
stable hash; an outcome is the numbers a decision needs. Where and how a trial
ran is not the controller's business.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Literal

from searcher.model.cnn import CNN
from searcher.model.family import Family, Spec
from searcher.train.metrics import ACCURACY, Metric
from searcher.train.rungs import Rungs, RungStop
from searcher.train.trainer import TrainResult, TrainSettings

Status = Literal["ok", "failed", "pruned"]
Decision = Literal["selected", "rejected", "pruned", "failed"]
ParamValue = int | float | str


@dataclass(frozen=True)
class TrialRequest:
    stage: str
    candidate: str  # readable name shared by a candidate's repeats: "w64 d2", "d3 +w32", "reg wd=5e-4 do=0.1"
    arch: Spec  # the family's spec
    train: TrainSettings
    seed: int
    data_identity: str
    params: tuple[tuple[str, ParamValue], ...] = ()  # what the stage varies, as its study records them
    repeat: int = 0  # 0..repeats-1: the seed index within a candidate
    evaluate_test: bool = False  # final stage only
    source: str | None = None  # transfer stage: key of the trained trial whose weights are probed
    source_state: dict | None = field(default=None, compare=False, repr=False)  # those weights (CPU)
    parent: str | None = None  # warm start: the trial key whose trained weights this trial grows from
    fold: int = 0  # cross-validation: trains without, and is judged on, this fold (0: the dataset's own validation split)
    folds: int = 1  # ...of this many (DeviceData.fold)
    family: Family = field(default_factory=CNN, compare=False, repr=False)  # builds (and grows) `arch`
    metric: Metric = field(default=ACCURACY, compare=False, repr=False)  # what the trial is scored by (train/metrics.py)
    rungs: Rungs | None = None  # search.rungs: where this trial may stop, behind its reference beyond noise (train/rungs.py)
    rung_epochs: tuple[int, ...] = field(default=(), compare=False)  # keep each example's value at these epochs (a later trial's rungs)

    @property
    def label(self) -> str:
        return self.candidate if self.repeat == 0 else f"{self.candidate} r{self.repeat}"

    @property
    def fold_label(self) -> str:
        """"r/k": which cross-validation fold of how many this trial trains without and is judged on."""
        return f"{self.fold % self.folds}/{self.folds}"

    @property
    def key(self) -> str:
        """Stable hash of architecture, training settings, data and seed: finds a trial again."""
        payload = {
            "arch": self.arch.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data_identity,
            "seed": self.seed,
            "test": self.evaluate_test,
        }
        if (family := self.family.key_part()) is not None:
            payload["family"] = family
        if not self.metric.default:  # (accuracy for classes, RMSE for regression: the data's identity already says which)
            payload["metric"] = [self.metric.name, self.metric.maximize]
        if self.source is not None:
            payload["source"] = self.source
        if self.parent is not None:  # a warm-started trial is a different trial from its cold twin
            payload["parent"] = self.parent
        if self.fold % self.folds:  # fold 0 is the plain split: the same trial as without cross-validation
            payload["fold"] = self.fold_label
        if self.rungs is not None:  # a trial that may stop at a rung is another trial than one trained to the end
            payload["rungs"] = self.rungs.key_part()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrialOutcome:
    request: TrialRequest
    status: Status
    result: TrainResult | None = field(default=None, compare=False)
    error: str | None = None  # failed: "ExceptionType: message", or "diverged"
    elapsed: float | None = field(default=None, compare=False)  # the search's clock when it was recorded (search.budget spends by it)

    @property
    def score(self) -> float:
        """The trial's score (best 3-epoch mean of the validation score, searcher.train.score); -inf for a failed trial."""
        if self.status == "failed" or self.result is None:
            return -math.inf
        return result_score(self.result)


def result_score(result: TrainResult) -> float:
    """A result's score, shown and recorded under one name: a result without a curve score (a probe) scores its best epoch."""
    return result.best_val_acc if result.score is None else result.score


@dataclass(frozen=True)
class DecisionEntry:
    """One line of the decision log: what was decided, why, and the numbers compared."""

    stage: str
    decision: str
    reason: str
    numbers: dict[str, float | int | str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"stage": self.stage, "decision": self.decision, "reason": self.reason, "numbers": self.numbers}


@dataclass(frozen=True)
class Candidate:
    """A stage's unit of comparison: one architecture and settings, run over `repeats` seeds."""

    name: str
    arch: Spec
    train: TrainSettings
    params: tuple[tuple[str, ParamValue], ...] = ()
    parents: tuple[tuple[int, str], ...] = ()  # warm starts: (repeat, parent trial key); empty: trained from scratch
    rungs: tuple[tuple[int, Rungs], ...] = ()  # search.rungs: (repeat, what that seed is checked against); empty: none


def rung_stop(outcomes: list[TrialOutcome]) -> RungStop | None:
    """Where a seed stopped at a rung (behind its reference beyond noise), if one did: the candidate is then behind,
    whatever its other seeds say."""
    return next((o.result.rung_stop for o in outcomes if o.result is not None and o.result.rung_stop is not None), None)


def stopped_at_rung(outcomes: list[TrialOutcome]) -> bool:
    return rung_stop(outcomes) is not None


def mean_score(outcomes: list[TrialOutcome]) -> float:
    """A candidate's score: the mean over its repeats (any failure fails the candidate)."""
    if not outcomes:
        return -math.inf
    scores = [outcome.score for outcome in outcomes]
    return -math.inf if any(math.isinf(s) for s in scores) else sum(scores) / len(scores)
