"""Where search leases are kept (the protocol: lease.py): a table in a SQL Optuna storage, or files beside a journal.

Every change is one atomic step, so that of two processes only one can win it:
inserting a lease that does not exist, replacing or renewing one only while it still
holds the token read, deleting one's own. Times are the store's clock: the database
server's (as Optuna's RDBStorage heartbeat uses), or, for a journal file on NFS, the
hosts' clocks (a cluster keeps them in step; the journal has no server clock).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from searcher.optuna_storage import JOURNAL_PREFIX, open_storage
from searcher.tracking.locks import creating
from searcher.uris import with_driver

KEEP = object()  # FileLeases: leave the lease file as it is
# What a process sees when another one created the same table (or PostgreSQL enum type) a moment before it.
CREATION_RACES = ("already exists", "duplicate key", "duplicate column", "unique constraint", "database is locked")


@dataclass(frozen=True)
class Owner:
    """A process holding (or having held) a search's lease."""

    host: str
    pid: int
    since: str  # when it took the lease, in its local time (for messages)
    process: str  # lease.process_key() at the start: '' where the system has no /proc
    token: str  # this holding's id: every change to the lease is conditioned on it
    job: str = ""  # a SLURM job: "<job id>/<restart count>" (a requeued job runs again under the same id)

    def describe(self) -> str:
        job = f" (SLURM job {self.job.split('/')[0]})" if self.job else ""
        return f"pid {self.pid} on host {self.host}{job} since {self.since}"

    def tag(self) -> str:
        """The value of `searcher.owner` on the runs it creates or reopens."""
        return f"{self.describe()} (lease {self.token[:8]})"


@dataclass(frozen=True)
class Held:
    """A lease as stored: its owner, its last heartbeat (store clock) and how long it lasts without one."""

    owner: Owner
    heartbeat: float
    seconds: float


class LeaseStore(Protocol):
    def insert(self, key: str, name: str, owner: Owner, seconds: float) -> bool: ...
    def read(self, key: str) -> tuple[Held, float] | None: ...  # the lease and the store's time now
    def replace(self, key: str, token: str, name: str, owner: Owner, seconds: float) -> bool: ...
    def renew(self, key: str, token: str) -> bool: ...
    def delete(self, key: str, token: str) -> None: ...
    def close(self) -> None: ...


def open_lease_store(optuna_storage: str) -> LeaseStore:
    """The leases of the searches whose studies are in `optuna_storage` (the shared storage of their processes)."""
    if optuna_storage.startswith(JOURNAL_PREFIX):
        return FileLeases(Path(optuna_storage.removeprefix(JOURNAL_PREFIX)))
    for attempt in range(1, 6):
        try:
            with creating(optuna_storage):  # Optuna's tables first, by one process at a time on a new SQLite file (locks.py)
                open_storage(optuna_storage)  # (kept open: the search's studies use this same storage object)
                return SqlLeases(optuna_storage)
        except Exception as error:  # on a new server database, processes starting together race to create the tables
            if attempt == 5 or not any(marker in str(error).lower() for marker in CREATION_RACES):
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


TABLE = sa.Table(
    "searcher_leases",
    sa.MetaData(),
    sa.Column("search_key", sa.String(64), primary_key=True),  # sha256 of the name: any name fits a key
    sa.Column("search_name", sa.Text, nullable=False),
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("process", sa.String(255), nullable=False),
    sa.Column("since", sa.String(64), nullable=False),
    sa.Column("job", sa.String(255), nullable=False),
    sa.Column("heartbeat", sa.Double, nullable=False),  # the database server's clock, in seconds
    sa.Column("seconds", sa.Double, nullable=False),
)


def server_clock(dialect: str) -> Any:
    """The database server's time in seconds, as SQL (the client's clock for a dialect without one here)."""
    if dialect == "sqlite":
        return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")
    if dialect == "postgresql":
        return sa.literal_column("extract(epoch from clock_timestamp())")
    if dialect in ("mysql", "mariadb"):
        return sa.literal_column("unix_timestamp(now(6))")
    return sa.literal(time.time(), sa.Double)


class SqlLeases:
    """The table `searcher_leases` in a SQL database: the primary key and conditional UPDATEs make each change atomic."""

    def __init__(self, uri: str) -> None:
        self.engine = sa.create_engine(with_driver(uri), poolclass=sa.pool.NullPool)
        try:
            TABLE.metadata.create_all(self.engine, checkfirst=True)
        except Exception:  # (another process may have created it between the check and the CREATE: the caller retries)
            self.engine.dispose()
            raise

    def _clock(self) -> Any:
        return server_clock(self.engine.dialect.name)

    @staticmethod
    def _values(name: str, owner: Owner, seconds: float) -> dict[str, Any]:
        return dict(search_name=name, seconds=seconds, **asdict(owner))

    @staticmethod
    def _held(key: str, token: str) -> Any:
        return (TABLE.c.search_key == key) & (TABLE.c.token == token)

    def insert(self, key: str, name: str, owner: Owner, seconds: float) -> bool:
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(TABLE).values(search_key=key, heartbeat=self._clock(), **self._values(name, owner, seconds)))
            return True
        except sa.exc.IntegrityError:
            return False

    def read(self, key: str) -> tuple[Held, float] | None:
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(TABLE, self._clock().label("now")).where(TABLE.c.search_key == key)).first()
        if row is None:
            return None
        owner = Owner(row.host, row.pid, row.since, row.process, row.token, row.job)
        return Held(owner, float(row.heartbeat), float(row.seconds)), float(row.now)

    def replace(self, key: str, token: str, name: str, owner: Owner, seconds: float) -> bool:
        with self.engine.begin() as connection:
            update = sa.update(TABLE).where(self._held(key, token)).values(heartbeat=self._clock(), **self._values(name, owner, seconds))
            return connection.execute(update).rowcount == 1

    def renew(self, key: str, token: str) -> bool:
        with self.engine.begin() as connection:
            return connection.execute(sa.update(TABLE).where(self._held(key, token)).values(heartbeat=self._clock())).rowcount == 1

    def delete(self, key: str, token: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(TABLE).where(self._held(key, token)))

    def close(self) -> None:
        self.engine.dispose()


class FileLeases:
    """One JSON file per lease in `<journal>.leases/`, each change made under Optuna's journal lock (O_EXCL: works on NFS)."""

    def __init__(self, journal: Path) -> None:
        self.folder = journal.with_name(journal.name + ".leases")
        self.folder.mkdir(parents=True, exist_ok=True)

    def _change(self, key: str, change: Any) -> Any:
        """`change(current lease dict or None)` -> (KEEP, a new lease dict, or None to delete it; result), under the lock."""
        from optuna.storages.journal import JournalFileOpenLock

        path = self.folder / f"{key}.json"
        lock = JournalFileOpenLock(str(path))
        lock.acquire()
        try:
            new, result = change(json.loads(path.read_text()) if path.exists() else None)
            if new is None:
                path.unlink(missing_ok=True)
            elif new is not KEEP:
                temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                temporary.write_text(json.dumps(new))
                os.replace(temporary, path)  # readers see the old lease or the new one, never half of one
            return result
        finally:
            lock.release()

    @staticmethod
    def _new(name: str, owner: Owner, seconds: float) -> dict[str, Any]:
        return dict(search_name=name, heartbeat=time.time(), seconds=seconds, **asdict(owner))

    def insert(self, key: str, name: str, owner: Owner, seconds: float) -> bool:
        return bool(self._change(key, lambda current: (self._new(name, owner, seconds), True) if current is None else (KEEP, False)))

    def read(self, key: str) -> tuple[Held, float] | None:
        try:
            found = json.loads((self.folder / f"{key}.json").read_text())
        except FileNotFoundError:
            return None
        owner = Owner(found["host"], found["pid"], found["since"], found["process"], found["token"], found["job"])
        return Held(owner, found["heartbeat"], found["seconds"]), time.time()

    def replace(self, key: str, token: str, name: str, owner: Owner, seconds: float) -> bool:
        def replaced(current: dict | None) -> tuple[Any, bool]:
            return (self._new(name, owner, seconds), True) if current and current["token"] == token else (KEEP, False)

        return bool(self._change(key, replaced))

    def renew(self, key: str, token: str) -> bool:
        def renewed(current: dict | None) -> tuple[Any, bool]:
            return ({**current, "heartbeat": time.time()}, True) if current and current["token"] == token else (KEEP, False)

        return bool(self._change(key, renewed))

    def delete(self, key: str, token: str) -> None:
        self._change(key, lambda current: (None, None) if current and current["token"] == token else (KEEP, None))

    def close(self) -> None:
        pass
