"""The search lease: a search name is owned by one live process at a time.

Two processes on one `search.name` both trained and recorded, and each took the other's live
trial for a dead one (issue 14). Before a search reads or writes anything of its own it takes the
name's lease, kept where its Optuna studies are (lease_store.py: a table of the SQL storage, or a
file beside a journal):

- taken when there is none: of two simultaneous starts exactly one inserts it;
- kept by a heartbeat thread that renews it every lease/6 seconds on the store's clock, as Optuna's
  RDBStorage heartbeat does (`heartbeat_interval`, stale after a grace period, measured on the
  database server). Optuna's own heartbeat cannot be the claim: it is per trial and says whether a
  trial is stale, never who owns a study;
- taken over only from a dead owner: no heartbeat for the owner's `tracking.lease_seconds`, or, on
  the same machine, its process gone (pid and start time: a reused pid is not mistaken for it).
  The takeover replaces the lease only while it still holds the dead owner's token: one of two wins;
- released when the search ends, however it ends short of kill -9.

Runs carry their owner (`Owner.tag`, the `searcher.owner` tag), so a resume under a taken-over
lease says whose the RUNNING runs it marks were and why that owner is known to be dead. A process
whose lease was taken over (stopped for longer than its lease: SIGSTOP, a suspended VM) learns it
at its next heartbeat and is stopped (SIGTERM in its main thread) without touching the runs, which
belong to the new owner; but for the trial runs it opened after the takeover, before it noticed, which the new
owner never saw, and those whose record it finished after the new owner had marked them (a stop waits for the
record it comes in): it marks those FAILED itself (`Recorder.close_trials_left_behind`).
"""

from __future__ import annotations

import _thread
import hashlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searcher.tracking.lease_store import LeaseStore, Owner, open_lease_store
from searcher.uris import redact, redact_text

BEATS_PER_LEASE = 6  # a lease outlives five missed heartbeats (a busy database, a stalled thread)


class LeaseTaken(Exception):
    """Another live process owns the search name; the message names it and what to do."""


class LeaseError(Exception):
    """The lease's store could not be used; the message names it."""


@dataclass(frozen=True)
class TakenOver:
    """The dead owner a lease was taken from, and how it was known to be dead."""

    owner: Owner
    why: str  # "its process is gone", "its SLURM job was requeued", "no heartbeat for 75 s (its lease: 60 s)"


def process_key(pid: int) -> str | None:
    """'<boot id>/<pid namespace>/<start time>' of a live process of this machine; None when there is none."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # a zombie is dead: only its parent has not collected it yet
        return None
    return f"{boot}/{namespace}/{fields[19]}"  # field 22 of proc(5): the start time, in clock ticks after boot


def this_job() -> str:
    """'<job id>/<restart count>' inside a SLURM job, else ''."""
    job = os.environ.get("SLURM_JOB_ID")
    return f"{job}/{os.environ.get('SLURM_RESTART_COUNT', '0')}" if job else ""


def gone(owner: Owner) -> str | None:
    """How `owner` is known dead without waiting for its lease to expire (None: it is not known): it ran on this
    machine (same boot, same pid namespace) and its process no longer exists, or it was an earlier run of this
    SLURM job, which SLURM runs again (requeued) only once that run has ended."""
    job = this_job()
    if owner.job and job and owner.job.split("/")[0] == job.split("/")[0] and owner.job != job:
        return "its SLURM job was requeued"
    mine = process_key(os.getpid())
    if not mine or not owner.process or owner.process.rsplit("/", 1)[0] != mine.rsplit("/", 1)[0]:
        return None  # another machine, or no way to tell: only the heartbeat can say
    return "its process is gone" if process_key(owner.pid) != owner.process else None


def search_key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def interrupt_main() -> None:
    """What a lost lease does by default: SIGTERM in the main thread, which the search's handler turns into a stop."""
    _thread.interrupt_main(signal.SIGTERM)


def retrying(action: Callable[[], Any], attempts: int = 6) -> Any:
    """`action`, again after a short wait while the database is locked or briefly unreachable."""
    from searcher.tracking.faults import store_fault

    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            if attempt == attempts or store_fault(error) is None:
                raise
            time.sleep(0.25 * attempt)


class Lease:
    """A held lease: renewed by a heartbeat thread until `release`."""

    def __init__(
        self, store: LeaseStore, name: str, owner: Owner, seconds: float, previous: TakenOver | None, on_lost: Callable[[], None]
    ) -> None:
        self._store = store
        self._key = search_key(name)
        self.name = name
        self.owner = owner
        self.seconds = seconds
        self.previous = previous
        self.lost = threading.Event()  # set when another process took the lease over
        self._on_lost = on_lost
        self._losing = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="search-lease", daemon=True)
        self._thread.start()
        self._continue_handler: Any = None
        if threading.current_thread() is threading.main_thread():
            # Continued after a stop (Ctrl-Z then fg, SIGSTOP then SIGCONT): check the lease before the main thread
            # records anything more; the heartbeat thread would notice only a moment later.
            self._continue_handler = signal.signal(signal.SIGCONT, self._continued)

    def _renew(self) -> bool:
        """False when the lease is no longer this process's (it was taken over); True also when the store did not answer."""
        try:
            held = self._store.renew(self._key, self.owner.token)
        except Exception:  # the store is busy or briefly away: the next beat tries again
            return True
        if not held:
            with self._losing:  # (the heartbeat thread and the SIGCONT handler may both find it; react once)
                if self.lost.is_set():
                    return False
                self.lost.set()
            self._on_lost()
        return held

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / BEATS_PER_LEASE):
            if not self._renew():
                return

    def _continued(self, signum: int, frame: Any) -> None:
        if not self.lost.is_set():
            self._renew()

    def lost_message(self) -> str:
        return (
            f"this process lost search {self.name} to another one, which took its lease over while this process did not "
            f"renew it (stopped or stalled for more than {self.seconds:g} s); it stopped without touching the search's runs (but for any trial it opened or finished recording after that, marked FAILED: the other one retrains it)."
        )

    def orphan_note(self, run_owner: str | None) -> str:
        """Why a run found RUNNING while this lease is held is dead: no live process owns the search but this one."""
        if self.previous is not None and run_owner == self.previous.owner.tag():
            whose = f"{run_owner}, whose lease was taken over ({self.previous.why})"
        else:
            whose = f"{run_owner or 'a process that kept no lease'}, which no longer held the search's lease"
        return f"left RUNNING by {whose}; marked FAILED by {self.owner.describe()}"

    def release(self) -> None:
        """Stop the heartbeat and give the name back (a lease that could not be deleted expires by itself)."""
        self._stop.set()
        self._thread.join(timeout=30)
        if self._continue_handler is not None:
            signal.signal(signal.SIGCONT, self._continue_handler)
        try:
            if not self.lost.is_set():
                retrying(lambda: self._store.delete(self._key, self.owner.token))
        except Exception:
            pass
        finally:
            self._store.close()


def taken_message(name: str, owner: Owner, age: float, seconds: float) -> str:
    return (
        f"search.name={name} is in use by {owner.describe()} (last heartbeat {age:.0f} s ago); wait until that search "
        f"ends, or choose another search.name (if that process is dead, its lease expires {seconds:g} s after its last heartbeat)."
    )


def acquire(optuna_storage: str, name: str, seconds: float, on_lost: Callable[[], None] = interrupt_main) -> Lease:
    """The lease of search `name`, taken now or from a dead owner; LeaseTaken names a live owner."""
    since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    me = Owner(socket.gethostname(), os.getpid(), since, process_key(os.getpid()) or "", uuid.uuid4().hex, this_job())
    store = None
    try:
        store = retrying(lambda: open_lease_store(optuna_storage))
        return retrying(lambda: claim(store, name, me, seconds, on_lost))
    except LeaseTaken:
        if store is not None:
            store.close()
        raise
    except Exception as error:
        if store is not None:
            store.close()
        text = redact_text(f"{type(error).__name__}: {error}", optuna_storage)[:500]
        raise LeaseError(
            f"the search's lease could not be kept in tracking.optuna_storage={redact(optuna_storage)} ({text}); "
            "make it writable and reachable, or point tracking.optuna_storage elsewhere."
        ) from None


def claim(store: LeaseStore, name: str, me: Owner, seconds: float, on_lost: Callable[[], None]) -> Lease:
    """One attempt (retried on a busy store): insert the lease, or take it over from a dead owner."""
    key = search_key(name)
    for _ in range(5):  # (a name that changes hands five times while this process looks is held by someone)
        if store.insert(key, name, me, seconds):
            return Lease(store, name, me, seconds, None, on_lost)
        found = store.read(key)
        if found is None:
            continue  # released meanwhile: insert again
        held, now = found
        if held.owner.token == me.token:  # an earlier attempt's write went through before its error
            return Lease(store, name, me, seconds, None, on_lost)
        age = now - held.heartbeat
        why = gone(held.owner) or (f"no heartbeat for {age:.0f} s (its lease: {held.seconds:g} s)" if age > held.seconds else None)
        if why is None:
            raise LeaseTaken(taken_message(name, held.owner, age, held.seconds))
        if store.replace(key, held.owner.token, name, me, seconds):
            return Lease(store, name, me, seconds, TakenOver(held.owner, why), on_lost)
    raise LeaseTaken(f"search.name={name} changed hands repeatedly while this process tried to take it; wait, or choose another search.name.")
