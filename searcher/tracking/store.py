"""Opening the tracking store: check the URI before anything trains; a Recorder to write, a client to read."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from searcher.uris import redact, redact_text, unreachable_database, unwritable_store, with_driver


class TrackingError(Exception):
    """The tracking store cannot be used; the message names tracking.uri and what to do."""


SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def check_uri(uri: str) -> None:
    """Fails fast, with the URI (password masked) in the message, for a malformed or unreachable store."""
    shown = redact(uri)
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in SCHEMES:
        raise TrackingError(
            f"tracking.uri={shown!r} is not a tracking store URI; use sqlite:///path/mlflow.db, "
            "postgresql://user@host/db or http(s)://host:port (MLflow's file store is not supported)."
        )
    if scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path:
            raise TrackingError(f"tracking.uri={shown!r} names no database file; use sqlite:///mlflow.db or sqlite:////abs/path.db.")
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise TrackingError(f"tracking.uri={shown!r}: folder {folder} does not exist; create it or point tracking.uri elsewhere.")
    if error := unreachable_database("tracking.uri", uri):
        raise TrackingError(error)
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except (urllib.error.URLError, OSError) as error:
            raise TrackingError(f"tracking.uri={shown!r} is unreachable ({error}); start the server or fix the URI.") from None


def client_for(uri: str) -> Any:
    """A plain MlflowClient on `uri`, for reading a search back (and attaching its report). Its store is opened
    now, under the same lock as a search's, so a reader never sees a new SQLite store's half-made schema."""
    from mlflow.tracking import MlflowClient

    from searcher.tracking.empty_store import copy_empty_store
    from searcher.tracking.locks import creating

    with creating(uri):
        copy_empty_store(uri)
        return MlflowClient(tracking_uri=uri)  # (its constructor opens the store: creates or migrates a new one)


# Several processes opening one new store at once (a multirun's jobs) race to create its tables or experiment.
# A process outside searcher (`mlflow ui`, a notebook) takes no lock and can leave a half-migrated schema in view.
RACE_MARKERS = (
    "alembic", "already exists", "unique constraint", "duplicate key", "duplicate column", "no such table", "no such column",
    "database is locked",
)


def import_in_background() -> threading.Thread:
    """Import MLflow's store and the recorder in a thread (about 1.5-3 s, no file touched) while the search loads its
    data, so opening the store costs only its own work. Join it before this thread imports anything of MLflow's:
    two threads importing one package with circular imports can see each other's half-made modules."""

    def load() -> None:
        import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        import searcher.tracking.recorder  # noqa: F401

    thread = threading.Thread(target=load, name="import-mlflow", daemon=True)
    thread.start()
    return thread


def open_recorder(uri: str, experiment: str, attempts: int = 5):
    """A Recorder on `experiment` (created if new). Imports MLflow only now: config errors answer fast."""
    check_uri(uri)
    if error := unwritable_store("tracking.uri", uri):
        raise TrackingError(error)
    if uri.startswith(("http://", "https://")):
        # MLflow retries each HTTP request 7 times over ~4 minutes, so a server gone mid-search held the search for
        # minutes per call; the retrying client bounds the wait instead (retry.py). A value the user set is kept.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from mlflow.tracking import MlflowClient

    from searcher.tracking.empty_store import copy_empty_store
    from searcher.tracking.locks import creating
    from searcher.tracking.recorder import Recorder
    from searcher.tracking.retry import RetryingClient

    for attempt in range(1, attempts + 1):
        try:
            with creating(uri):  # a new SQLite store's tables are made by one process while the others wait (locks.py)
                copy_empty_store(uri)  # (a copy of an empty store: MLflow's migrations run once per version, empty_store.py)
                client = RetryingClient(MlflowClient(tracking_uri=with_driver(uri)), uri)  # (this runs the migrations)
                found = client.get_experiment_by_name(experiment)
                experiment_id = found.experiment_id if found else client.create_experiment(experiment)
            return Recorder(client, experiment_id, with_driver(uri))
        except Exception as error:  # MLflow raises many types for a broken store
            text = f"{type(error).__name__}: {error}"
            if attempt < attempts and any(marker in text.lower() for marker in RACE_MARKERS):
                time.sleep(0.5 * attempt)  # another process is creating the same store or experiment: look again
                continue
            raise TrackingError(f"tracking.uri={redact(uri)!r} could not be opened: {redact_text(text, uri)[:2000]}") from None
    raise AssertionError("unreachable")


def ui_default_allowed_hosts() -> list[str]:
    """The Host headers `mlflow server` accepts when --allowed-hosts is not given: localhost and private IPs."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    return list(get_default_allowed_hosts())
