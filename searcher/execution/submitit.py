"""`execution=submitit`: each trial a SLURM job through submitit (or submitit's local executor off a cluster).

The search process stays where it was started (a login node, or a multirun job)
and records every trial; each job loads the dataset from `data_dir`, trains one
trial on the node's GPU and returns the outcome. Jobs report pruning epochs to
the shared Optuna storage, so a cluster needs one every node reaches
(PostgreSQL, or a journal file on NFS; docs/cluster.md).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from searcher.execution.work import TrialTask
from searcher.execution.worker import DataSpec, run_in_job, unpacked
from searcher.search.trials import TrialOutcome
from searcher.train.trainer import EpochCallback, ShowEpoch

POLL_SECONDS = (0.5, 10.0)  # from quick checks for short jobs to a gentle pace for the SLURM controller
LOCAL_POLL_SECONDS = 1.0  # a local job is a process of this machine: looking costs nothing, and a slower pace left the slots idle


def default_cluster() -> str:
    return "slurm" if shutil.which("sbatch") else "local"


def skip_sacct_without_accounting() -> bool:
    """On a SLURM without accounting storage every `sacct` fails, and submitit, which polls it for job
    states, prints a warning (and sacct its error) at every poll: there, skip the polls.

    They never told submitit anything: it sees a job end by its result file, as before. Returns
    whether the polls are skipped.
    """
    if shutil.which("sacct") is None:
        return False
    try:
        probe = subprocess.run(["sacct", "--noheader", "--starttime=now"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if probe.returncode == 0 or "accounting storage is disabled" not in probe.stderr:
        return False  # sacct works, or fails for another reason submitit's warnings should show
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    class NoSacct(SlurmInfoWatcher):
        def _make_command(self) -> None:
            return None  # no command: submitit's watcher skips the poll

    SlurmJob.watcher = NoSacct(delay_s=600)
    return True


NO_ACCOUNTING = (
    "SLURM has no accounting storage here (sacct fails): submitit's job-state polls are skipped, so a job is seen to end "
    "only by its result; one killed outright (scancel --signal=KILL, a node failure) leaves the launcher waiting"
)


class SubmititBackend:
    def __init__(
        self,
        spec: DataSpec,
        folder: Path,
        workers: int,
        cluster: str | None = None,
        timeout_min: int = 240,
        gpus_per_node: int = 1,
        cpus_per_task: int = 8,
        mem_gb: int = 32,
        partition: str | None = None,
        slurm_additional: dict[str, str] | None = None,
    ):
        import submitit

        self.capacity = workers
        self.spec = spec
        self.cluster = cluster or default_cluster()
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=self.cluster)
        parameters: dict[str, Any] = {"timeout_min": timeout_min, "gpus_per_node": gpus_per_node, "name": "searcher-trial"}
        if self.cluster == "slurm":
            parameters |= {"cpus_per_task": cpus_per_task, "mem_gb": mem_gb, "slurm_additional_parameters": dict(slurm_additional or {})}
            if partition:
                parameters["slurm_partition"] = partition
        self.executor.update_parameters(**parameters)
        self.without_accounting = self.cluster == "slurm" and skip_sacct_without_accounting()
        self.jobs: list[Any] = []

    def submit(self, task: TrialTask, on_epoch: EpochCallback | None = None, show: ShowEpoch | None = None) -> Any:
        """(`on_epoch` and `show` stay here: the job reports epochs to `task.remote`; the live line shows no epochs of a trial in another process.)"""
        job = self.executor.submit(run_in_job, self.spec, task)
        self.jobs.append(job)
        return job

    def wait(self, handles: list[Any]) -> None:
        delay, longest = POLL_SECONDS[0], POLL_SECONDS[1] if self.cluster == "slurm" else LOCAL_POLL_SECONDS
        while not any(job.done() for job in handles):
            time.sleep(delay)
            delay = min(delay * 1.5, longest)

    def done(self, handle: Any) -> bool:
        return handle.done()

    def result(self, handle: Any) -> tuple[TrialOutcome, str | None]:
        self.jobs = [job for job in self.jobs if job is not handle]
        return unpacked(handle.result())

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for job in self.jobs:
                if not job.done():
                    job.cancel(check=False)  # scancel on SLURM; SIGINT to the local job
        self.jobs = []
