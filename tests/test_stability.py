import math

import pytest

from searcher.train.stability import StabilityRule, judge

RULE = StabilityRule(window=5, min_epochs=8, max_epochs=40, loss_tolerance=0.1, metric_tolerance=0.005, overfit_margin=0.02)


def run(losses, scores):
    """The first verdict over growing prefixes of the curves, and the epoch it came at."""
    for epoch in range(1, len(losses) + 1):
        verdict = judge(RULE, losses[:epoch], scores[:epoch])
        if verdict:
            return verdict, epoch
    return None, len(losses)


def test_flat_validation_is_stable_not_overfitting():
    losses = [1.0, 0.5, 0.3] + [0.2] * 20
    scores = [0.5, 0.8, 0.9] + [0.9] * 20
    assert run(losses, scores) == ("stable", 9)  # the loss still moved 0.3 -> 0.2 within the window at epoch 8


def test_sustained_drop_from_the_best_is_overfitting():
    losses = [1.0 / e for e in range(1, 30)]  # still falling: never "stable"
    scores = [0.5, 0.7, 0.9, 0.95] + [0.9] * 25  # 0.05 below its best from epoch 5 on
    verdict, epoch = run(losses, scores)
    assert verdict == "overfitting" and epoch == 9


def test_a_single_dip_is_not_overfitting():
    losses = [1.0 / e for e in range(1, 12)]
    scores = [0.5, 0.7, 0.9, 0.95, 0.96, 0.90, 0.96, 0.97, 0.975, 0.98, 0.985]
    assert run(losses, scores)[0] is None


def test_still_improving_at_max_epochs_is_capped():
    losses = [1.0 / e for e in range(1, 41)]
    scores = [min(0.99, 0.5 + 0.012 * e) for e in range(1, 41)]
    assert run(losses, scores) == ("capped", 40)


def test_nan_or_exploding_loss_is_diverged():
    assert judge(RULE, [1.0, math.nan], [0.5, 0.5]) == "diverged"
    assert judge(RULE, [1.0, 20.0], [0.5, 0.1]) == "diverged"


def test_a_trials_score_is_its_best_three_epoch_mean_not_its_luckiest_epoch():
    from searcher.train.score import best_window_mean, trial_score

    lucky = [0.90, 0.91, 0.99, 0.90, 0.91, 0.92]  # one lucky epoch
    steady = [0.90, 0.94, 0.95, 0.95, 0.94]
    assert max(lucky) > max(steady) and trial_score(steady) > trial_score(lucky)
    assert trial_score(lucky) == pytest.approx((0.99 + 0.90 + 0.91) / 3)
    assert best_window_mean([0.5, 0.7]) == pytest.approx(0.6)  # fewer epochs than the window: their mean
    assert best_window_mean([0.5, float("nan"), 0.9, 0.9, 0.9]) == pytest.approx(0.9)  # a non-finite epoch never helps
    assert best_window_mean([]) == float("-inf")
    assert trial_score([0.80, 0.85, 0.90], initial=0.95) == pytest.approx((0.95 + 0.80 + 0.85) / 3)  # a warm start's epoch 0 counts
