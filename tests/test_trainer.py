import math

import pytest
import torch

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.model import LayoutPolicy, build_model
from searcher.train import StabilityRule, TrainSettings, train_trial
from searcher.train.trainer import evaluate

FAST = StabilityRule(window=3, min_epochs=4, max_epochs=12)


@pytest.fixture(scope="module")
def digits():
    return DeviceData(load_dataset(DatasetOptions("digits")), torch.device("cpu"))


def test_trains_until_a_verdict_and_keeps_the_best_epoch(digits):
    spec = LayoutPolicy(input_size=8).baseline(2, 16)
    result = train_trial(spec, digits, TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=FAST), seed=0)
    assert result.behavior in ("stable", "overfitting", "capped")
    assert 4 <= len(result.history) <= 12 and result.best_val_acc > 0.9
    assert result.best_val_acc == max(r.val_acc for r in result.history)
    assert result.history[result.best_epoch - 1].val_acc == result.best_val_acc
    assert result.test_acc is None and digits.dataset.test_reads == 0
    model = build_model(spec, 1, 10)
    model.load_state_dict(result.state)  # the returned weights are the best epoch's
    _, accuracy, _, _ = evaluate(model, digits.val, torch.autocast("cpu", enabled=False), False)
    assert accuracy == pytest.approx(result.best_val_acc)
    assert result.images_per_second > 0 and result.train_seconds > 0


def test_same_seed_same_curves(digits):
    spec = LayoutPolicy(input_size=8).baseline(2, 8)
    settings = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, augment=1.0, stability=StabilityRule(window=2, min_epochs=3, max_epochs=3))
    a, b = (train_trial(spec, digits, settings, seed=5) for _ in range(2))
    assert [r.val_loss for r in a.history] == [r.val_loss for r in b.history]


def test_nan_loss_is_diverged(digits):
    spec = LayoutPolicy(input_size=8).baseline(2, 8)
    settings = TrainSettings(optimizer="sgd", lr=math.inf, batch_size=64, stability=FAST)  # BN shrugs off merely huge rates
    result = train_trial(spec, digits, settings, seed=0)
    assert result.behavior == "diverged"
    assert not math.isfinite(result.history[-1].train_loss) or result.history[-1].train_loss > 10 * result.history[0].train_loss


def test_a_callback_can_stop_a_trial_early(digits):
    spec = LayoutPolicy(input_size=8).baseline(2, 8)
    result = train_trial(spec, digits, TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=FAST), seed=0, on_epoch=lambda record: record.epoch == 2)
    assert result.stopped_early and len(result.history) == 2 and result.behavior == "pruned"  # not "capped": the rule did not stop it


def test_test_split_only_when_asked(digits):
    spec = LayoutPolicy(input_size=8).baseline(2, 8)
    settings = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=StabilityRule(window=2, min_epochs=3, max_epochs=3))
    result = train_trial(spec, digits, settings, seed=0, evaluate_test=True)
    assert result.test_acc is not None and 0 <= result.test_acc <= 1


def test_a_trial_of_another_fold_is_judged_on_that_folds_images(digits):
    from searcher.execution.work import train_request
    from searcher.search.evidence import unpack
    from searcher.search.trials import TrialRequest

    spec = LayoutPolicy(input_size=8).baseline(2, 8)
    settings = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=StabilityRule(window=2, min_epochs=2, max_epochs=2))
    request = TrialRequest("width", "w8 d2", spec, settings, seed=1, data_identity=digits.dataset.identity, repeat=2, fold=2, folds=5)
    result = train_request(digits, request, None)
    fold = digits.fold(2, 5)
    assert len(fold.val) != len(digits.val) or not torch.equal(fold.val.labels, digits.val.labels)
    correct = unpack(result.val_correct, len(fold.val))
    model = build_model(spec, 1, 10)
    model.load_state_dict(result.state)
    _, accuracy, _, _ = evaluate(model, fold.val, torch.autocast("cpu", enabled=False), False)
    assert accuracy == pytest.approx(result.best_val_acc) == pytest.approx(float(correct.mean()))
