"""SIGINT/SIGTERM stop a search within seconds, closing every open run on the way out.

The handler raises `Interrupted` in the main thread. Python swallows an exception
raised while a finaliser or weakref callback happens to be running, and prints it
("Exception ignored in ...", a traceback: seen when SIGTERM came in the first
seconds of stage 0, while SQLAlchemy's class registry was being collected). Such a
swallowed stop is not printed but delivered again moments later, in ordinary code (never
while the hook that arranges this still runs);
and the handler records the request, and the runner calls `check()` between trials
and after every epoch: the stop cannot get lost.

Nor is it raised while the search records (inside MLflow, SQLAlchemy, an Optuna storage, or
searcher's own tracking layer): there it could leave a transaction open and the database locked
by this process, or a finished trial's record half made (retrained by the re-run). The handler sees
where the main thread is, and there it sends the signal again moments later instead, until the
record is made. A job scheduler's SIGUSR2 (submitit's requeue, which exits) waits the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

EXIT_SIGINT, EXIT_SIGTERM = 130, 143
REDELIVER_SECONDS = 0.01  # after a swallowed or deferred stop: long enough for the collection or store call to end
MAX_DEFER_SECONDS = 5.0  # a store call that outlasts this (a server that stopped answering) is cut all the same
_deferred_since: float | None = None  # when the stop waiting for a store call to end first came
_requested: int | None = None
_signal: int | None = None  # the signal that asked to stop (delivered again when its raise was swallowed)
_raised = _swallowed = 0  # Interrupted raised, and swallowed by Python in a finaliser or weakref callback
_redelivery: threading.Timer | None = None
_generation = 0  # one per install and restore: a timer of an earlier search, late to run under load, sends nothing
_requeue_deferred_since: float | None = None  # when the scheduler's SIGUSR2 waiting for a record to be made first came
_requeue_waiting = False  # that SIGUSR2 is on its way again
_requeue_timer: threading.Timer | None = None  # sends it
_requeued = False  # the scheduler's handler was called: the job is leaving
_unraisable_hook: Any = None  # sys.unraisablehook before `install`
_leaving = False  # a job scheduler is ending the process: SIGTERM stays ignored
_scheduler: Any = None  # the job's own SIGUSR2 handler (submitit's requeue), called after SIGTERM is ignored


class Interrupted(BaseException):
    """Not an Exception: no `except Exception` on the way up may swallow it."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


def _handler(signum: int, frame: Any) -> None:
    global _requested, _signal, _deferred_since
    if _requested is not None and _raised > _swallowed:
        return  # a stop is already on its way up: closing the runs must not be cut short
    _requested, _signal = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM, signum
    if _deferred_since is None:
        _deferred_since = time.monotonic()
    if waits_for_the_record(frame, _deferred_since):
        _deliver_again(REDELIVER_SECONDS)  # raised here it would cut a write in half: again once the call is done
        return
    if inside_the_unraisable_hook(frame):
        _deliver_again(REDELIVER_SECONDS)  # raised here it would be swallowed again, printed and lost: again once it returned
        return
    _raise()


# What records a search: MLflow, SQLAlchemy, Optuna's storages, and searcher's tracking layer (one record is several
# store calls: a trial's metrics and tags, its weights, its evidence, then FINISHED).
STORE_PACKAGES = ("mlflow", "sqlalchemy", os.path.join("optuna", "storages"), os.path.join("searcher", "tracking"))


def inside_a_store(frame: Any) -> bool:
    """Is the main thread recording? MLflow's, SQLAlchemy's and Optuna's code is not written for an exception at any
    line: raised there, a stop left a transaction open and the database locked by this very process (closing the runs
    on the way out waited on that lock: a search in trial threads stopped by Ctrl-C hung for minutes, and trial threads
    reporting epochs waited on it too), or an artifact's file closed twice (OSError instead of a stop). Raised between
    two calls of one record, it left a finished trial KILLED without its evidence, and the re-run trained it again."""
    while frame is not None:
        if any(f"{os.sep}{package}{os.sep}" in frame.f_code.co_filename for package in STORE_PACKAGES):
            return True
        frame = frame.f_back
    return False


def inside_the_unraisable_hook(frame: Any) -> bool:
    """Is the main thread in `_unraisable`, starting the redelivery of a swallowed stop? An exception raised there is
    swallowed too, but printed ("Exception ignored in sys.unraisablehook") and never delivered again: the stop was lost
    when, on a busy machine, the redelivery's timer fired before its thread had finished starting (the flake hunt)."""
    while frame is not None:
        if frame.f_code is _unraisable.__code__:
            return True
        frame = frame.f_back
    return False


def waits_for_the_record(frame: Any, since: float) -> bool:
    """A signal that came `since` waits while the main thread records, for at most MAX_DEFER_SECONDS."""
    return inside_a_store(frame) and time.monotonic() - since < MAX_DEFER_SECONDS


def _deliver_again(seconds: float) -> None:
    """The stop's signal, sent again in `seconds`: the handler runs once more, wherever the main thread is then."""
    global _redelivery
    assert _signal is not None
    pending, signum, generation = _raised - _swallowed, _signal, _generation

    def send() -> None:
        # Not raised meanwhile (by `check`: then SIGINT may be the default's again), and still the same search: a
        # timer cancelled by `restore` just after it woke (CI under load) must not stop the next search in this process.
        if _raised - _swallowed == pending and _generation == generation:
            os.kill(os.getpid(), signum)

    _redelivery = threading.Timer(seconds, send)
    _redelivery.daemon = True
    _redelivery.start()


def _requeue_later(signum: int) -> None:
    """SIGUSR2 sent again moments later; one on its way already stands for any that come meanwhile."""
    global _requeue_waiting, _requeue_timer
    if _requeue_waiting:
        return
    _requeue_waiting, generation = True, _generation

    def send() -> None:
        global _requeue_waiting
        if _generation != generation:
            return  # the search it was for is over (`restore`)
        _requeue_waiting = False
        os.kill(os.getpid(), signum)

    _requeue_timer = threading.Timer(REDELIVER_SECONDS, send)
    _requeue_timer.daemon = True
    _requeue_timer.start()


def _raise() -> None:
    global _raised, _deferred_since
    assert _requested is not None
    _deferred_since = None
    if _redelivery is not None:
        _redelivery.cancel()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C exits at once
    _raised += 1
    raise Interrupted(_requested)


def _unraisable(unraisable: Any) -> None:
    """sys.unraisablehook: a stop Python swallowed in a finaliser or weakref callback is delivered again, unprinted."""
    global _swallowed
    if not isinstance(unraisable.exc_value, Interrupted):
        (_unraisable_hook or sys.__unraisablehook__)(unraisable)
        return
    _swallowed += 1
    if _signal is not None and not _leaving and threading.current_thread() is threading.main_thread():
        signal.signal(_signal, _handler)  # (SIGINT's was reset for a second Ctrl-C)
        _deliver_again(REDELIVER_SECONDS)


def _scheduler_signal(signum: int, frame: Any) -> None:
    """SIGUSR2 under submitit: ignore SIGTERM first, then let submitit requeue the job and exit.

    `scontrol requeue` makes SLURM send SIGTERM at once, which can arrive while submitit's handler
    is still running; taken as a stop, it ended the search with exit 143 and the launcher reported
    the job failed while SLURM ran it again (seen on a real SLURM under load). When submitit does
    not requeue (timed out `max_num_timeout` times) its handler raises an error, which a trial's
    `except Exception` took for a failed trial and the search went on until SLURM killed it: it
    stops the search instead, as SIGTERM would.
    """
    global _requeue_deferred_since
    ignore_sigterm()
    if _requeued:
        return  # the job is leaving already: closing its runs must not be cut short by a second requeue
    if _requeue_deferred_since is None:
        _requeue_deferred_since = time.monotonic()
    if waits_for_the_record(frame, _requeue_deferred_since):
        _requeue_later(signum)  # submitit's handler exits: not in the middle of a record
        return
    _requeue(signum, frame)


def _requeue(signum: int, frame: Any) -> None:
    """The scheduler's own handler, once: it requeues the job and exits."""
    global _requested, _raised, _requeued
    _requeued = True
    if _requeue_timer is not None:
        _requeue_timer.cancel()
    try:
        _scheduler(signum, frame)
    except Exception as error:
        _requested, _raised = EXIT_SIGTERM, _raised + 1
        raise Interrupted(EXIT_SIGTERM) from error


def install() -> None:
    global _requested, _signal, _raised, _swallowed, _leaving, _scheduler, _unraisable_hook, _deferred_since
    global _requeue_deferred_since, _requeued, _generation
    _generation += 1
    _requested, _signal, _raised, _swallowed, _leaving, _deferred_since = None, None, 0, 0, False, None
    _requeue_deferred_since, _requeued = None, False
    if sys.unraisablehook is not _unraisable:
        _unraisable_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    current = signal.getsignal(signal.SIGUSR2)
    if callable(current) and current is not _scheduler_signal:  # a job scheduler's handler (submitit's)
        _scheduler = current
        signal.signal(signal.SIGUSR2, _scheduler_signal)


def restore() -> None:
    """The handlers as before `install`; a stop asked for is forgotten, so a later search in this process
    (a test session, a notebook) does not stop at its first `check`."""
    global _requested, _signal, _scheduler, _unraisable_hook, _redelivery, _deferred_since, _requeue_waiting, _generation
    _generation += 1
    for timer in (_redelivery, _requeue_timer):
        if timer is not None:
            timer.cancel()
    _requeue_waiting = False
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if _leaving else signal.SIG_DFL)
    if _scheduler is not None and signal.getsignal(signal.SIGUSR2) is _scheduler_signal:
        signal.signal(signal.SIGUSR2, _scheduler)
    if sys.unraisablehook is _unraisable:
        sys.unraisablehook = _unraisable_hook or sys.__unraisablehook__
    _requested, _signal, _scheduler, _unraisable_hook, _redelivery, _deferred_since = None, None, None, None, None, None


def ignore_sigterm() -> None:
    """Under submitit, SIGUSR2 (time limit near, or preemption) requeues the job and exits; SLURM's SIGTERM
    that follows must neither turn the requeue into a stop nor cut short the runs being marked KILLED."""
    global _leaving
    _leaving = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check() -> None:
    """Raise Interrupted if a signal asked to stop (and its first raise was swallowed); requeue the job if the
    scheduler's SIGUSR2 waited for a record and its second delivery has not come yet (a busy machine: the search
    had run on to its end before that timer's thread ran, CI)."""
    if _requested is not None:
        _raise()
    if _requeue_deferred_since is not None and not _requeued and threading.current_thread() is threading.main_thread():
        _requeue(signal.SIGUSR2, sys._getframe())
