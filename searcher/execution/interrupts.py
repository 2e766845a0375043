"""SIGINT/SIGTERM stop a search within seconds, closing every open run on the way out.

The handler raises `Interrupted` in the main thread. Python swallows an exception
raised while a finaliser or weakref callback happens to be running, and prints it
("Exception ignored in ...", a traceback: seen when SIGTERM came in the first
seconds of stage 0, while SQLAlchemy's class registry was being collected). Such a
swallowed stop is not printed but delivered again moments later, in ordinary code;
and the handler records the request, and the runner calls `check()` between trials
and after every epoch: the stop cannot get lost.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

EXIT_SIGINT, EXIT_SIGTERM = 130, 143
REDELIVER_SECONDS = 0.01  # after a swallowed stop: long enough for the collection that swallowed it to end
_requested: int | None = None
_signal: int | None = None  # the signal that asked to stop (delivered again when its raise was swallowed)
_raised = _swallowed = 0  # Interrupted raised, and swallowed by Python in a finaliser or weakref callback
_redelivery: threading.Timer | None = None
_unraisable_hook: Any = None  # sys.unraisablehook before `install`
_leaving = False  # a job scheduler is ending the process: SIGTERM stays ignored
_scheduler: Any = None  # the job's own SIGUSR2 handler (submitit's requeue), called after SIGTERM is ignored


class Interrupted(BaseException):
    """Not an Exception: no `except Exception` on the way up may swallow it."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


def _handler(signum: int, frame: Any) -> None:
    global _requested, _signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C exits at once
    if _requested is not None and _raised > _swallowed:
        return  # a stop is already on its way up: closing the runs must not be cut short
    _requested, _signal = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM, signum
    _raise()


def _raise() -> None:
    global _raised
    assert _requested is not None
    _raised += 1
    raise Interrupted(_requested)


def _unraisable(unraisable: Any) -> None:
    """sys.unraisablehook: a stop Python swallowed in a finaliser or weakref callback is delivered again, unprinted."""
    global _swallowed, _redelivery
    if not isinstance(unraisable.exc_value, Interrupted):
        (_unraisable_hook or sys.__unraisablehook__)(unraisable)
        return
    _swallowed += 1
    if _signal is not None and not _leaving and threading.current_thread() is threading.main_thread():
        signal.signal(_signal, _handler)  # (SIGINT's was reset for a second Ctrl-C)
        _redelivery = threading.Timer(REDELIVER_SECONDS, os.kill, (os.getpid(), _signal))
        _redelivery.daemon = True
        _redelivery.start()


def _scheduler_signal(signum: int, frame: Any) -> None:
    """SIGUSR2 under submitit: ignore SIGTERM first, then let submitit requeue the job and exit.

    `scontrol requeue` makes SLURM send SIGTERM at once, which can arrive while submitit's handler
    is still running; taken as a stop, it ended the search with exit 143 and the launcher reported
    the job failed while SLURM ran it again (seen on a real SLURM under load). When submitit does
    not requeue (timed out `max_num_timeout` times) its handler raises an error, which a trial's
    `except Exception` took for a failed trial and the search went on until SLURM killed it: it
    stops the search instead, as SIGTERM would.
    """
    global _requested, _raised
    ignore_sigterm()
    try:
        _scheduler(signum, frame)
    except Exception as error:
        _requested, _raised = EXIT_SIGTERM, _raised + 1
        raise Interrupted(EXIT_SIGTERM) from error


def install() -> None:
    global _requested, _signal, _raised, _swallowed, _leaving, _scheduler, _unraisable_hook
    _requested, _signal, _raised, _swallowed, _leaving = None, None, 0, 0, False
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
    global _requested, _signal, _scheduler, _unraisable_hook, _redelivery
    if _redelivery is not None:
        _redelivery.cancel()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if _leaving else signal.SIG_DFL)
    if _scheduler is not None and signal.getsignal(signal.SIGUSR2) is _scheduler_signal:
        signal.signal(signal.SIGUSR2, _scheduler)
    if sys.unraisablehook is _unraisable:
        sys.unraisablehook = _unraisable_hook or sys.__unraisablehook__
    _requested, _signal, _scheduler, _unraisable_hook, _redelivery = None, None, None, None, None


def ignore_sigterm() -> None:
    """Under submitit, SIGUSR2 (time limit near, or preemption) requeues the job and exits; SLURM's SIGTERM
    that follows must neither turn the requeue into a stop nor cut short the runs being marked KILLED."""
    global _leaving
    _leaving = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check() -> None:
    """Raise Interrupted if a signal asked to stop (and its first raise was swallowed)."""
    if _requested is not None:
        _raise()
