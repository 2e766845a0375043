"""One process at a time creates or migrates a SQLite store: a file lock beside the database file.

Two searches started at once on a new `sqlite:///mlflow.db` both found it empty and both ran
MLflow's schema migrations; the loser died with `sqlite3.OperationalError: duplicate column
name: step` (issue 14). Retrying is not enough: a migration that fails halfway can leave the
schema half made. Holding `<database>.lock` (flock) while a store is opened makes the second
process wait until the first has made the whole schema, then open a complete one. Server
databases (PostgreSQL, MySQL) take no lock here; their races are retried by the callers.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from searcher.uris import local_file


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative or absolute); None for other stores and in-memory ones."""
    path = local_file(uri) if uri.startswith("sqlite:///") else None
    return Path(path).expanduser() if path else None


@contextlib.contextmanager
def creating(uri: str) -> Iterator[None]:
    """Exclusive while the store at `uri` is opened (its tables created or migrated), for a SQLite store."""
    path = sqlite_file(uri)
    if path is None or not path.parent.is_dir():  # (a missing folder is reported by whoever opens the store)
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
