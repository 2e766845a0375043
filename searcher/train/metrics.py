"""What the stages optimise (`search.metric`): one value per validation example, so paired tests still apply.

Every decision compares two candidates on the same validation examples (search/evidence.py),
so a metric is defined per example and aggregated over the split: accuracy is the mean of
"was it right" (McNemar's test on the examples the two disagree on), RMSE the square root of
the mean squared error and MAE the mean absolute error (a paired t-test on the per-example
errors). A metric of your own is a function `(outputs, targets) -> per-example values`, its
mean aggregated.

Inside the search every metric is a *score*, higher is better: accuracy as it is, an error
negated. A regression target is standardised with the training split's mean and standard
deviation (data/batches.py), so errors are computed in units of that deviation: the stability
rule's tolerances and the search's effect-size floors (`search.width.tolerance`, ...) then
mean the same on any target. `shown` turns a score back into the metric in the target's own
units (`scale`: the target's standard deviation) for every line, record and figure a user sees.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

Task = Literal["classification", "regression"]
BUILT_IN: dict[str, tuple[Task, bool]] = {"accuracy": ("classification", True), "rmse": ("regression", False), "mae": ("regression", False)}
DEFAULT = {"classification": "accuracy", "regression": "rmse"}


class MetricError(ValueError):
    """`search.metric` names nothing usable (a user error: one sentence)."""


@dataclass(frozen=True)
class Metric:
    """A per-example metric and the direction the stages push it."""

    name: str  # accuracy | rmse | mae | the import path of a function of your own
    task: Task
    maximize: bool
    scale: float = field(default=1.0, compare=False)  # regression: the target's standard deviation (errors are shown in its units)

    @property
    def label(self) -> str:
        """How lines and figures name it: "accuracy", "RMSE", or a function's own name."""
        return self.name.upper() if self.name in ("rmse", "mae") else self.name.rsplit(".", 1)[-1]

    @property
    def short(self) -> str:
        """The suffix of `val_<short>` in the live lines: "acc" keeps the classifier's words."""
        return "acc" if self.name == "accuracy" else self.label.lower()

    @property
    def default(self) -> bool:
        """The task's own metric: trial keys (and search names) of a default search leave it out."""
        return self.name == DEFAULT[self.task]

    @property
    def score_words(self) -> str:
        """What a score is made of, in words: "accuracy", "-RMSE in standard deviations of the target"."""
        if self.name == "accuracy" or self.maximize:
            return self.label
        return f"-{self.label} in standard deviations of the target" if self.task == "regression" and self.name in BUILT_IN else f"-{self.label}"

    @property
    def paired_test(self) -> str:
        """The decision log's words for the test on the per-example values."""
        return "McNemar on accuracy" if self.name == "accuracy" else f"t-test on per-example {self.per_example_words}"

    @property
    def per_example_words(self) -> str:
        return {"rmse": "squared errors", "mae": "absolute errors"}.get(self.name, f"{self.label} values")

    def values(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each example's value (N,): bool for accuracy (right or wrong), float for the others."""
        if self.name == "accuracy":
            return outputs.argmax(1) == targets
        if self.name == "rmse":
            return (outputs[:, 0] - targets).square()
        if self.name == "mae":
            return (outputs[:, 0] - targets).abs()
        return user_function(self.name)(outputs, targets).float().reshape(-1)

    def score(self, mean: float) -> float:
        """The mean of the per-example values -> the search's score (higher is better)."""
        if self.name == "rmse":
            return -math.sqrt(max(mean, 0.0))
        return mean if self.maximize else -mean

    def shown(self, score: float) -> float:
        """A score as the user reads the metric: accuracy as it is, an error positive and in the target's units."""
        if self.name == "accuracy":
            return score
        return -score * self.scale if self.task == "regression" and self.name in BUILT_IN else (score if self.maximize else -score)

    def beyond(self, floor: float) -> str:
        """A decision's effect-size floor in the words its effect is shown in: "> +0.002" for accuracy, "RMSE lower by
        more than 0.058" (the target's units) for an error."""
        if self.name == "accuracy":
            return f"> +{floor}"
        return f"{self.label} {'higher' if self.maximize else 'lower'} by more than {abs(self.shown(floor) - self.shown(0.0)):.4g}"

    def format(self, score: float) -> str:
        """A score for a line of text: "0.9734" for accuracy (as the classifier's lines always read), 4 digits otherwise."""
        return f"{score:.4f}" if self.name == "accuracy" else f"{self.shown(score):.4g}"

    @property
    def worst(self) -> float:
        """The score of a trial with no finite epoch: accuracy 0 (as always recorded), no finite floor for the others."""
        return 0.0 if self.name == "accuracy" else -math.inf

    @property
    def perfect(self) -> float:
        """The best score there is: accuracy 1, no error at all 0 (a metric of your own: its unknown best, +inf)."""
        return 1.0 if self.name == "accuracy" else 0.0 if self.name in BUILT_IN else math.inf

    def chance(self, classes: int) -> float | None:
        """The score of a network that learned nothing (a uniform guess; the target's mean): None when unknown."""
        if self.name == "accuracy":
            return 1 / classes
        return -1.0 if self.name == "rmse" else None  # (the mean's RMSE is one standard deviation)

    def describe(self) -> dict:
        """For the search run's record (the report reads it back with `from_description`)."""
        return {"name": self.name, "task": self.task, "maximize": self.maximize, "scale": self.scale}

    @classmethod
    def from_description(cls, data: dict | None) -> Metric:
        """The metric a record names; a search recorded before metrics were chosen was judged by accuracy."""
        if not data:
            return ACCURACY
        return cls(data["name"], data["task"], bool(data["maximize"]), float(data.get("scale", 1.0)))


ACCURACY = Metric("accuracy", "classification", True)


def choose_metric(setting: str, goal: str, task: Task, scale: float = 1.0) -> Metric:
    """`search.metric` and `search.goal` for a dataset of `task`: "auto" is the task's own (accuracy; RMSE)."""
    name = DEFAULT[task] if setting == "auto" else setting
    if name in BUILT_IN:
        wanted, maximize = BUILT_IN[name]
        if wanted != task:
            raise MetricError(
                f"search.metric={name} is a {wanted} metric but the dataset is a {task} task; "
                f"use search.metric={DEFAULT[task]} (or auto){' or mae' if task == 'regression' else ''}."
            )
        if goal != "auto" and (goal == "maximize") != maximize:
            raise MetricError(f"search.goal={goal} contradicts search.metric={name}; leave search.goal=auto for a built-in metric.")
        return Metric(name, task, maximize, scale)
    if "." not in name:
        raise MetricError(f"search.metric={name} is unknown; choose auto, accuracy, rmse, mae, or a function of yours as my_package.module.function.")
    user_function(name)  # refused here, before anything trains, when it cannot be imported
    if goal == "auto":
        raise MetricError(f"search.metric={name} is a function of yours; say which way is better with search.goal=maximize or search.goal=minimize.")
    return Metric(name, task, goal == "maximize", scale)


def user_function(path: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The function an import path names (module.function), or a MetricError saying why not."""
    module_name, _, attribute = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise MetricError(f"search.metric={path} could not be imported ({type(error).__name__}: {error}); is its module on PYTHONPATH?") from None
    if not callable(found):
        raise MetricError(f"search.metric={path} is not a function; give one taking (outputs, targets) and returning a value per example.")
    return found


def task_loss(outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """The training loss: cross-entropy for class labels, squared error for a (standardised) float target."""
    if targets.is_floating_point():
        return nn.functional.mse_loss(outputs[:, 0], targets, reduction=reduction)
    return nn.functional.cross_entropy(outputs, targets, label_smoothing=label_smoothing, reduction=reduction)
