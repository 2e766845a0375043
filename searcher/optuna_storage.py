"""The Optuna storage a string names, opened once per process: the search's studies and the search's lease live in it.

`sqlite:///optuna.db` (one machine), `postgresql://user@host/db` (a cluster), or `journal:///path/optuna.log`
(Optuna's journal file: an NFS cluster without a database server; SQLite's file locking is unreliable on NFS).
Its own module, below the search and the tracking layers, so a process that only takes a lease imports Optuna and
SQLAlchemy, not the trainer and PyTorch.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy

from searcher.uris import with_driver

JOURNAL_PREFIX = "journal:///"
SQLITE_LOCK_WAIT_SECONDS = 60.0  # a write waits this long for another process's transaction on the same file


def absolute_storage(spec: str) -> str:
    """The same storage with an absolute file path, so worker processes and jobs in other folders find it."""
    for prefix in ("sqlite:///", JOURNAL_PREFIX):
        if spec.startswith(prefix) and not spec.startswith(prefix + "/") and ":memory:" not in spec:
            return prefix + str(Path(spec.removeprefix(prefix)).expanduser().resolve())
    return spec


@functools.lru_cache(maxsize=8)
def open_storage(spec: str) -> str | optuna.storages.BaseStorage:
    """What optuna.create_study/load_study accept for a storage string (one object per process and spec)."""
    if spec.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        path = Path(spec.removeprefix(JOURNAL_PREFIX))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if spec.startswith("sqlite:") and ":memory:" not in spec:
        storage = optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": SQLITE_LOCK_WAIT_SECONDS}}, heartbeat_interval=None)
        queue_sqlite_transactions(storage.engine)
        return storage
    return optuna.storages.RDBStorage(with_driver(spec), heartbeat_interval=None)


def queue_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Every transaction on this SQLite file begins IMMEDIATE: processes sharing the file wait their turn.

    Optuna reads, then writes, in one transaction. Begun deferred (pysqlite's default), two processes doing so at once
    deadlock: each holds a read lock the other's write must wait for, and SQLite answers the second "database is
    locked" at once instead of waiting (CI: two SLURM jobs of a multirun on one optuna.db, exit 75 under load).
    Begun IMMEDIATE, a transaction takes the write lock first, so the other waits up to SQLITE_LOCK_WAIT_SECONDS
    (SQLAlchemy's pysqlite recipe: the driver's own BEGIN turned off, ours emitted)."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def no_driver_begin(connection: Any, record: Any) -> None:
        connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections that created the tables were opened before these listeners
