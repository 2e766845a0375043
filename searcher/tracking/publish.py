"""What a built report writes into the store: its files on the search's runs, the search run's description, its time.

`report.build.publish` calls these after reading the search (reader.py, which never writes).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from searcher.tracking.schema import Metrics


def attach(client: Any, run_id: str, files: Iterable[Path], artifact_path: str | None = None) -> None:
    """Log local files as artifacts of a run (replacing files of the same name)."""
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)


def log_report_seconds(client: Any, run_id: str, seconds: float) -> None:
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric(Metrics.REPORT_SECONDS, seconds, int(time.time() * 1000), 0)])


def describe(client: Any, run_id: str, markdown: str) -> None:
    """The run's description, as the MLflow UI shows it on the run page (the mlflow.note.content tag)."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    client.set_tag(run_id, MLFLOW_RUN_NOTE, markdown)
