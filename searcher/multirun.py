"""Hydra multirun support: which job a search is, and the stores made ready before jobs start.

`python -m searcher -m seed=0,1,2 hydra/launcher=submitit_slurm` runs one search per
combination. Every job's search run is tagged with its job number, job id (the SLURM
job id under submitit) and sweep folder, so the searches of one multirun are found
together in the MLflow experiment they share.
"""

from __future__ import annotations

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
            from searcher.app import optuna_storage
            from searcher.search.studies import open_storage
            from searcher.tracking import TrackingError, open_recorder

            open_recorder(settings.tracking.uri, settings.tracking.experiment)
            open_storage(optuna_storage(settings))
        except (ConfigError, TrackingError) as error:  # each job reports it, with exit code 2
            print(f"note: the stores could not be prepared before the jobs start: {error}")
