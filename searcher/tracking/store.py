"""Opening the tracking store: check the URI before anything trains."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse


class TrackingError(Exception):
    """The tracking store cannot be used; the message names tracking.uri and what to do."""


SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def check_uri(uri: str) -> None:
    """Fails fast, with the URI in the message, for a malformed or unreachable store."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in SCHEMES:
        raise TrackingError(
            f"tracking.uri={uri!r} is not a tracking store URI; use sqlite:///path/mlflow.db, "
            "postgresql://user@host/db or http(s)://host:port (MLflow's file store is not supported)."
        )
    if scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path:
            raise TrackingError(f"tracking.uri={uri!r} names no database file; use sqlite:///mlflow.db or sqlite:////abs/path.db.")
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise TrackingError(f"tracking.uri={uri!r}: folder {folder} does not exist; create it or point tracking.uri elsewhere.")
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except (urllib.error.URLError, OSError) as error:
            raise TrackingError(f"tracking.uri={uri!r} is unreachable ({error}); start the server or fix the URI.") from None


def open_recorder(uri: str, experiment: str):
    """A Recorder on `experiment` (created if new). Imports MLflow only now: config errors answer fast."""
    check_uri(uri)
    from mlflow.tracking import MlflowClient

    from searcher.tracking.recorder import Recorder
    from searcher.tracking.retry import RetryingClient

    client = RetryingClient(MlflowClient(tracking_uri=uri), uri)
    try:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    except Exception as error:  # MLflow raises many types for a broken store
        raise TrackingError(f"tracking.uri={uri!r} could not be opened: {type(error).__name__}: {error}") from None
    return Recorder(client, experiment_id, uri)
