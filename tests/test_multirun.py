"""Hydra multirun for real: one search per combination through the joblib and submitit_local launchers.

submitit's local executor also requeues a job that gets the pre-timeout/preemption
signal (SIGUSR2), exactly as on SLURM: the requeued job re-runs the same command and
resumes the search.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import search_runs

pytestmark = pytest.mark.slow

SMALL = ("search=quick", "search.regularization.trials=1", "search.final.seeds=1")  # about 6 trials a search


def start_multirun(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
    return subprocess.Popen(
        [sys.executable, "-m", "searcher", "-m", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finished_searches(uri: str) -> dict[str, object]:
    runs = search_runs(uri, "tags.`searcher.role` = 'search'")
    return {r.data.tags["searcher.multirun_job"]: r for r in runs if r.info.status == "FINISHED"}


def completed_trials(uri: str, search_run_id: str | None = None) -> list:
    runs = [r for r in search_runs(uri, "tags.`searcher.role` = 'trial'") if "searcher.status" in r.data.tags]
    return [r for r in runs if search_run_id is None or r.data.tags["searcher.search_run_id"] == search_run_id]


def job_process(folder: Path) -> int | None:
    """The pid of a running submitit job task (`python -m submitit.core._submit <folder>/...`), if any."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "submitit.core._submit" in command and str(folder) in command:
            return int(pid)
    return None


def check_two_complete_searches(uri: str, sweep: Path) -> dict:
    searches = finished_searches(uri)
    assert sorted(searches) == ["0", "1"]
    for job, run in searches.items():
        tags = run.data.tags
        assert tags["searcher.multirun_sweep_dir"] == str(sweep)
        assert f"seed={int(job) + 1}" in tags["searcher.multirun_overrides"]
        assert run.data.params["seed"] == str(int(job) + 1)
        assert "test_acc" in run.data.metrics
        keys = [t.data.tags["searcher.trial_key"] for t in completed_trials(uri, run.info.run_id)]
        assert keys and len(keys) == len(set(keys)), "a trial was recorded twice"
    assert not [r for r in search_runs(uri) if r.info.status == "RUNNING"]
    return searches


def test_submitit_local_runs_one_search_per_seed_and_a_requeued_job_resumes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sweep = tmp_path / "sweep"
    process = start_multirun(*SMALL, "search.depth.cap=3", "seed=1,2", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", f"tracking.uri={uri}", cwd=tmp_path)
    deadline = time.monotonic() + 300
    while len(completed_trials(uri)) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
    job = job_process(sweep)
    assert job is not None and process.poll() is None, "the jobs finished before one could be signalled"
    os.kill(job, signal.SIGUSR2)  # what SLURM sends before the time limit (and on preemption)
    output, _ = process.communicate(timeout=400)
    assert process.returncode == 0, output[-3000:]

    searches = check_two_complete_searches(uri, sweep)
    logs = "\n".join(path.read_text() for path in sweep.glob(".submitit/*/*_log.out"))
    assert "Requeued job" in logs and "stopped by the job scheduler" in logs
    assert "resuming search" in logs and "completed trials are reused" in logs
    assert {r.data.tags["searcher.multirun_job_id"] for r in searches.values()} == {p.name for p in sweep.glob(".submitit/[0-9]*")}


def test_joblib_runs_one_search_per_seed_in_one_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sweep = tmp_path / "sweep"
    process = start_multirun(
        *SMALL, "search.width.cap=16", "search.depth.cap=2", "seed=1,2", "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}", f"tracking.uri={uri}",
        "execution=processes", "execution.workers=1",  # a worker pool inside joblib's (loky) worker process
        cwd=tmp_path,
    )
    output, _ = process.communicate(timeout=400)
    assert process.returncode == 0, output[-3000:]
    assert output.count("execution: 1 worker processes") == 2
    check_two_complete_searches(uri, sweep)
    assert len({r.info.experiment_id for r in search_runs(uri)}) == 1
