"""Nothing lost: resume after kill -9, SIGTERM, failing trials, changed settings, safe loading (real processes)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli, search_runs, wait_for
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
    return subprocess.Popen([sys.executable, "-m", "searcher", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def completed_trials(uri: str) -> list:
    """The trials the search asked for and recorded (not the guesses it discarded: which trials a run guesses
    depends on which finished first)."""
    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    return [
        r
        for r in trials
        if "searcher.status" in r.data.tags
        and "searcher.orphaned" not in r.data.tags
        and r.info.status in ("FINISHED", "FAILED")
        and r.data.tags.get("searcher.decision") != "discarded"
    ]


def decisions(uri: str) -> list:
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    client = MlflowClient(tracking_uri=uri)
    return json.loads(Path(client.download_artifacts(search.info.run_id, "decisions.json")).read_text())


@pytest.mark.hunt  # (CI: test_crash_points.py kills -9 at every point of a trial's life and re-runs)
def test_kill_9_then_rerun_reuses_finished_trials_and_matches_an_uninterrupted_run(quick_search, tmp_path):
    """Ctrl-C in the second trial, a re-run killed -9 in a later one, a last re-run: every trial run's tags are the
    uninterrupted run's, and the decisions and test accuracy too."""
    _, reference_uri, _ = quick_search
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ("search=quick", f"tracking.uri={uri}", "search.name=check")

    def mid_trial(finished_at_least: int, process: subprocess.Popen):
        def check():
            trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
            finished = [r for r in trials if "searcher.status" in r.data.tags]
            return (len(finished) >= finished_at_least and any(r.info.status == "RUNNING" for r in trials)) or process.poll() is not None

        return check

    process = start_cli(*args, cwd=tmp_path)
    wait_for(mid_trial(1, process), every=0.1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    process = start_cli(*args, cwd=tmp_path)
    wait_for(mid_trial(4, process), every=0.1)
    assert process.poll() is None, "the search finished before it could be killed"
    process.kill()  # SIGKILL: no handler runs, runs are left RUNNING
    process.wait()
    finished_before = {r.data.tags["searcher.trial_key"] for r in completed_trials(uri) if r.info.status != "RUNNING"}
    left_running = {r.info.run_id: r.data.tags["searcher.role"] for r in search_runs(uri) if r.info.status == "RUNNING"}
    assert "search" in left_running.values()

    result = run_cli(*args, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "resuming search check" in result.stdout and "reused" in result.stdout
    assert f"search check was held by pid {process.pid} on host " in result.stdout  # its lease: the process is gone,
    assert "its process is gone: taken over" in result.stdout  # known at once on this machine (no waiting for expiry)

    runs = search_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    orphans = {r.info.run_id for r in runs if "searcher.orphaned" in r.data.tags and r.info.status == "FAILED"}
    assert orphans == {run_id for run_id, role in left_running.items() if role == "trial"}  # the trial in flight, if any
    for run in runs:
        if run.info.run_id in orphans:  # the dead owner's, and said so
            assert run.data.tags["searcher.owner"].startswith(f"pid {process.pid} ")
            assert run.data.tags["searcher.orphaned"].startswith(f"left RUNNING by pid {process.pid} on host ")
    keys = [r.data.tags["searcher.trial_key"] for r in completed_trials(uri)]
    assert len(keys) == len(set(keys)), "a trial was trained twice"
    assert finished_before <= set(keys)

    reference = {r.data.tags["searcher.trial_key"]: r for r in completed_trials(reference_uri)}
    assert set(keys) == set(reference)
    assert decisions(uri) == decisions(reference_uri)
    (resumed,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    (uninterrupted,) = search_runs(reference_uri, "tags.`searcher.role` = 'search'")
    assert resumed.data.metrics["test_acc"] == uninterrupted.data.metrics["test_acc"]
    assert resumed.data.metrics["val_acc_mean"] == uninterrupted.data.metrics["val_acc_mean"]
    assert {r.data.tags.get("searcher.search_name") for r in runs} == {"check"}  # resumed runs keep the search's name
    # run ids, this process, the name (checked above); and whether a trial was trained as a guess (execution=auto runs
    # trial threads on a multi-core CPU: which trials are guessed depends on which finished first)
    volatile = {"searcher.owner", "searcher.search_run_id", "searcher.search_name", "searcher.speculative"}
    def stable(run):
        return {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") and k not in volatile}

    for run in completed_trials(uri):  # every tag of every trial run, as an uninterrupted run recorded it
        assert stable(run) == stable(reference[run.data.tags["searcher.trial_key"]]), run.info.run_name
    versions = MlflowClient(tracking_uri=uri).search_model_versions()
    assert versions and {v.tags.get("searcher.search_name") for v in versions} == {"check"}


@pytest.mark.parametrize("execution", ["execution=serial", "execution=threads"])
def test_sigterm_stops_within_seconds_and_marks_runs_killed(tmp_path, execution):
    """SIGTERM in the first seconds of stage 0 (its first trial): exit 143 within 2 s, no "database is locked" wait;
    trials in threads stop at their next step."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    process = start_cli("search=quick", f"tracking.uri={uri}", "search.name=term", execution, cwd=tmp_path)
    wait_for(lambda: any(r.info.status == "RUNNING" for r in search_runs(uri, "tags.`searcher.role` = 'trial'")) or process.poll() is not None, every=0.3)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    stopped = time.monotonic() - sent
    output = process.stdout.read()
    assert code == 143, output[-3000:]
    assert stopped < 2, stopped
    assert "locked" not in output and "Traceback" not in output
    runs = search_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = {r.data.tags["searcher.role"] for r in runs if r.info.status == "KILLED"}
    assert killed == {"search", "stage", "trial"}


def test_completed_search_rerun_trains_nothing(quick_search):
    """...and prints what the first run printed: the MLflow UI command, the stage-by-stage link, the model's URI."""
    folder, uri, first = quick_search
    before = len(search_runs(uri))
    result = run_cli("search=quick", f"tracking.uri={uri}", "search.name=check", cwd=folder, timeout=120)
    assert result.returncode == 0 and "already complete" in result.stdout
    assert len(search_runs(uri)) == before
    for start in ("MLflow UI:  ", "then open:  ", "model:      "):
        (said,) = [line for line in first.splitlines() if line.startswith(start)]
        assert said in result.stdout.splitlines(), start
    assert "viewStateShareKey=" in result.stdout and "report:     " in result.stdout


def test_changed_dataset_under_the_same_name_is_refused(quick_search):
    folder, uri, _ = quick_search
    result = run_cli("search=quick", f"tracking.uri={uri}", "search.name=check", "+dataset=digits", "dataset.classes=[0,1,2]", cwd=folder, timeout=120)
    assert result.returncode == 2
    assert "dataset.classes" in result.stderr and "new search.name" in result.stderr


def test_tampered_trial_checkpoint_gives_a_clear_error(tmp_path):
    from searcher.train.checkpoint import Checkpointing, TrialCheckpointError

    path = tmp_path / "trial.pt"
    torch.save({"weights": torch.ones(3)}, path)
    path.write_bytes(path.read_bytes()[:20])  # truncated
    with pytest.raises(TrialCheckpointError, match="trial.pt is unreadable"):
        Checkpointing(path).load()


def test_a_trial_stopped_between_its_outcome_and_its_evidence_is_retrained_not_reused(tmp_path):
    """A signal can end a trial run after its outcome tags are logged and before its per-image evidence is:
    such a run (KILLED, or orphaned by kill -9) must be trained again, or a resumed search decides without evidence."""
    from mlflow.tracking import MlflowClient

    from searcher.tracking.history import load_prior
    from searcher.tracking.lease import acquire
    from searcher.tracking.schema import Roles, Tags

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    experiment = client.create_experiment("searcher")
    search = client.create_run(experiment, tags={Tags.ROLE: Roles.SEARCH})
    search_id = search.info.run_id

    def trial(key: str, status: str, **extra: str) -> None:
        run = client.create_run(experiment, tags={Tags.ROLE: Roles.TRIAL, Tags.TRIAL_KEY: key, Tags.STATUS: "ok", Tags.SEARCH_RUN_ID: search_id, **extra})
        client.set_terminated(run.info.run_id, status)

    trial("finished", "FINISHED")
    trial("failed", "FAILED")
    trial("killed", "KILLED")
    trial("orphaned", "FAILED", **{Tags.ORPHANED: "left RUNNING by a process that died"})
    lease = acquire(f"sqlite:///{tmp_path / 'optuna.db'}", "check", 60)
    try:
        prior = load_prior(client, experiment, client.get_run(search_id), lease)
    finally:
        lease.release()
    assert set(prior.completed) == {"finished", "failed"}


def test_a_store_lost_mid_search_stops_with_exit_75_and_the_rerun_resumes_once_it_is_back(quick_search, tmp_path):
    """The tracking store's folder made read-only in stage 1, then (on the re-run) the Optuna storage's in stage 3:
    each time a bounded wait, one sentence naming the store and exit 75, no trial recorded as failed; the last re-run
    reuses what finished and decides exactly as an uninterrupted search."""
    from conftest import read_only

    _, reference_uri, _ = quick_search
    tracking, optuna = tmp_path / "tracking", tmp_path / "optuna"
    tracking.mkdir()
    optuna.mkdir()
    uri = f"sqlite:///{tracking / 'm.db'}"
    args = ("search=quick", f"tracking.uri={uri}", f"tracking.optuna_storage=sqlite:///{optuna / 'o.db'}", "search.name=check")

    def stage_trials(stage: str, count: int, process: subprocess.Popen):
        return lambda: process.poll() is not None or len(search_runs(uri, f"tags.`searcher.stage` = '{stage}' and tags.`searcher.role` = 'trial'")) >= count

    process = start_cli(*args, cwd=tmp_path)
    wait_for(stage_trials("width", 2, process), every=0.2)
    finished_before = {r.data.tags["searcher.trial_key"] for r in completed_trials(uri) if r.info.status == "FINISHED"}
    with read_only(tracking):
        lost = time.monotonic()
        output = process.communicate(timeout=120)[0]
        waited = time.monotonic() - lost
    said = " ".join(output.split())
    assert process.returncode == 75, said[-3000:]
    assert 10 < waited < 60, waited  # ~15 s of retries, with one warning line
    assert f"stopped: tracking.uri='{uri}' stopped working (" in said and "re-run the same command to resume. (exit 75)" in said
    assert "trying again for up to 15 s" in said and "Traceback" not in output

    process = start_cli(*args, cwd=tmp_path)
    wait_for(stage_trials("regularization", 2, process), every=0.2)
    with read_only(optuna):
        output = process.communicate(timeout=120)[0]
    said = " ".join(output.split())
    assert process.returncode == 75, said[-3000:]
    assert "resuming search check" in said and f"stopped: tracking.optuna_storage='sqlite:///{optuna / 'o.db'}' stopped working (" in said
    assert "Traceback" not in output
    runs = search_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]  # the tracking store still worked: runs closed KILLED
    assert not [r for r in runs if "searcher.error" in r.data.tags], "a trial was recorded as failed because the storage failed"

    result = run_cli(*args, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    keys = [r.data.tags["searcher.trial_key"] for r in completed_trials(uri)]
    assert len(keys) == len(set(keys)), "a trial was trained twice"
    assert finished_before <= set(keys)
    assert decisions(uri) == decisions(reference_uri)
    (resumed,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    (uninterrupted,) = search_runs(reference_uri, "tags.`searcher.role` = 'search'")
    assert resumed.data.metrics["test_acc"] == uninterrupted.data.metrics["test_acc"]


def test_sigterm_while_the_report_is_built_exits_143_and_the_rerun_rebuilds_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tiny = ("search=quick", "search.width.cap=16", "search.depth.cap=3", "search.regularization.trials=1", "search.final.seeds=1", "train.stability.max_epochs=8")
    args = (*tiny, f"tracking.uri={uri}", "search.name=report", "report.trial_plots=true")  # ~20 figures: a report of a second or two
    process = start_cli(*args, cwd=tmp_path)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("model:"):  # printed just before the report is built
            process.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + process.stdout.read()
    said = " ".join(output.split())
    assert process.wait(timeout=10) == 143, said[-3000:]
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert search.info.status == "FINISHED" and "report_seconds" not in search.data.metrics
    assert "report interrupted (exit 143)" in said and "Traceback" not in output
    assert f"rebuild the report with python -m searcher.report --search-name report --tracking-uri {uri} --out " in said

    result = run_cli(*args, cwd=tmp_path, timeout=300)
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said[-3000:]
    assert "already complete" in said and "the report of search report is missing (its building was stopped): rebuilding it" in said
    first, rerun = sorted(tmp_path.glob("outputs/*/*"))  # (outputs/DATE/TIME)
    assert "searcher report: report" in (rerun / "report.html").read_text()
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert "report_seconds" in search.data.metrics
    again = run_cli(*args, cwd=tmp_path, timeout=300)  # now whole: not rebuilt again
    assert again.returncode == 0 and "missing" not in again.stdout
