"""search.rungs: a cold width or depth candidate behind the network it grows from at a rung epoch stops there
(searcher/train/rungs.py). Real training where the trainer decides; a fake runner where the stages do."""

import dataclasses
import json
import math

import pytest
import torch
from conftest import FakeRunner, fake_result, make_plan, memory_studies, run_cli

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.model import LayoutPolicy
from searcher.search import run_search
from searcher.search.controller import run_stage
from searcher.search.stages import BaselineStage, DepthStage, WidthStage
from searcher.train import StabilityRule, TrainSettings, train_trial
from searcher.train.metrics import ACCURACY
from searcher.train.rungs import Rungs
from searcher.train.trainer import pack_bits, pack_values

SHORT = StabilityRule(window=2, min_epochs=4, max_epochs=4)


@pytest.fixture(scope="module")
def digits():
    return DeviceData(load_dataset(DatasetOptions("digits")), torch.device("cpu"))


def rungs_against(reference, epochs=(2,), alpha=0.05, floor=0.005):
    return Rungs(epochs, "reference-key", "w16 d2", tuple(reference.rung_values.get(e) for e in epochs), alpha, floor)


def test_a_trial_behind_its_reference_beyond_noise_stops_at_the_rung_and_its_twin_does_not(digits):
    spec = LayoutPolicy(input_size=8).baseline(2, 16)
    settings = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=SHORT)
    reference = train_trial(spec, digits, settings, seed=0, rung_epochs=(2, 3))
    assert sorted(reference.rung_values) == [2, 3] and reference.rung_stop is None and len(reference.history) == 4

    crippled = dataclasses.replace(settings, lr=1e-6)  # the same network, barely learning: plainly behind at epoch 2
    behind = train_trial(spec, digits, crippled, seed=0, rungs=rungs_against(reference))
    assert behind.behavior == "pruned" and behind.stopped_early and len(behind.history) == 2
    stop = behind.rung_stop
    assert stop is not None and stop.epoch == 2 and stop.losses > stop.wins and stop.p_value < 0.05 and stop.effect < -0.005
    assert "stopped at rung epoch 2: behind w16 d2 at the same epoch beyond noise" in stop.describe()
    assert 2 in behind.rung_values  # a trial with rungs keeps its own values there (a later trial's reference)

    twin = train_trial(spec, digits, settings, seed=0, rungs=rungs_against(reference))  # the reference itself, trained again
    assert twin.rung_stop is None and not twin.stopped_early and len(twin.history) == 4


def test_a_close_race_is_not_stopped_and_a_rung_the_reference_never_reached_is_no_look(digits):
    spec = LayoutPolicy(input_size=8).baseline(2, 16)
    settings = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=SHORT)
    reference = train_trial(spec, digits, settings, seed=0, rung_epochs=(2,))
    another_seed = train_trial(spec, digits, settings, seed=1, rungs=rungs_against(reference))  # within noise of it
    assert another_seed.rung_stop is None and len(another_seed.history) == 4
    unreached = Rungs((2,), "reference-key", "w16 d2", (None,), 0.05, 0.0)
    crippled = dataclasses.replace(settings, lr=1e-6)
    assert train_trial(spec, digits, crippled, seed=0, rungs=unreached).rung_stop is None


def test_a_regression_trial_is_judged_on_its_per_example_errors():
    worse, better = torch.full((400,), 4.0), torch.ones(400)
    rmse = dataclasses.replace(ACCURACY, name="rmse", task="regression", maximize=False)
    rungs = Rungs((3,), "k", "ref", (pack_values(better),), 0.05, 0.0)
    stop = rungs.judge(3, worse + torch.rand(400, generator=torch.Generator().manual_seed(0)), rmse)
    assert stop is not None and stop.losses == 400 and stop.effect < 0
    assert rungs.judge(3, better, rmse) is None and rungs.judge(2, worse, rmse) is None  # the same values; not a rung epoch


class RungRunner(FakeRunner):
    """The fake runner, with the trainer's rung rule: a fake trial's correctness at epoch e is its score x min(1, e/5)
    of the easiest images (fake_result's curve), and a trial with rungs stops where the rule says."""

    def run_trials(self, stage, requests):
        outcomes = []
        for outcome in super().run_trials(stage, requests):
            request, score = outcome.request, self.score_of(outcome.request)
            at = {e: torch.arange(self.images) < round(score * min(1.0, e / 5) * self.images) for e in range(1, 11)}
            result = dataclasses.replace(outcome.result, rung_values={e: pack_bits(at[e]) for e in request.rung_epochs})
            for epoch in request.rungs.epochs if request.rungs else ():
                if stop := request.rungs.judge(epoch, at[epoch], ACCURACY):
                    short = fake_result(score, epochs=epoch, images=self.images)
                    result = dataclasses.replace(short, behavior="pruned", stopped_early=True, rung_stop=stop, rung_values=result.rung_values)
                    break
            outcomes.append(dataclasses.replace(outcome, status="pruned" if result.rung_stop else "ok", result=result))
        return outcomes


def test_the_width_stage_stops_a_plainly_worse_candidate_at_its_rung_and_says_so():
    scores = {16: 0.90, 32: 0.60, 64: 0.95}  # w32 is far behind w16 from the first epochs on
    plan = make_plan(rungs=(2, 4), width_cap=64, width_patience=2)
    runner = RungRunner(lambda r: scores[r.arch.widths[0]] if r.arch.depth == 2 else 0.0)
    studies = memory_studies(plan)
    baseline, _ = run_stage(BaselineStage(plan, studies.open("baseline")), runner)
    result, outcomes = run_stage(WidthStage(plan, studies.open("width"), baseline), runner)
    stopped = [o for o in outcomes if o.result.rung_stop]
    assert [o.request.candidate for o in stopped] == ["w32 d2"] and len(stopped[0].result.history) == 2
    assert result.winner.name == "w64 d2"  # the stopped candidate counted towards patience and lost; w64 went on
    reasons = " | ".join(e.reason for e in result.decisions)
    assert "w32 d2 vs w16 d2: the challenger stopped at rung epoch 2: behind w16 d2" in reasons
    assert result.trial_decisions[stopped[0].request.key] == "pruned"
    checked = [o.request for o in outcomes if o.request.rungs]
    assert checked and all(r.rungs.reference_name == "w16 d2" and r.rungs.alpha == pytest.approx(0.05 / 2) for r in checked)
    assert all(r.rung_epochs == (2, 4) for r in runner.requests)


def test_a_depth_child_stopped_at_its_rung_is_never_the_rounds_best_while_a_sibling_is_not():
    def score(arch):
        if arch.depth == 2:
            return 0.90
        if arch.depth == 3:  # the narrowest new layer is plainly worse; the widest would win the round if it were not
            return {8: 0.50, 16: 0.93, 32: 0.91}[arch.widths[-1]]
        return 0.90

    plan = make_plan(rungs=(3,), width_cap=16, depth_cap=4, new_layer_factors=(0.5, 1.0, 2.0))
    runner = RungRunner(lambda r: score(r.arch))
    studies = memory_studies(plan)
    previous = None
    for stage_type in (BaselineStage, WidthStage, DepthStage):
        stage = stage_type(plan, studies.open(stage_type.name)) if previous is None else stage_type(plan, studies.open(stage_type.name), previous)
        previous, outcomes = run_stage(stage, runner)
    stopped = {o.request.candidate for o in outcomes if o.result.rung_stop}
    assert "d3 +w8" in stopped and previous.winner.name == "d3 +w16"
    first_round = previous.decisions[0]
    assert first_round.decision == "accepted" and "d3 +w16 vs w16 d2" in first_round.reason and "d3 +w8 stopped at rung epoch 3" in first_round.reason
    deeper = [o.request for o in outcomes if o.request.arch.depth == 4]
    assert deeper and all(r.rungs.reference_name == "d3 +w16" for r in deeper)  # the next round is checked against its own parent


def test_rungs_change_keys_and_nothing_else_where_no_candidate_is_behind():
    def score(request):
        return 0.8 + 0.02 * request.arch.depth + 0.0001 * request.arch.widths[-1] + 0.01 * request.train.augment

    plain, ruled = make_plan(seed=3), make_plan(seed=3, rungs=(3,))
    runs = [run_search(plan, memory_studies(plan), RungRunner(score)) for plan in (plain, ruled)]
    assert [e.to_dict() for e in runs[0].decisions] == [e.to_dict() for e in runs[1].decisions]
    assert not any(o.result and o.result.rung_stop for o in runs[1].outcomes)
    keys = [{o.request.key for o in run.outcomes if o.request.stage in ("width", "depth")} for run in runs]
    assert keys[0] and not keys[0] & keys[1]  # a trial that may stop at a rung is another trial
    final = [{o.request.key for o in run.outcomes if o.request.stage in ("baseline", "final")} for run in runs]
    assert final[0] == final[1]  # the baseline and the final retraining never have rungs
    regularization = [o for o in runs[1].outcomes if o.request.stage == "regularization"]
    assert regularization and all(o.request.rungs is None for o in regularization if o.request.params != ())


def test_warm_started_candidates_have_no_rungs():
    plan = make_plan(rungs=(2,), warm_start=True, width_cap=32, depth_cap=3)
    runner = RungRunner(lambda r: 0.9)
    run_search(plan, memory_studies(plan), runner)
    assert not any(r.rungs for r in runner.requests)


def test_rungs_must_be_increasing_epochs(tmp_path):
    result = run_cli("search.rungs=[4,2]", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert result.returncode != 0 and "search.rungs" in result.stdout + result.stderr and "increasing epochs" in result.stdout + result.stderr


def test_a_resumed_search_checks_new_candidates_against_references_read_back_from_mlflow(tmp_path):
    """Killed once the width stage has ended, re-run: the depth stage's references (the width winner's seeds) are read
    back from the store, and a new layer of width 1, a bottleneck, is stopped at its rung against them."""
    from mlflow import MlflowClient

    from searcher.search.trials import TrialRequest
    from searcher.tracking.history import load_outcome

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    command = (
        "search=quick", "execution=serial", f"tracking.uri={uri}", "search.rungs=[2]", "search.depth.new_layer_factors=[0.03,1.0]",
        "search.depth.cap=3", "search.regularization.trials=0", "search.final.seeds=1", "report.enabled=false",  # (one depth round is the test)
        "train.stability.max_epochs=8",  # (a curve up to the rung epoch does not depend on where the trial will stop)
    )
    killed = run_cli(*command, cwd=tmp_path, env={"SEARCHER_CRASH_AT": "stage.ended:2"})
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    resumed = run_cli(*command, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    client = MlflowClient(tracking_uri=uri)
    trials = client.search_runs([client.get_experiment_by_name("searcher").experiment_id], "tags.`searcher.role` = 'trial'", max_results=1000)
    stopped = [t for t in trials if "searcher.rung_stop" in t.data.tags]
    assert stopped and all(t.data.tags["searcher.stage"] == "depth" and t.data.tags["searcher.status"] == "pruned" for t in stopped)
    assert any("+w1" in t.info.run_name for t in stopped) and all(t.data.metrics["epochs"] == 2 for t in stopped)
    assert json.loads(stopped[0].data.tags["searcher.rung_stop"])["epoch"] == 2
    request = TrialRequest("x", "x", None, None, 0, "digits")  # type: ignore[arg-type]
    reloaded = load_outcome(client, request, stopped[0]).result
    assert reloaded.rung_stop is not None and reloaded.rung_stop.epoch == 2 and 2 in reloaded.rung_values
    width = [t for t in trials if t.data.tags["searcher.stage"] == "width" and t.info.status == "FINISHED"]
    assert width and all(2 in load_outcome(client, request, t).result.rung_values for t in width)
    log = max(tmp_path.glob("outputs/*/*/decisions.md")).read_text()  # the resumed command's decision log
    assert "d3 +w1 stopped at rung epoch 2" in log or "the challenger stopped at rung epoch 2: behind" in log
    assert not math.isnan(reloaded.rung_stop.p_value)
