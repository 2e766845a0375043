"""Regression and chosen metrics (search.metric): float targets, per-example errors in paired t-tests, RMSE in the
target's units in every line and record, a metric of your own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, search_runs

import searcher
from searcher.data import DatasetError, DatasetOptions, DeviceData, load_dataset
from searcher.execution.worker import warm_up
from searcher.search.evidence import compare
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.metrics import ACCURACY, Metric, MetricError, choose_metric, task_loss
from searcher.train.stability import StabilityRule, unlearned
from searcher.train.trainer import TrainResult, TrainSettings, pack_values

USER_METRIC = '''
import torch

def absolute_error(outputs, targets):
    """Per-row absolute error of the (standardised) prediction: the user's own metric."""
    return (outputs[:, 0] - targets).abs()
'''


def value_table(path, rows: int = 600, seed: int = 0):
    """A price-like target: a smooth function of two numbers and a category, in units far from 1 (mean ~500, std ~100)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    colour = rng.choice(["red", "green", "blue"], size=rows)
    value = 500 + 80 * np.tanh(x[:, 0] * x[:, 1]) + 60 * (colour == "red") + 20 * x[:, 2] + rng.normal(0, 5, rows)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "colour": colour, "count": rng.integers(0, 9, rows), "price": value}).to_csv(path, index=False)
    return path


def test_a_float_target_is_regression_standardised_on_the_training_split_with_splits_spanning_its_range(tmp_path):
    path = value_table(tmp_path / "t.csv")
    table = load_dataset(DatasetOptions("table", path=path, target="price"))
    assert table.task == "regression" and table.num_classes == 1 and table.class_names == ()
    assert table.train.labels.dtype == torch.float32 and len(table.test()) == 120
    assert table.target_mean == pytest.approx(float(table.train.labels.double().mean())) and 50 < table.target_std < 150
    device = DeviceData(table, torch.device("cpu"))
    assert abs(float(device.train.labels.mean())) < 1e-4 and float(device.train.labels.std()) == pytest.approx(1.0, abs=1e-4)
    # stratified by decile: the test split holds ~20% of every tenth of the target's range, its extremes included
    everything = torch.cat([table.train.labels, table.val.labels, table.test().labels]).numpy()
    edges = np.quantile(everything, np.linspace(0, 1, 11))
    counts = np.histogram(table.test().labels.numpy(), bins=edges)[0]
    assert counts.min() >= 10 and counts.max() <= 14
    warm_up(device)  # a worker process's first step trains on these targets too
    count = load_dataset(DatasetOptions("table", path=path, target="count", task="regression"))  # an integer column as a quantity
    assert count.task == "regression" and count.num_classes == 1
    assert load_dataset(DatasetOptions("table", path=path, target="count")).num_classes == 9  # ...by default, classes


def test_scikit_learns_bundled_tables_are_read_by_name_offline():
    diabetes = load_dataset(DatasetOptions("table", path=Path("sklearn:diabetes")))  # whole numbers, 214 distinct: a quantity
    assert diabetes.task == "regression" and diabetes.input_shape == (10,) and len(diabetes.train) + len(diabetes.val) + len(diabetes.test()) == 442
    iris = load_dataset(DatasetOptions("table", path=Path("sklearn:iris")))
    assert iris.task == "classification" and iris.num_classes == 3 and iris.feature_names[0] == "sepal length (cm)"
    with pytest.raises(DatasetError, match="dataset.path=sklearn:housing is not a table scikit-learn ships; choose one of iris, wine"):
        load_dataset(DatasetOptions("table", path=Path("sklearn:housing")))


def test_metrics_score_higher_is_better_and_show_the_users_units():
    outputs, targets = torch.tensor([[0.5], [-1.0], [2.0]]), torch.tensor([0.0, -1.0, 1.0])
    rmse = Metric("rmse", "regression", maximize=False, scale=100.0)
    squared = rmse.values(outputs, targets)
    assert squared.tolist() == [0.25, 0.0, 1.0] and task_loss(outputs, targets).item() == pytest.approx(squared.mean().item())
    score = rmse.score(squared.mean().item())
    assert score == pytest.approx(-math.sqrt(1.25 / 3)) and rmse.shown(score) == pytest.approx(100 * math.sqrt(1.25 / 3))
    assert rmse.format(score) == f"{100 * math.sqrt(1.25 / 3):.4g}" and rmse.chance(1) == -1.0 and rmse.worst == -math.inf
    assert rmse.beyond(0.002) == "RMSE lower by more than 0.2" and ACCURACY.beyond(0.002) == "> +0.002"  # a floor in the effect's words
    mae = choose_metric("mae", "auto", "regression", scale=2.0)
    assert mae.score(mae.values(outputs, targets).mean().item()) == pytest.approx(-0.5) and mae.shown(-0.5) == pytest.approx(1.0)
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    assert ACCURACY.values(logits, labels).tolist() == [True, False] and ACCURACY.format(0.5) == "0.5000" and ACCURACY.chance(4) == 0.25
    assert rmse.perfect == 0.0 and ACCURACY.perfect == 1.0  # the plateau rule's "not learned yet" spans chance..perfect
    assert unlearned(StabilityRule(), [-0.95, -0.8], rmse.chance(1), rmse.perfect)  # RMSE above 0.75 std: not learned
    assert not unlearned(StabilityRule(), [-0.95, -0.5], rmse.chance(1), rmse.perfect)
    assert not unlearned(StabilityRule(), [0.1], None, math.inf)  # a metric of your own: no chance level, no plateau rule
    assert choose_metric("auto", "auto", "regression") == Metric("rmse", "regression", False)
    assert choose_metric("auto", "auto", "classification") == ACCURACY and ACCURACY.default and not mae.default


@pytest.mark.parametrize(
    ("setting", "goal", "task", "says"),
    [
        ("accuracy", "auto", "regression", "search.metric=accuracy is a classification metric but the dataset is a regression task; use search.metric=rmse"),
        ("rmse", "auto", "classification", "search.metric=rmse is a regression metric but the dataset is a classification task"),
        ("rmse", "maximize", "regression", "search.goal=maximize contradicts search.metric=rmse"),
        ("f1", "auto", "classification", "search.metric=f1 is unknown; choose auto, accuracy, rmse, mae, or a function of yours"),
        ("no_such_module.f", "minimize", "regression", "search.metric=no_such_module.f could not be imported (ModuleNotFoundError"),
        ("math.pi", "minimize", "regression", "search.metric=math.pi is not a function"),
        ("math.fabs", "auto", "regression", "say which way is better with search.goal=maximize or search.goal=minimize"),
    ],
)
def test_a_metric_that_does_not_fit_is_one_sentence_naming_the_setting(setting, goal, task, says):
    with pytest.raises(MetricError) as raised:
        choose_metric(setting, goal, task)
    assert says in str(raised.value)


def outcome(candidate: str, repeat: int, errors: list[float]) -> TrialOutcome:
    metric = Metric("rmse", "regression", maximize=False)
    request = TrialRequest("width", candidate, arch=None, train=TrainSettings(optimizer="adamw", lr=1e-3, batch_size=64), seed=repeat,  # type: ignore[arg-type]
                           data_identity="d", repeat=repeat, metric=metric)
    values = torch.tensor(errors)
    score = metric.score(float(values.mean()))
    return TrialOutcome(request, "ok", TrainResult("stable", (), score, 1, 0.0, 0.0, score=score, val_values=pack_values(values)))


def test_a_regression_comparison_is_a_paired_t_test_on_the_per_row_errors():
    rng = np.random.default_rng(0)
    base = rng.exponential(0.3, 400)
    better = base * 0.8  # the same rows, every error a fifth smaller
    rmse = Metric("rmse", "regression", maximize=False, scale=10.0)
    gain = compare("w32", [outcome("w32", 0, better.tolist())], "w16", [outcome("w16", 0, base.tolist())], 0.005, 0.05, 1, "row", rmse)
    assert gain.verdict == "better" and (gain.wins, gain.losses) == (400, 0) and gain.p_value < 1e-6
    assert gain.effect == pytest.approx(math.sqrt(np.mean(base)) - math.sqrt(np.mean(better)), rel=1e-5)
    words = gain.describe()
    assert "w32 vs w16: better on 400 rows, worse on 0 (t-test on per-row squared errors, p = " in words and "RMSE -" in words
    noise = base + rng.normal(0, 0.05, 400)  # no real difference: a tie
    tie = compare("w32", [outcome("w32", 0, noise.tolist())], "w16", [outcome("w16", 0, base.tolist())], 0.005, 0.05, 1, "row", rmse)
    assert tie.verdict == "tie" and not tie.significant
    worse = compare("w16", [outcome("w16", 0, base.tolist())], "w32", [outcome("w32", 0, better.tolist())], 0.005, 0.05, 1, "row", rmse)
    assert worse.verdict == "worse" and (worse.wins, worse.losses) == (0, 400)


def test_a_regression_table_is_searched_from_python_and_judged_by_rmse_in_its_units(tmp_path, monkeypatch, capsys):
    path = value_table(tmp_path / "prices.csv")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    found = searcher.search(
        "+dataset=table", f"dataset.path={path}", "dataset.target=price", *TINY, "execution=serial", f"tracking.uri={uri}",
        f"data_dir={tmp_path / 'data'}", "search.warm_start=true", output_dir=tmp_path / "out",
    )  # (warm starts asked of the mlp, which cannot grow weights: said, and its comparisons stay cross-validated)
    table = load_dataset(DatasetOptions("table", path=path, target="price"))
    assert found.metric == "rmse" and 1 < found.test_metric < 100  # in the target's units (std ~100), not standardised ones
    assert found.test_acc is None  # not an accuracy (the record's test_acc holds the score, -RMSE in target stds)
    with torch.no_grad():
        predictions = found.model(table.test().images)
    assert predictions.shape == (len(table.test()),)  # one value per row, in the target's units
    assert float((predictions - table.test().labels).square().mean().sqrt()) == pytest.approx(found.test_metric, rel=1e-4)
    (search_run,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert json.loads(search_run.data.tags["searcher.metric"])["name"] == "rmse"
    assert search_run.data.metrics["test_rmse"] == pytest.approx(found.test_metric)
    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    assert trials and all("val_rmse" in run.data.metrics and run.data.metrics["best_val_rmse"] > 0 for run in trials)
    assert not any(run.data.params.get("train.label_smoothing", "0.0") != "0.0" for run in trials)  # no classes: nothing to smooth
    decided = " ".join(entry["reason"] for entry in found.decisions)
    assert "t-test on per-row squared errors" in decided and "right on" not in decided
    assert "RMSE lower by more than" in decided and "> +0.0" not in decided  # the floors in the target's units, as the effects are
    printed = capsys.readouterr().out
    assert "search.warm_start=true is ignored: mlp cannot grow a network's weights" in printed and "cross-validated" in printed
    lines = [line for line in printed.splitlines() if line.startswith("  ok ")]
    assert lines and all(" val_rmse " in line and " score " not in line for line in lines), lines  # trials: RMSE in the target's units
    assert len({line.index(" at ") for line in lines}) == 1, lines  # the columns line up whatever the RMSE's digits
    report = (tmp_path / "out" / "report.md").read_text()
    assert "test RMSE" in report and "test accuracy" not in report

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_metrics.py").write_text(USER_METRIC)
    monkeypatch.syspath_prepend(str(tmp_path / "mine"))
    own = searcher.search(
        "+dataset=table", f"dataset.path={path}", "dataset.target=price", *TINY, "execution=serial", f"tracking.uri={uri}",
        f"data_dir={tmp_path / 'data'}", "search.metric=my_metrics.absolute_error", "search.goal=minimize", output_dir=tmp_path / "own",
    )
    assert own.metric == "my_metrics.absolute_error" and own.search_name != found.search_name and own.test_metric > 0
    assert "t-test on per-row absolute_error values" in " ".join(entry["reason"] for entry in own.decisions)


def test_the_run_log_ends_with_a_regressions_test_error_in_its_units_not_its_score():
    from searcher.app import Outcome
    from searcher.model.family import LayerStack
    from searcher.search.controller import SearchResult
    from searcher.search.stages.base import StageResult
    from searcher.search.trials import Candidate

    def ended(metrics: dict[str, float]) -> str:
        settings = TrainSettings(optimizer="adamw", lr=0.003, batch_size=64)
        final = StageResult("final", Candidate("w16 d1", LayerStack((16,)), settings), 0.0, (), {}, metrics=metrics)
        return Outcome(0, "s", "run", metrics["test_acc"], SearchResult((final,), (), 1.0)).story()

    assert ended({"test_acc": -0.72, "test_acc_std": 0.01, "test_rmse": 55.88, "test_rmse_std": 0.5}) == "search s done (exit 0): test_rmse 55.88"
    assert ended({"test_acc": 0.9861, "test_acc_std": 0.001}) == "search s done (exit 0): test_acc 0.9861"


def test_a_regressions_legend_says_what_its_trial_lines_show():
    from searcher.report.terminal import legend

    words = legend(choose_metric("rmse", "auto", "regression", 2.0))
    assert "score = best 3-epoch mean of validation -RMSE in standard deviations of the target (higher is better)" in words
    assert "val_rmse = the score as the validation RMSE itself, in the target's units" in words
