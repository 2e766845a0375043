"""A real SLURM: Hydra multiruns as SLURM jobs, a time limit's requeue and resume, scancel, a request SLURM refuses.

scripts/test.sh (CI's command) starts a throw-away single-node cluster (scripts/slurm.sh: Debian's
SLURM 22.05 and munge) and exports SEARCHER_TEST_SLURM_PARTITION and SLURM_CONF; without a cluster
these tests skip. Like many small clusters it has no accounting storage: sacct fails there.
"""

import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from conftest import check_two_complete_searches, completed_trials, run_cli, search_runs, start_multirun, wait_for
from mlflow.tracking import MlflowClient

PARTITION = os.environ.get("SEARCHER_TEST_SLURM_PARTITION")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not PARTITION,
        reason="no SLURM cluster: scripts/test.sh starts one as root (scripts/slurm.sh); or set SEARCHER_TEST_SLURM_PARTITION=<partition>",
    ),
]
ONE_CPU = ("hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4")  # two jobs at once on a 2-CPU node
# slurmctld checks time limits every 30 s and sends SIGUSR2 at the first check that finds a job within
# signal_delay_s + 30 s of its limit: with a 1-minute limit and 19 s, the first check 11 s or more into it.
# The first run is released so that check comes 13-19 s into it: mid-search on a quiet machine (a quick search
# is done 20 s in) and on a busy one (its first trial starts 12 s in). A requeued run starts 20 s after the last
# one ended (scripts/slurm.sh: cred_expire=20), which takes seconds after the check that stopped it: its first
# check comes under 10 s in and passes it by, and the next gives it over 30 s (restarts took 24-26 s here).
SIGNAL_DELAY_S = 19
TINY = (  # about 5 short trials
    "search=quick", "search.width.cap=16", "search.depth.cap=3", "search.regularization.trials=1", "search.final.seeds=1",
    "train.stability.max_epochs=10",
)


class Multiruns:
    """A test's multiruns, their SLURM jobs under one name; what is left running at the end is stopped."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.job_name = f"searcher-test-{uuid.uuid4().hex[:8]}"
        self.started: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.started.append(start_multirun(*args, f"hydra.launcher.name={self.job_name}", cwd=self.cwd, env=env))
        return self.started[-1]

    def stop(self) -> None:
        subprocess.run(["scancel", f"--name={self.job_name}"], capture_output=True)
        for process in self.started:
            if process.poll() is None:  # a launcher waits for ever for a job killed without a result
                process.kill()
                process.communicate()


@pytest.fixture
def multiruns(tmp_path):
    runs = Multiruns(tmp_path)
    yield runs
    runs.stop()


def finish(process: subprocess.Popen, timeout: float) -> str:
    """The output of a multirun once it ended; a multirun still running after `timeout` s is killed and fails the test."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the multirun did not end within {timeout} s:\n{process.communicate()[0][-3000:]}") from None


def queued(name: str) -> list[str]:
    """The (array) job ids of the jobs called `name` in the queue."""
    listed = subprocess.run(["squeue", "--noheader", f"--name={name}", "--format=%F"], capture_output=True, text=True, check=True)
    return sorted(set(listed.stdout.split()))


def time_limit_checks() -> list[float]:
    """When slurmctld checked the jobs' time limits (every 30 s), from its log at debug2 (scripts/slurm.sh)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    log = re.search(r"^SlurmctldLogFile\s*=\s*(\S+)", config, re.MULTILINE)
    if not re.search(r"^SlurmctldDebug\s*=\s*debug[2-5]", config, re.MULTILINE) or not log or not Path(log.group(1)).is_file():
        pytest.skip("slurmctld's log does not show its time-limit checks: needs SlurmctldDebug=debug2 (scripts/slurm.sh)")
    checks = re.findall(r"^\[([\d\-T:.]+)\] debug2: Testing job time limits", Path(log.group(1)).read_text(errors="replace"), re.MULTILINE)
    return [datetime.fromisoformat(check).timestamp() for check in checks]


def release_between_checks(job: str) -> None:
    """Release a held job 11-15 s after one of slurmctld's time-limit checks (it starts within 2 s): the next one
    then comes 13-19 s into it (instead of anywhere in a 30 s window)."""
    check = wait_for(time_limit_checks, timeout=40)[-1]  # the first comes 30 s after slurmctld started
    while not 11 <= (time.time() - check) % 30 <= 15:
        time.sleep(0.2)
    subprocess.run(["scontrol", "release", job], check=True)


def decisions(uri: str, run_id: str) -> list:
    path = MlflowClient(tracking_uri=uri).download_artifacts(run_id, "decisions.json", tempfile.mkdtemp())
    return json.loads(Path(path).read_text())


def test_a_slurm_gpu_job_reaches_its_time_limit_is_requeued_and_resumes_to_the_same_decisions(quick_search, tmp_path, multiruns):
    _, reference_uri, _ = quick_search  # the same search, never interrupted
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sweep = tmp_path / "sweep"
    time_limit_checks()  # (skips where slurmctld's log does not show them)
    process = multiruns.start(
        "search=quick", "search.name=check", f"tracking.uri={uri}", f"hydra.sweep.dir={sweep}",
        "hydra/launcher=slurm_gpu", "hydra.launcher.gpus_per_node=null",  # the preset less its GPU: there is none here
        f"hydra.launcher.partition={PARTITION}", *ONE_CPU,
        "hydra.launcher.timeout_min=1", f"hydra.launcher.signal_delay_s={SIGNAL_DELAY_S}",
        "+hydra.launcher.additional_parameters.hold=true",  # submitted held, released at a chosen moment
        # the search waits after its baseline until the time limit's signal (once: the requeued job runs through), so
        # the limit always cuts it mid-search: on a quiet machine the whole quick search once ended before it came
        env={"SEARCHER_HOLD_AT": "stage.ended:1", "SEARCHER_HOLD_MARKER": str(tmp_path / "held")},
    )
    wait_for(lambda: queued(multiruns.job_name) or process.poll() is not None, timeout=120)
    assert process.poll() is None, process.communicate()[0][-3000:]
    (job,) = queued(multiruns.job_name)
    release_between_checks(job)
    output = finish(process, timeout=400)
    assert process.returncode == 0, output[-3000:]
    assert "SLURM has no accounting storage here" in output and "Bypassing sacct error" not in output
    assert "accounting storage is disabled" not in output  # sacct's own complaint, once per poll before

    script = (sweep / ".submitit" / job / f"{job}_submission.sh").read_text()
    assert f"#SBATCH --signal=USR2@{SIGNAL_DELAY_S}" in script and "#SBATCH --time=1\n" in script and "gpus" not in script
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert search.info.status == "FINISHED" and search.data.tags["searcher.multirun_job_id"] == job  # one job: no array
    assert search.data.tags["searcher.multirun_sweep_dir"] == str(sweep) and search.data.tags["searcher.multirun_job"] == "0"
    log = (sweep / ".submitit" / job / f"{job}_0_log.out").read_text()
    assert "this job is timed-out" in log, "SLURM did not signal the job before its time limit"
    assert (tmp_path / "held").exists()  # the first job waited for the signal (the hook wrote its marker)
    assert "(4 remaining timeouts)" in log  # requeued, counting down from the preset's max_num_timeout 5
    assert "stopped by the job scheduler" in log and "interrupted" not in log
    assert "resuming search check" in log and "completed trials are reused" in log
    runs = search_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    keys = [r.data.tags["searcher.trial_key"] for r in completed_trials(uri) if r.info.status == "FINISHED"]
    assert len(keys) == len(set(keys)), "a trial was trained twice"
    # The time limit cut the search: the requeued job reused what the first had finished and trained the rest. (Where
    # it cut a trial, that run ended KILLED; a requeue that lands while a record is written waits for the record, so
    # it may also come between two stages, with no stage or trial open.)
    reused = int(re.search(r"resuming search check: (\d+) completed trials are reused", log).group(1))
    assert 0 < reused < len(keys), log[-3000:]

    (reference,) = search_runs(reference_uri, "tags.`searcher.role` = 'search'")
    assert decisions(uri, search.info.run_id) == decisions(reference_uri, reference.info.run_id)
    assert search.data.metrics["test_acc"] == reference.data.metrics["test_acc"]


def held_job(marker: Path) -> str:
    """The multirun job (array index) of the process `SEARCHER_HOLD_AT` holds: the marker names its pid."""
    pid = int(marker.read_text().split()[-1])
    environment = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return environment["SLURM_ARRAY_TASK_ID"]


def test_a_multirun_of_two_jobs_one_scancelled_then_rerun_leaves_two_complete_searches(tmp_path, multiruns):
    """scancel lands mid-trial by construction: the first job to open its second trial holds there (searcher/crash.py),
    after its baseline finished. (Waiting on the records instead raced: under load the trial seen running had finished,
    and its stage closed, before SLURM delivered the signal, so no stage was left to be KILLED.)"""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sweep, marker = tmp_path / "sweep", tmp_path / "held"
    args = (
        *TINY, "seed=1,2", f"tracking.uri={uri}", f"hydra.sweep.dir={sweep}",
        "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}", *ONE_CPU,
    )
    process = multiruns.start(*args, env={"SEARCHER_HOLD_AT": "trial.started:2", "SEARCHER_HOLD_MARKER": str(marker)})
    wait_for(lambda: (marker.exists() and marker.read_text().endswith("\n")) or process.poll() is not None)
    assert process.poll() is None, process.communicate()[0][-3000:]
    held = held_job(marker)
    (job,) = queued(multiruns.job_name)
    subprocess.run(["scancel", f"{job}_{held}"], check=True)  # SIGTERM to the held job's processes
    output = finish(process, timeout=300)
    assert process.returncode != 0 and f"job {held}: search" in output and "ended with exit code 143" in output, output[-3000:]
    runs = search_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert sorted(r.data.tags["searcher.role"] for r in killed) == ["search", "stage", "trial"]  # the held job's, its open trial's
    done_before = {r.data.tags["searcher.trial_key"] for r in completed_trials(uri) if r.info.status == "FINISHED"}

    rerun = multiruns.start(*args)  # the same command again: one job finds its search done, the held one resumes
    output = finish(rerun, timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    searches = check_two_complete_searches(uri, sweep, seeds=(1, 2))
    job_id = searches[held].data.tags["searcher.multirun_job_id"]
    assert job_id != f"{job}_{held}"  # tagged with the job that finished it
    log = (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    assert "resuming search" in log and "completed trials are reused" in log
    assert done_before < {r.data.tags["searcher.trial_key"] for r in completed_trials(uri)}


def test_a_request_slurm_refuses_ends_the_multirun_before_anything_is_made(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    common = ("-m", "search=quick", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    result = run_cli(*common, "hydra/launcher=submitit_slurm", "hydra.launcher.partition=no-such-partition", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert line.startswith("error: SLURM refuses the jobs (invalid partition specified: no-such-partition")
    assert "set hydra.launcher.partition to one of this cluster's partitions:" in line and PARTITION in line
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "sweep").exists()

    gres = subprocess.run(["sinfo", "--noheader", f"--partition={PARTITION}", "--format=%G"], capture_output=True, text=True).stdout
    if "gpu" not in gres:  # the GPU preset as it is, on a partition without GPUs
        result = run_cli(*common, "hydra/launcher=slurm_gpu", f"hydra.launcher.partition={PARTITION}", cwd=tmp_path, timeout=120)
        assert result.returncode == 2 and "error: SLURM refuses the jobs" in result.stderr and "gpus_per_node" in result.stderr
