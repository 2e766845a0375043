import math

import pytest

from searcher.train.stability import StabilityRule, judge, unlearned

RULE = StabilityRule(window=5, min_epochs=8, max_epochs=40, loss_tolerance=0.1, metric_tolerance=0.005, overfit_margin=0.02)


def run(losses, scores, chance=None):
    """The first verdict over growing prefixes of the curves, and the epoch it came at."""
    for epoch in range(1, len(losses) + 1):
        verdict = judge(RULE, losses[:epoch], scores[:epoch], chance)
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


# A plateau before learning (the sequence task, docs/BENCHMARKS.md §7: a two-layer transformer, measured): ~27% with
# 7 classes for a dozen epochs, the training loss creeping down, then the jump to 100% within two or three epochs.
PLATEAU_LOSSES = [1.84, 1.78, 1.76, 1.75, 1.74, 1.74, 1.73, 1.72, 1.72, 1.71, 1.69, 1.67, 1.62, 1.40, 0.63, 0.06] + [0.01] * 10
PLATEAU_SCORES = [0.27, 0.28, 0.28, 0.26, 0.27, 0.27, 0.26, 0.28, 0.27, 0.28, 0.28, 0.28, 0.34, 0.56, 0.96, 1.0] + [1.0] * 10


def test_a_plateau_near_chance_is_not_stable_before_the_jump():
    assert run(PLATEAU_LOSSES, PLATEAU_SCORES) == ("stable", 8)  # without chance: stopped on the plateau, at 28%
    verdict, epoch = run(PLATEAU_LOSSES, PLATEAU_SCORES, chance=1 / 7)  # stable once fitted
    assert (verdict, epoch) == ("stable", 22) and max(PLATEAU_SCORES[:epoch]) == 1.0  # trained through the jump


def test_a_curve_that_never_leaves_chance_is_stable_after_three_windows():
    losses = [1.96, 1.95] + [1.945] * 30
    scores = [0.16] + [0.15, 0.14, 0.16, 0.15] * 8  # no new best after the first epoch
    assert run(losses, scores) == ("stable", 8)
    assert run(losses, scores, chance=1 / 7) == ("stable", 16)  # flat over 3 windows of 5 epochs


def test_a_learned_flat_curve_is_stable_as_before():
    losses = [1.0, 0.5, 0.3] + [0.2] * 20
    scores = [0.5, 0.8, 0.9] + [0.9] * 20
    assert run(losses, scores, chance=0.1) == run(losses, scores) == ("stable", 9)
    assert not unlearned(RULE, [0.2, 0.33], chance=0.1)  # a quarter of the way from chance to 1 is learning
    assert unlearned(RULE, [0.2, 0.32], chance=0.1) and unlearned(RULE, [0.28, 0.30], chance=1 / 7)


def test_the_rate_does_not_halve_while_a_trial_is_near_chance():
    """Reduce-on-plateau halves the rate after 3 epochs without a new best; on a plateau before learning that would
    leave the rate too small to ever leave it (measured on the sequence task). A network that cannot learn (the rate
    ~0) keeps its rate, and stops once flat over three windows."""
    import torch

    from searcher.data import DatasetOptions, DeviceData, load_dataset
    from searcher.model import LayoutPolicy
    from searcher.train import TrainSettings, train_trial

    digits = DeviceData(load_dataset(DatasetOptions("digits")), torch.device("cpu"))
    rule = StabilityRule(window=3, min_epochs=4, max_epochs=30)
    settings = TrainSettings(optimizer="adamw", lr=1e-7, batch_size=64, stability=rule)
    result = train_trial(LayoutPolicy(input_size=8).baseline(2, 8), digits, settings, seed=0)
    assert max(record.val_acc for record in result.history) < 0.1 + 0.25 * 0.9  # near chance throughout
    assert result.behavior == "stable" and len(result.history) == 3 * 3 + 1
    assert {record.lr for record in result.history} == {1e-7}


def test_a_drop_while_the_training_loss_rose_too_is_unstable_not_overfitting():
    """Validation fell and stayed down because training itself lost ground (the loss jumped 7x and stayed above its
    best): the trial stops at the same epoch as an overfitting one would, under a name that points at the rate."""
    losses = [1.0, 0.6, 0.4, 0.3, 0.16, 1.1, 0.6, 0.5, 0.45, 0.4, 0.4]
    scores = [0.3, 0.5, 0.75, 0.85, 0.885, 0.54, 0.51, 0.6, 0.62, 0.6, 0.6]
    assert run(losses, scores) == ("unstable", 10)
    falling = [1.0 / e for e in range(1, 11)]
    assert run(falling, scores)[0] == "overfitting"  # the same validation curve while the fit improves
