"""Which errors mean a store stopped working (and which store), as opposed to a bug or a bad request.

A store that stops answering (a server gone, a connection reset) or stops taking writes (its
SQLite file or folder made read-only or removed, a full disk) mid-search is not a bug in the
search: the search stops and a re-run resumes it (searcher/app.py). MLflow, Optuna, SQLAlchemy
and the database drivers raise many types for these, wrapped in one another, so they are
recognised by what the chain of errors says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import mlflow
import optuna

from searcher.search.studies import StudyStorageLost

UNREACHABLE = (  # the store does not answer, or answers "later"
    "database is locked",
    "connection refused",
    "connection reset",
    "connection aborted",
    "timed out",
    "timeout",
    "temporarily unavailable",
    "max retries exceeded",
    "503",
    "502",
    "504",
    "429",
    "server closed the connection",
    "could not connect",
)
UNWRITABLE = (  # the store answers, but its files cannot be written (or are gone)
    "attempt to write a readonly database",  # SQLite: the file made read-only, or removed (moved) under an open connection
    "unable to open database file",  # SQLite: its folder made read-only or removed
    "disk i/o error",  # SQLite: the file made immutable
    "no such table",  # SQLite: the file removed, an empty one created in its place
    "database or disk is full",
    "no space left on device",
    "read-only file system",
    "permission denied",
    "operation not permitted",
    "input/output error",
)
Store = Literal["tracking", "optuna"]


class TrackingLost(Exception):
    """The tracking store kept failing through every retry (tracking/retry.py): `store` (password masked), `cause`."""

    def __init__(self, store: str, cause: str, seconds: float):
        super().__init__(f"the tracking store {store} failed for {seconds:.0f} s ({cause})")
        self.store, self.cause, self.seconds = store, cause, seconds


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the errors it was raised from or during, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def store_fault(error: BaseException) -> str | None:
    """What went wrong, in one line, when `error` says a store is unreachable or unwritable; None for anything else."""
    found = None
    for link in chain(error):
        text = f"{type(link).__name__}: {link}".lower()
        if type(link).__name__ == "_RemoteTraceback":  # a worker process's traceback text, attached by concurrent.futures
            continue
        if isinstance(link, (ConnectionError, TimeoutError)) or any(marker in text for marker in UNREACHABLE + UNWRITABLE):
            first_line = next(iter(str(link).strip().splitlines()), "")
            kind = "" if isinstance(link, StudyStorageLost) else f"{type(link).__name__}: "  # (it quotes the storage's error)
            found = f"{kind}{first_line}"[:300]  # the innermost says it most plainly (sqlite3's own error)
    return found


OPTUNA_FILES, MLFLOW_FILES = (str(Path(str(package.__file__)).parent) for package in (optuna, mlflow))


def failed_store(error: BaseException) -> Store | None:
    """The store whose failure `error` is ("optuna": the Optuna storage, "tracking": MLflow's), or None when it is not a store's."""
    if store_fault(error) is None:
        return None
    for link in chain(error):
        if isinstance(link, TrackingLost):
            return "tracking"
        if isinstance(link, (StudyStorageLost, optuna.exceptions.StorageInternalError)) or raised_in(link, OPTUNA_FILES):
            return "optuna"
    if any(raised_in(link, MLFLOW_FILES) for link in chain(error)):
        return "tracking"  # MLflow's own calls outside the retrying client (logging the model)
    return None


def raised_in(error: BaseException, folder: str) -> bool:
    """Whether any frame of `error`'s traceback is code under `folder`."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.startswith(folder):
            return True
        frame = frame.tb_next
    return False
