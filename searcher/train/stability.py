"""When has a trial's learning behaviour become stable? (docs/design.md §2)

"Overfitting only happens when performance drops for untrained-for samples. If it
stays flat it may be doing something useful." So a flat validation curve is
*stable*, and only a sustained drop from the best is *overfitting*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Behavior = Literal["stable", "overfitting", "capped", "diverged", "pruned"]  # pruned: stopped from outside (a pruner)


@dataclass(frozen=True)
class StabilityRule:
    """The defaults are conf/train/default.yaml's `stability` (tests/test_defaults.py fails when one drifts)."""

    window: int = 5  # epochs over which "stopped moving" and "stayed down" are judged
    min_epochs: int = 8  # never judge before this many epochs
    max_epochs: int = 60  # "capped" when reached while still moving
    loss_tolerance: float = 0.1  # relative change of the training loss over the window
    loss_floor: float = 0.05  # losses below this count as this much (relative change of ~0 is noise)
    metric_tolerance: float = 0.005  # a new best must beat the old by more than this to count as moving
    overfit_margin: float = 0.02  # a drop from the best larger than this, held over the window, is overfitting
    explode_factor: float = 10.0  # training loss above this multiple of the first epoch's (at least loss_floor) is divergence


def judge(rule: StabilityRule, train_losses: list[float], val_scores: list[float]) -> Behavior | None:
    """The behaviour the curves so far show, or None to keep training."""
    latest = train_losses[-1]
    # the floor: a warm-started trial's first loss can be near zero, and a rise from 0.01 to 0.1 is no explosion
    exploded = latest > rule.explode_factor * max(train_losses[0], rule.loss_floor)
    if not math.isfinite(latest) or not math.isfinite(val_scores[-1]) or exploded:
        return "diverged"
    epochs = len(train_losses)
    if epochs >= max(rule.min_epochs, rule.window + 1):
        best = max(val_scores)
        recent = val_scores[-rule.window :]
        if all(score < best - rule.overfit_margin for score in recent):
            return "overfitting"
        earlier_best = max(val_scores[: -rule.window])
        metric_moving = max(recent) > earlier_best + rule.metric_tolerance
        before = train_losses[-rule.window - 1]
        loss_moving = abs(before - latest) / max(before, rule.loss_floor) > rule.loss_tolerance
        if not metric_moving and not loss_moving:
            return "stable"
    if epochs >= rule.max_epochs:
        return "capped"
    return None
