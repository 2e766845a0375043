"""Hydra multirun support: which job a search is, and the stores made ready before jobs start.

`python -m searcher -m seed=0,1,2 hydra/launcher=submitit_slurm` runs one search per
combination. Every job's search run is tagged with its job number, job id (the SLURM
job id under submitit) and sweep folder, so the searches of one multirun are found
together in the MLflow experiment they share.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from searcher.uris import redact


def job_tags() -> dict[str, str]:
    """Tags naming this multirun job; empty for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return {}
    from searcher.tracking.schema import Tags

    overrides = [shown_override(o) for o in hydra.overrides.task]
    return {
        Tags.MULTIRUN_JOB: str(hydra.job.num),
        Tags.MULTIRUN_JOB_ID: str(hydra.job.get("id") or ""),  # type: ignore[attr-defined]  # a DictConfig at run time
        Tags.MULTIRUN_SWEEP_DIR: str(Path(hydra.sweep.dir).resolve()),
        Tags.MULTIRUN_OVERRIDES: " ".join(overrides)[:5000],
    }


def shown_override(override: str) -> str:
    key, equals, value = override.partition("=")
    return f"{key}{equals}{redact(value)}" if equals else override


class PrepareStores(Callback):
    """Creates the tracking store's tables, the experiment and the Optuna tables once, before any job starts.

    Jobs that all find a new SQLite store empty race to create its tables, and the losers
    fail (MLflow's schema migrations are not safe to run twice at once).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from searcher.config import ConfigError, validate

        try:
            settings = validate(OmegaConf.to_container(config, resolve=False))  # type: ignore[arg-type]
            from searcher.optuna_storage import open_storage
            from searcher.tracking import TrackingError, open_recorder
            from searcher.tracking.setup import optuna_storage

            open_recorder(settings.tracking.uri, settings.tracking.experiment)
            open_storage(optuna_storage(settings))
        except (ConfigError, TrackingError) as error:  # each job reports it, with exit code 2
            print(f"note: the stores could not be prepared before the jobs start: {error}")


class PrepareSlurm(Callback):
    """Before a SLURM multirun submits its jobs: SLURM's verdict on what they ask for, and quiet polls.

    A request SLURM refuses (a partition that does not exist, GPUs on a partition without them)
    ends the command with one clear sentence instead of submitit's traceback, before any store or
    job is made. On a SLURM without accounting storage, submitit would print a failed `sacct` at
    every poll while the launcher waits; those polls are skipped (searcher/execution/submitit.py).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if not str(launcher.get("_target_", "")).endswith("SlurmLauncher") or shutil.which("sbatch") is None:
            return
        refusal = refused(launcher)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr, flush=True)
            raise SystemExit(2)  # bad input (Hydra turns a callback's exception into a warning)
        from searcher.execution.submitit import NO_ACCOUNTING, skip_sacct_without_accounting

        if skip_sacct_without_accounting():
            print(f"note: {NO_ACCOUNTING}")


SBATCH_OPTIONS = {  # hydra-submitit-launcher settings that decide whether SLURM can run a job: sbatch option
    "partition": "partition", "account": "account", "qos": "qos", "constraint": "constraint", "nodes": "nodes",
    "tasks_per_node": "ntasks-per-node", "cpus_per_task": "cpus-per-task", "gpus_per_node": "gpus-per-node",
    "gres": "gres", "timeout_min": "time",
}


def refused(launcher: DictConfig) -> str | None:
    """What SLURM says to the jobs' request (`sbatch --test-only`: nothing is submitted), if it refuses it."""
    options = [f"--{option}={launcher[key]}" for key, option in SBATCH_OPTIONS.items() if launcher.get(key) is not None]
    if launcher.get("mem_gb") is not None:
        options.append(f"--mem={int(launcher.mem_gb * 1024)}M")
    for key, value in (launcher.get("additional_parameters") or {}).items():
        options.append(f"--{key.replace('_', '-')}" + ("" if value is True else f"={value}"))
    test = subprocess.run(["sbatch", "--test-only", *options, "--wrap", "true"], capture_output=True, text=True, timeout=60)
    if test.returncode == 0:
        return None
    said = "; ".join(line.removeprefix("sbatch: error: ") for line in test.stderr.strip().splitlines()) or f"sbatch exit {test.returncode}"
    if "partition" in said.lower():
        listed = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True, timeout=60).stdout.split()
        return f"SLURM refuses the jobs ({said}): set hydra.launcher.partition to one of this cluster's partitions: {', '.join(listed)}"
    return f"SLURM refuses the jobs ({said}): fit hydra.launcher.partition, gpus_per_node, cpus_per_task, mem_gb and timeout_min to the cluster (sinfo)"
