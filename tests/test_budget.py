"""search.budget: growth stops where the next trials and the final retraining would not fit; the final stage always runs;
a resumed search stops where the first attempt stopped (searcher/search/budget.py)."""

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from conftest import FakeRunner, ReplayRunner, make_plan, memory_studies, run_cli, search_runs
from mlflow.tracking import MlflowClient

from searcher.config import Budget, ConfigError
from searcher.search import run_search
from searcher.search.budget import Spending


def growing(request) -> float:
    """Every width and every layer helps beyond noise: unbudgeted, the search grows to its caps."""
    return 0.5 + 0.05 * request.arch.depth + 0.0005 * request.arch.widths[-1]


class ClockedRunner(ReplayRunner):
    """Trials of 5 s each, on a search clock that starts at `start`; outcomes in `recorded` are replayed with the
    clock they were recorded at (what a resumed search reads back from MLflow), not trained again."""

    def __init__(self, start: float = 0.0, recorded: dict | None = None):
        super().__init__(growing, dict(recorded or {}), images=1000)
        self.clock = start

    def train(self, stage, request):
        outcome = super().train(stage, request)
        self.clock += 5.0
        return replace(outcome, result=replace(outcome.result, train_seconds=5.0), elapsed=self.clock)


def entries(result, decision="budget"):
    return [(entry.stage, entry.reason) for entry in result.decisions if entry.decision == decision]


@pytest.mark.parametrize(
    "text,budget",
    [("45m", Budget(2700, "seconds")), ("2h", Budget(7200, "seconds")), ("1h30m", Budget(5400, "seconds")), ("90s", Budget(90, "seconds")),
     ("300 epochs", Budget(300, "epochs")), ("300epochs", Budget(300, "epochs")), (None, None)],
)
def test_a_budget_is_a_wall_time_or_a_number_of_epochs(text, budget):
    assert Budget.parse(text) == budget


@pytest.mark.parametrize("text", ["90", "fast", "0s", "-5m", "3 weeks", "10 epoch s"])
def test_anything_else_is_refused_naming_the_forms(text):
    with pytest.raises(ConfigError, match=r"search.budget=.* is not a budget: give a wall time \(45m, 2h, 1h30m, 90s\) or a compute budget \(300 epochs\)\."):
        Budget.parse(text)


def test_an_epoch_budget_cuts_growth_short_skips_what_does_not_fit_and_still_retrains_the_best_found():
    unbudgeted = FakeRunner(growing)
    plan = make_plan(width_cap=64, depth_cap=4, regularization_trials=2)
    run_search(plan, memory_studies(plan), unbudgeted)
    assert [r.label for r in unbudgeted.requests if r.stage == "depth"] == ["d3 +w32", "d3 +w64", "d4 +w32", "d4 +w64"]

    runner = FakeRunner(growing)  # every fake trial trains 10 epochs
    budgeted = replace(plan, budget=Budget(70, "epochs"))
    result = run_search(budgeted, memory_studies(budgeted), runner)

    assert [r.label for r in runner.requests] == ["w16 d2", "w32 d2", "w64 d2", "d3 +w32", "d3 +w64", "final seed 0", "final seed 1"]
    assert entries(result) == [
        ("depth", "stopped by search.budget: 50 epochs of 70 epochs spent, 20 epochs kept for the final stage: no room for 2 more trials (d4 +w32, d4 +w64)"),
        ("regularization", "skipped by search.budget: 50 epochs of 70 epochs spent, 20 epochs kept for the final stage: no room for 1 more trial (reg do=0.032 wd=0.01)"),
        ("final", "budget 70 epochs: 70 epochs spent by the trials; baseline 10 epochs, width 20 epochs, depth 20 epochs (cut short), regularization 0 epochs (skipped), final 20 epochs"),
    ]
    assert result.final.winner.name == "d3 +w64"  # the deepest network the budget let it prove better, retrained
    assert result.final.decisions[-1].decision == "final"  # (the budget's account comes before the final result)


def test_a_wall_budget_spends_by_the_clock_on_the_outcomes_so_a_resume_stops_where_the_first_attempt_did():
    plan = make_plan(width_cap=64, depth_cap=4, regularization_trials=2, budget=Budget(60, "seconds"))
    first = ClockedRunner(start=3.0)  # (3 s of start-up: the ending is costed as long)
    result = run_search(plan, memory_studies(plan), first)
    assert [stage for stage, _ in entries(result)] == ["regularization", "final"]

    # Killed before its final stage, resumed a minute later: the growth stages replay from the record, stamps included.
    recorded = {o.request.key: o for o in result.outcomes if o.request.stage != "final"}
    resumed = ClockedRunner(start=first.clock + 60.0, recorded=recorded)
    again = run_search(plan, memory_studies(plan), resumed)
    assert [r.stage for r in resumed.trained] == ["final", "final"]  # no growth trial trained again, none added
    assert [(e.stage, e.reason) for e in again.decisions if e.stage != "final"] == [(e.stage, e.reason) for e in result.decisions if e.stage != "final"]


def test_a_budget_that_stops_the_regularization_stage_leaves_no_optuna_trial_running():
    plan = make_plan(width_cap=32, depth_cap=3, regularization_trials=4, regularization_in_flight=2)
    unbudgeted = FakeRunner(growing)
    run_search(plan, memory_studies(plan), unbudgeted)
    counts = Counter(r.stage for r in unbudgeted.requests)
    before_regularization = 10 * (counts["baseline"] + counts["width"] + counts["depth"])
    # room for the first round of two regularization trials and the final seeds, not for the second round
    budgeted = replace(plan, budget=Budget(before_regularization + 20 + 20 + 5, "epochs"))
    studies = memory_studies(budgeted)
    result = run_search(budgeted, studies, FakeRunner(growing))
    assert [stage for stage, _ in entries(result)] == ["regularization", "final"]
    trials = studies.open("regularization").get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    withdrawn = [t for t in trials if "withdrawn" in t.user_attrs]
    assert len(withdrawn) == 2 and all(t.state == optuna.trial.TrialState.FAIL for t in withdrawn)
    assert all(f"#{t.number}" not in reason and "withdrawn" not in reason for _, reason in entries(result, "tried") for t in withdrawn)


def test_the_reserve_costs_the_ending_as_the_start_up_and_counts_rounds_of_concurrent_trials_for_wall_time():
    plan = make_plan(width_cap=32, depth_cap=3)
    result = run_search(plan, memory_studies(plan), ClockedRunner(start=3.0))  # 3 s of start-up, then trials of 5 s
    wall = Spending(Budget(100, "seconds"), final_seeds=3, concurrency=2)
    wall.observe("baseline", result.outcomes[:1])  # recorded at 8 s, after 5 s of training: it started at 3 s
    assert wall.ending() == 3.0 and wall.reserve(10.0) == 2 * 10.0 + 3.0  # 3 seeds, 2 at a time: 2 rounds
    wall.observe("width", result.outcomes[1:])
    assert wall.ending() == 3.0  # (the first trial's start, however many follow)
    epochs = Spending(Budget(100, "epochs"), final_seeds=3, concurrency=2)
    epochs.observe("baseline", result.outcomes[:1])
    assert epochs.ending() == 0.0 and epochs.reserve(10.0) == 3 * 10.0  # epochs add up trial by trial


@pytest.mark.slow
def test_a_wall_budget_search_killed_before_its_final_stage_resumes_to_the_same_cut_and_ends_with_a_model(tmp_path):
    """The real thing: MLflow records each trial's search clock, and the re-run reads it back (tracking/history.py)."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ("search=quick", "execution=serial", f"tracking.uri={uri}", "search.name=budgeted", "search.budget=25s")
    killed = run_cli(*args, cwd=tmp_path, env={"SEARCHER_CRASH_AT": "stage.ended:4"})  # regularization decided, final not begun
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    first_attempt = search_runs(uri, "tags.`searcher.role` = 'trial'")
    before = {r.info.run_id for r in first_attempt}
    first_clock = max(r.data.metrics["search_clock"] for r in first_attempt)
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming search budgeted" in resumed.stdout
    assert "budget: 25s (wall time, the whole command): a stage stops where its next trials and the final retraining would not fit" in resumed.stdout
    new = [r for r in search_runs(uri, "tags.`searcher.role` = 'trial'") if r.info.run_id not in before]
    assert new and {r.data.tags["searcher.stage"] for r in new} == {"final"}  # the cut replayed: no growth trial trained again
    assert min(r.data.metrics["search_clock"] for r in new) > first_clock  # the clock goes on from the first attempt's
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert "test_acc" in search.data.metrics
    log = json.loads(Path(MlflowClient(tracking_uri=uri).download_artifacts(search.info.run_id, "decisions.json")).read_text())
    summary = [d for d in log if d["decision"] == "budget" and d["stage"] == "final"]
    assert len(summary) == 1 and summary[0]["reason"].startswith("budget 25s: ")


@pytest.mark.parametrize("epochs,seeds", [(30, 2), (15, 1)])
def test_the_final_stage_retrains_as_many_seeds_as_the_budget_still_pays_for_and_never_none(epochs, seeds):
    plan = make_plan(final_seeds=3, budget=Budget(epochs, "epochs"))
    runner = FakeRunner(growing)  # 10 epochs a trial: the baseline spends 10
    result = run_search(plan, memory_studies(plan), runner)
    assert [r.label for r in runner.requests] == ["w16 d2", *[f"final seed {i}" for i in range(seeds)]]
    (summary,) = [reason for stage, reason in entries(result) if stage == "final"]
    assert f"final {10 * seeds} epochs ({seeds} of 3 seeds: the rest did not fit)" in summary
    assert summary.endswith("over the budget: the baseline and the final stage always run") == (10 + 10 * seeds > epochs)
