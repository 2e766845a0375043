"""What a search records and where, built from the config: the Optuna storage beside the tracking store, the
settings as MLflow params and as the recorded config, the search's default name, and which store a failure lost.

Light to import (MLflow and Optuna are imported only by the functions that need them): the command reads it
before it has decided that the settings are good.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from searcher.config import ConfigError, SearcherConfig, beside_tracking_store
from searcher.uris import redact, with_driver

if TYPE_CHECKING:
    from mlflow.entities import Run


def optuna_storage(config: SearcherConfig) -> str:
    """The Optuna storage URL, with an absolute path: worker processes and jobs open it too."""
    from searcher.optuna_storage import absolute_storage

    if config.tracking.optuna_storage:
        return absolute_storage(config.tracking.optuna_storage)
    if config.tracking.uri.startswith("postgresql"):
        # MLflow and Optuna both keep an `alembic_version` table: they cannot share one database.
        raise ConfigError(
            f"tracking.optuna_storage is not set and tracking.uri={redact(config.tracking.uri)} is PostgreSQL: MLflow and Optuna "
            "cannot share one database; create a second one and set tracking.optuna_storage=postgresql://user@host/optuna."
        )
    return absolute_storage(f"sqlite:///{beside_tracking_store(config, 'optuna.db')}")


def search_settings(config: SearcherConfig) -> dict[str, str]:
    """Every setting as an MLflow param (search.name is the run's name, not a setting); passwords in URIs masked."""
    from searcher.tracking.recorder import flatten

    settings = flatten("", OmegaConf.to_container(OmegaConf.structured(config)))
    return {k: redact(v) if k.startswith("tracking.") else v for k, v in settings.items() if k != "search.name"}


def shown_config(config: SearcherConfig) -> str:
    """The resolved config as YAML for the record, with passwords in URIs masked."""
    tracking = replace(
        config.tracking,
        uri=redact(config.tracking.uri),
        optuna_storage=redact(config.tracking.optuna_storage) if config.tracking.optuna_storage else None,
    )
    return OmegaConf.to_yaml(OmegaConf.structured(replace(config, tracking=tracking)))


# Settings added after search names were first hashed, with their defaults: a search at the default keeps its name.
LATER_DEFAULTS = {
    "model._target_": "searcher.model.cnn.CNN", "search.metric": "auto", "search.goal": "auto", "dataset.task": "auto", "search.rungs": "",
}


def default_name(config: SearcherConfig, settings: dict[str, str]) -> str:
    """<dataset>-<preset>-seed<N>-<hash of what the search computes>: the same command resumes, other settings start anew."""
    from searcher.tracking.history import NEUTRAL_SETTINGS

    defining = {k: v for k, v in settings.items() if not k.startswith(NEUTRAL_SETTINGS)}
    for key, default in LATER_DEFAULTS.items():  # settings added since: at their defaults, names stay what they were
        if defining.get(key) == default:
            del defining[key]
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.dataset.name}-{config.search.preset}-seed{config.seed}-{digest}"


def ui_command(uri: str) -> str:
    return f"python -m searcher.ui --tracking-uri {redact(with_driver(uri))}"


def report_missing(config: SearcherConfig, finished_search: Run) -> bool:
    """A finished search whose report was never completed (its building stopped by a signal or kill -9): the report
    logs its time last, so a search run without it has no whole report."""
    from searcher.tracking.schema import Metrics

    return config.report.enabled and Metrics.REPORT_SECONDS not in finished_search.data.metrics


@dataclass(frozen=True)
class LostStore:
    """A store that stopped working mid-search: its setting, its URI (password masked) and its last error."""

    setting: str
    uri: str
    cause: str

    def sentence(self) -> str:
        return (
            f"{self.setting}={self.uri!r} stopped working ({self.cause}), so the search stopped; the trials that finished are "
            "recorded: make the store reachable and writable again, then re-run the same command to resume."
        )


def lost_store(error: BaseException, config: SearcherConfig, storage: str) -> LostStore | None:
    """The store `error` says stopped working (tracking/faults.py), or None when it is not a store's failure (a bug)."""
    from searcher.tracking.faults import TrackingLost, failed_store, store_fault
    from searcher.uris import redact_text

    which = failed_store(error)
    if which is None:
        return None
    if which == "optuna":
        setting = "tracking.optuna_storage" if config.tracking.optuna_storage else "tracking.optuna_storage (default)"
        return LostStore(setting, redact(storage), redact_text(store_fault(error) or "", storage))
    cause = error.cause if isinstance(error, TrackingLost) else store_fault(error) or ""
    return LostStore("tracking.uri", redact(config.tracking.uri), redact_text(cause, config.tracking.uri))
