"""When has a trial's learning behaviour become stable? (docs/design.md §2)

"Overfitting only happens when performance drops for untrained-for samples. If it
stays flat it may be doing something useful." So a flat validation curve is
*stable*, and only a sustained drop from the best is *overfitting*. A curve still
near chance is another matter: it has learned nothing yet, and a flat stretch there
is a plateau before learning (a phase transition can follow it), so it must stay
flat for longer before it counts as stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

Behavior = Literal["stable", "overfitting", "unstable", "capped", "diverged", "pruned"]  # pruned: stopped from outside (a pruner)


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
    # Not settings: a field would change the key of every trial recorded so far (they hash the trainer's settings).
    near_chance: ClassVar[float] = 0.25  # best val score below this share of the way from chance to perfect: not learned yet
    plateau_windows: ClassVar[int] = 3  # ...and then judged over this many windows, not one


def unlearned(rule: StabilityRule, val_scores: list[float], chance: float | None, perfect: float = 1.0) -> bool:
    """Has the curve not yet left chance's neighbourhood (its best less than `near_chance` of the way from chance to
    `perfect`: accuracy 1, an error's score 0)? Never, where chance is unknown (a metric of your own)."""
    return chance is not None and max(val_scores) < chance + rule.near_chance * (perfect - chance)


def judge(
    rule: StabilityRule, train_losses: list[float], val_scores: list[float], chance: float | None = None, perfect: float = 1.0
) -> Behavior | None:
    """The behaviour the curves so far show, or None to keep training. `chance`: the score of a guess (1 / classes; for
    RMSE -1, the target's mean), `perfect` the best score there is; given, a curve still near chance is judged over
    `plateau_windows` windows (a plateau before learning, not stability)."""
    latest = train_losses[-1]
    # the floor: a warm-started trial's first loss can be near zero, and a rise from 0.01 to 0.1 is no explosion
    exploded = latest > rule.explode_factor * max(train_losses[0], rule.loss_floor)
    if not math.isfinite(latest) or not math.isfinite(val_scores[-1]) or exploded:
        return "diverged"
    epochs = len(train_losses)
    span = rule.window * (rule.plateau_windows if unlearned(rule, val_scores, chance, perfect) else 1)
    if epochs >= max(rule.min_epochs, span + 1):
        best = max(val_scores)
        recent = val_scores[-span:]
        if all(score < best - rule.overfit_margin for score in recent):
            # Overfitting fits the training data better while validation falls; a training loss that rose and stayed
            # above its best too is the optimiser losing ground (a learning rate too high): stopped alike, named apart.
            earlier_fit = max(min(train_losses[:-span]), rule.loss_floor)
            return "unstable" if min(train_losses[-span:]) > earlier_fit * (1 + 2 * rule.loss_tolerance) else "overfitting"
        earlier_best = max(val_scores[:-span])
        metric_moving = max(recent) > earlier_best + rule.metric_tolerance
        before = train_losses[-span - 1]
        loss_moving = abs(before - latest) / max(before, rule.loss_floor) > rule.loss_tolerance
        if not metric_moving and not loss_moving:
            return "stable"
    if epochs >= rule.max_epochs:
        return "capped"
    return None
