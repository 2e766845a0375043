"""Hydra multirun for real: one search per combination through the joblib and submitit_local launchers.

submitit's local executor also requeues a job that gets the pre-timeout/preemption
signal (SIGUSR2), exactly as on SLURM: the requeued job re-runs the same command and
resumes the search.
"""

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import check_two_complete_searches, completed_trials, search_runs, start_multirun

pytestmark = pytest.mark.slow

SMALL = ("search=quick", "search.regularization.trials=1", "search.final.seeds=1")  # about 6 trials a search
# Where a SLURM cluster runs (scripts/test.sh starts one in CI), tests/test_slurm.py runs a multirun of one search per
# seed and a requeued job that resumes on it: this submitit_local variation is then left to the flake hunt.
COVERED_BY_SLURM = [pytest.mark.hunt] if os.environ.get("SEARCHER_TEST_SLURM_PARTITION") else []


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


@pytest.mark.parametrize("launcher", [pytest.param("submitit_local", marks=COVERED_BY_SLURM)])
def test_submitit_local_runs_one_search_per_seed_and_a_requeued_job_resumes(tmp_path, launcher):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sweep = tmp_path / "sweep"
    process = start_multirun(*SMALL, "search.depth.cap=3", "seed=1,2", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}", f"tracking.uri={uri}", cwd=tmp_path)
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


@pytest.mark.hunt  # (CI: test_submitit_local_... or tests/test_slurm.py runs the same multirun, and a requeue)
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
