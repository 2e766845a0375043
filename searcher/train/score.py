"""A trial's score: the best mean validation accuracy over 3 consecutive epochs, not the luckiest single epoch.

The maximum of a noisy validation curve is biased upward, and the more epochs a trial
draws the more it is inflated. Averaging the best window of consecutive epochs keeps
"how good did this network get" while smoothing one lucky epoch away. Measured by
scripts/bench_score.py (docs/benchmarks/score_estimators_*.json; docs/BENCHMARKS.md,
"Which score"): over 80 digits configurations x 3 seeds it ranked trials by their
test accuracy at least as well as the maximum, with about half its upward bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

WINDOW_EPOCHS = 3


def best_window_mean(values: Sequence[float], window: int = WINDOW_EPOCHS) -> float:
    """The highest mean of `window` consecutive values (of all of them when there are fewer); -inf if none is finite."""
    finite = [v if math.isfinite(v) else -math.inf for v in values]
    if not finite:
        return -math.inf
    if len(finite) <= window:
        return sum(finite) / len(finite)
    return max(sum(finite[i : i + window]) / window for i in range(len(finite) - window + 1))


def trial_score(val_accuracies: Sequence[float], initial: float | None = None) -> float:
    """The score of a trial's validation curve; a warm start's grown function (`initial`) counts as epoch 0."""
    curve = ([initial] if initial is not None else []) + list(val_accuracies)
    return best_window_mean(curve)
