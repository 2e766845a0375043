"""Parallel trials decide exactly as serial ones: eager stages, fixed regularization batches, request-ordered outcomes."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FakeRunner, fake_result, make_plan, memory_studies, run_cli, search_runs
from mlflow.tracking import MlflowClient

from searcher.execution import InProcessBackend, Runner
from searcher.search import run_search
from searcher.search.trials import TrialOutcome

WIDTH_SCORES = {16: 0.90, 32: 0.95, 64: 0.94, 128: 0.99}  # patience 1 stops after 64: 128 is never compared


def score(request) -> float:
    arch = request.arch
    if arch.depth == 2:
        return WIDTH_SCORES[arch.widths[0]]
    return 0.9 + 0.01 * arch.depth - 0.05 * request.train.weight_decay + 0.0001 * arch.widths[-1]


class ReverseBackend:
    """A real Backend that trains instantly but finishes the trials in flight newest first."""

    def __init__(self, capacity: int, score_of=score):
        self.capacity = capacity
        self.score_of = score_of
        self.in_flight: list[dict] = []
        self.submit_order: list[str] = []
        self.finish_order: list[str] = []

    def submit(self, task, on_epoch=None, show=None):
        self.submit_order.append(task.request.label)
        handle = {"task": task, "done": False}
        self.in_flight.append(handle)
        return handle

    def wait(self, handles):
        newest = [h for h in self.in_flight if not h["done"]][-1]
        newest["done"] = True
        self.finish_order.append(newest["task"].request.label)

    def done(self, handle):
        return handle["done"]

    def result(self, handle):
        self.in_flight.remove(handle)
        request = handle["task"].request
        s = self.score_of(request)
        return TrialOutcome(request, "ok", fake_result(s, s - 0.01 if request.evaluate_test else None)), None

    def close(self, cancel=False):
        pass


def test_width_stage_asks_ahead_but_decides_as_in_grid_order():
    plans = {c: make_plan(width_patience=1, depth_cap=3, concurrency=c) for c in (1, 3)}
    runners = {c: FakeRunner(score) for c in plans}
    results = {c: run_search(plans[c], memory_studies(plans[c]), runners[c]) for c in plans}
    widths = {c: [r.arch.widths[0] for r in runners[c].requests if r.stage == "width"] for c in plans}
    assert widths == {1: [32, 64], 3: [32, 64, 128]}  # eager: the whole grid at once, 128 beyond patience
    assert [e.to_dict() for e in results[1].decisions] == [e.to_dict() for e in results[3].decisions]
    width = results[3].stages[1]
    (beyond,) = [r.key for r in runners[3].requests if r.stage == "width" and r.arch.widths[0] == 128]
    assert width.trial_decisions[beyond] == "rejected" and "beyond patience" in width.trial_notes[beyond]
    assert not results[1].stages[1].trial_notes


def test_regularization_trials_are_asked_in_fixed_batches_by_any_runner():
    plan = make_plan(width_cap=16, depth_cap=2, regularization_trials=5, regularization_in_flight=2)
    runner = FakeRunner(score)
    calls = []
    original = runner.run_trials
    runner.run_trials = lambda stage, requests: calls.append((stage.name, len(requests))) or original(stage, requests)
    result = run_search(plan, memory_studies(plan), runner)
    assert [n for stage, n in calls if stage == "regularization"] == [2, 2, 1]
    assert len(result.stages[3].decisions) == 6  # five trials and the selection


def fake_work(data, request, on_epoch, checkpoint=None, initial_state=None, stop=None):
    """A Work that trains instantly (InProcessBackend's `work`), calling the stage's per-epoch callback like training does."""
    s = score(request)
    result = fake_result(s, s - 0.01 if request.evaluate_test else None)
    for record in result.history:
        if on_epoch(record):
            return replace(result, stopped_early=True)
    return result


@pytest.mark.parametrize("kind", ["in_process", "reverse"])
def test_runner_on_any_backend_decides_and_records_as_serial(tmp_path, kind):
    """One recording path for every backend: trials trained here one by one, or finished out of order elsewhere."""
    from searcher.tracking import open_recorder

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    recorder = open_recorder(uri, "searcher")
    recorder.start_search("parallel", params={}, tags={})
    backend = ReverseBackend(capacity=3) if kind == "reverse" else InProcessBackend(None, fake_work)
    pool_plan = make_plan(width_patience=1, depth_cap=4, regularization_trials=4, regularization_in_flight=2, concurrency=backend.capacity)
    parallel = run_search(pool_plan, memory_studies(pool_plan), Runner(backend, recorder))
    serial_plan = make_plan(width_patience=1, depth_cap=4, regularization_trials=4, regularization_in_flight=2)
    serial = run_search(serial_plan, memory_studies(serial_plan), FakeRunner(score))

    assert [e.to_dict() for e in parallel.decisions] == [e.to_dict() for e in serial.decisions]
    assert [o.request.key for o in parallel.outcomes if o.request.stage != "width"] == [
        o.request.key for o in serial.outcomes if o.request.stage != "width"
    ]
    if kind == "reverse":
        assert backend.finish_order != backend.submit_order  # trials really finished out of order
    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    keys = [t.data.tags["searcher.trial_key"] for t in trials]
    assert len(keys) == len(set(keys)) == len(parallel.outcomes)
    assert all(t.info.status == "FINISHED" for t in trials)
    notes = [t for t in trials if "searcher.note" in t.data.tags]
    assert [t.data.params["arch.widths"] for t in notes] == (["128,128"] if kind == "reverse" else [])  # asked ahead: 3 at once


def decisions_of(uri: str) -> list:
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    client = MlflowClient(tracking_uri=uri)
    return json.loads(Path(client.download_artifacts(search.info.run_id, "decisions.json")).read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "execution, said",
    [
        # (CI: test_postgres.py runs a search in worker processes; the flake hunt compares them with serial here)
        pytest.param("processes", "execution: 2 worker processes (cpu, 1 thread each)", marks=pytest.mark.hunt),
        ("threads", "execution: 2 trial threads in this process (cpu, 1 torch thread each)"),  # (threads of the search's process)
    ],
)
def test_parallel_trials_make_the_same_decisions_as_serial(quick_search, tmp_path, execution, said):
    _, serial_uri, _ = quick_search
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    # Both with the settings' defaults: a CPU trial trains with one thread wherever it runs, so the sums are the same.
    args = ("search=quick", f"tracking.uri={uri}", "search.name=check", f"execution={execution}", "execution.workers=2")
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert said in result.stdout
    assert decisions_of(uri) == decisions_of(serial_uri)
    runs = search_runs(uri, "tags.`searcher.role` = 'trial'")
    asked = {r.data.tags["searcher.trial_key"] for r in runs if r.data.tags.get("searcher.decision") != "discarded"}
    assert asked == {r.data.tags["searcher.trial_key"] for r in search_runs(serial_uri, "tags.`searcher.role` = 'trial'")}
    guesses = [r for r in runs if "searcher.speculative" in r.data.tags]  # idle slots trained guesses (execution.speculate)
    assert any(r.data.tags["searcher.speculative"] == "used" for r in guesses), "no guess was ever used"
    assert all(r.data.tags["searcher.speculative"] == "used" or r.data.tags["searcher.decision"] == "discarded" for r in guesses)
    (parallel,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    (serial,) = search_runs(serial_uri, "tags.`searcher.role` = 'search'")
    assert parallel.data.metrics["test_acc"] == serial.data.metrics["test_acc"]


@pytest.mark.slow
def test_submitit_execution_runs_each_trial_as_a_local_job(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tiny = ("search=quick", "search.width.cap=16", "search.depth.cap=2", "search.regularization.trials=0", "search.final.seeds=2", "train.stability.max_epochs=8")
    result = run_cli(*tiny, f"tracking.uri={uri}", "search.name=jobs", "execution=submitit", "execution.cluster=local", "execution.workers=2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "up to 2 submitit jobs (local)" in result.stdout
    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    assert len(trials) == 3 and all(t.info.status == "FINISHED" for t in trials)  # baseline and two final seeds
    job_results = list((tmp_path / "submitit" / "jobs").glob("*/*_result.pkl"))
    assert len(job_results) == 3, "each trial ran as its own submitit job"


def noisy_score(request) -> float:
    """Seed-dependent scores with ties and real gains, so contests ask for extra seeds and depth grows for a while."""
    arch = request.arch
    base = {16: 0.90, 32: 0.905, 64: 0.95, 128: 0.951}[arch.widths[0]] if arch.depth == 2 else 0.95 + 0.02 * min(arch.depth, 4) - 0.001 * arch.depth
    return base + 0.002 * (request.seed % 3) - 0.05 * request.train.weight_decay


def test_speculative_trials_decide_nothing_and_are_recorded_as_used_or_discarded(tmp_path):
    """Idle slots train the stages' guesses: the decisions are a serial run's, every guess is recorded once, as used
    (re-parented under the stage that asked) or discarded."""
    from searcher.tracking import open_recorder

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    recorder = open_recorder(uri, "searcher")
    recorder.start_search("speculative", params={}, tags={})
    settings = dict(width_patience=2, depth_cap=5, max_repeats=3, width_ties="grow", depth_ties="grow", regularization_trials=2)
    backend = ReverseBackend(capacity=4, score_of=noisy_score)
    plan = make_plan(concurrency=4, **settings)
    runner = Runner(backend, recorder, speculate=True)
    parallel = run_search(plan, memory_studies(plan), runner)
    runner.end_search()
    serial = run_search(make_plan(**settings), memory_studies(make_plan(**settings)), FakeRunner(noisy_score))
    assert [e.to_dict() for e in parallel.decisions] == [e.to_dict() for e in serial.decisions]

    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    keys = [t.data.tags["searcher.trial_key"] for t in trials]
    assert len(keys) == len(set(keys))  # nothing trained twice
    guesses = {t.data.tags["searcher.trial_key"]: t for t in trials if "searcher.speculative" in t.data.tags}
    used = {key for key, t in guesses.items() if t.data.tags["searcher.speculative"] == "used"}
    discarded = {key for key, t in guesses.items() if t.data.tags.get("searcher.decision") == "discarded"}
    assert used and used | discarded == set(guesses) and not used & discarded
    assert {t.data.tags["searcher.trial_key"] for t in trials} - discarded == {o.request.key for o in parallel.outcomes}
    stage_runs = {r.info.run_id: r.data.tags["searcher.stage"] for r in search_runs(uri, "tags.`searcher.role` = 'stage'")}
    for key in used:  # under the stage that asked for it
        assert stage_runs[guesses[key].data.tags["mlflow.parentRunId"]] == guesses[key].data.tags["searcher.stage"]


def test_a_trial_out_of_memory_beside_others_is_retried_alone(tmp_path):
    """execution.trials_per_gpu larger than fits: the trial that ran out of memory is trained again with no neighbours."""
    from searcher.tracking import open_recorder

    class CrowdedBackend(ReverseBackend):
        """The widest network runs out of memory when it starts beside another trial."""

        def submit(self, task, on_epoch=None, show=None):
            handle = super().submit(task, on_epoch)
            handle["crowded"] = len(self.in_flight) > 1
            return handle

        def result(self, handle):
            request = handle["task"].request
            if request.arch.widths[0] == 128 and handle["crowded"]:
                self.in_flight.remove(handle)
                return TrialOutcome(request, "failed", None, error="out_of_memory: CUDA out of memory. Tried to allocate 2.00 GiB"), "Traceback"
            return super().result(handle)

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    recorder = open_recorder(uri, "searcher")
    recorder.start_search("crowded", params={}, tags={})
    backend = CrowdedBackend(capacity=4)
    plan = make_plan(concurrency=4, width_patience=3, depth_cap=2)
    result = run_search(plan, memory_studies(plan), Runner(backend, recorder))
    (wide,) = [o for o in result.outcomes if o.request.arch.widths[0] == 128 and o.request.stage == "width"]
    assert wide.status == "ok"
    assert backend.submit_order.count(wide.request.label) == 2  # crowded out once, then alone
    (run,) = [t for t in search_runs(uri, "tags.`searcher.role` = 'trial'") if t.data.tags["searcher.trial_key"] == wide.request.key]
    assert run.info.status == "FINISHED" and run.data.tags["searcher.status"] == "ok"


@pytest.mark.parametrize("asked_later", [True, False], ids=["asked-for-later", "never-asked-for"])
def test_a_guess_an_interrupted_attempt_finished_is_used_if_the_resumed_search_asks_for_it_else_discarded(tmp_path, asked_later):
    """A stop while a finished guess waits to be asked for: the re-run replays it when its stage asks, recorded as a
    guess of that attempt would have been (`used`, under the asking stage), or records it `discarded` at the end
    if it never asks; and it decides as a serial run."""
    from searcher.tracking import open_recorder
    from searcher.tracking.history import load_prior
    from searcher.tracking.lease import acquire

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    settings = dict(width_patience=2, depth_cap=5, max_repeats=3, width_ties="grow", depth_ties="grow", regularization_trials=2)
    plan = make_plan(concurrency=4, **settings)
    serial = run_search(make_plan(**settings), memory_studies(make_plan(**settings)), FakeRunner(noisy_score))
    serial_keys = {o.request.key for o in serial.outcomes}

    class StopWithAGuessWaiting(ReverseBackend):
        def wait(self, handles):
            if any((key in serial_keys) == asked_later for key in first.guessed):  # a finished guess waits: stopped here
                raise KeyboardInterrupt
            super().wait(handles)

    recorder = open_recorder(uri, "searcher")
    recorder.start_search("resumed", params={}, tags={})
    first = Runner(StopWithAGuessWaiting(capacity=4, score_of=noisy_score), recorder, speculate=True)
    with pytest.raises(KeyboardInterrupt):
        run_search(plan, memory_studies(plan), first)
    waiting = {key for key in first.guessed if (key in serial_keys) == asked_later}
    assert waiting

    lease = acquire(f"sqlite:///{tmp_path / 'optuna.db'}", "resumed", 60, on_lost=lambda: None)
    try:
        again = open_recorder(uri, "searcher")
        (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
        again.attach_search(load_prior(again.client, again.experiment_id, search, lease))
        runner = Runner(ReverseBackend(capacity=4, score_of=noisy_score), again, speculate=True)
        resumed = run_search(plan, memory_studies(plan), runner)
        runner.end_search()
    finally:
        lease.release()
    assert [e.to_dict() for e in resumed.decisions] == [e.to_dict() for e in serial.decisions]

    asked = {o.request.key: o.request.stage for o in resumed.outcomes}
    assert set(asked) == serial_keys
    stage_runs = {r.info.run_id: r.data.tags["searcher.stage"] for r in search_runs(uri, "tags.`searcher.role` = 'stage'")}
    trials = {t.data.tags["searcher.trial_key"]: t for t in search_runs(uri, "tags.`searcher.role` = 'trial'") if t.info.status == "FINISHED"}
    for key in waiting:
        tags = trials[key].data.tags
        if asked_later:
            assert (tags["searcher.speculative"], tags["searcher.stage"], stage_runs[tags["mlflow.parentRunId"]]) == ("used", asked[key], asked[key])
        else:
            assert tags["searcher.decision"] == "discarded" and tags["searcher.speculative"] == "true"
    for key, run in trials.items():  # every guess of either attempt ends used or discarded, never left undecided
        assert (key in asked) != (run.data.tags.get("searcher.decision") == "discarded"), key
