"""SIGINT/SIGTERM stop a search within seconds, closing every open run on the way out.

The handler raises `Interrupted` in the main thread. Python swallows an exception
raised while a finaliser or weakref callback happens to be running ("Exception
ignored in ..."), so the handler also records the request, and the runner calls
`check()` between trials and after every epoch: the stop cannot get lost.
"""

from __future__ import annotations

import signal
from typing import Any

EXIT_SIGINT, EXIT_SIGTERM = 130, 143
_requested: int | None = None
_leaving = False  # a job scheduler is ending the process: SIGTERM stays ignored
_scheduler: Any = None  # the job's own SIGUSR2 handler (submitit's requeue), called after SIGTERM is ignored


class Interrupted(BaseException):
    """Not an Exception: no `except Exception` on the way up may swallow it."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


def _handler(signum: int, frame: Any) -> None:
    global _requested
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C exits at once
    _requested = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
    raise Interrupted(_requested)


def _scheduler_signal(signum: int, frame: Any) -> None:
    """SIGUSR2 under submitit: ignore SIGTERM first, then let submitit requeue the job and exit.

    `scontrol requeue` makes SLURM send SIGTERM at once, which can arrive while submitit's handler
    is still running; taken as a stop, it ended the search with exit 143 and the launcher reported
    the job failed while SLURM ran it again (seen on a real SLURM under load). When submitit does
    not requeue (timed out `max_num_timeout` times) its handler raises an error, which a trial's
    `except Exception` took for a failed trial and the search went on until SLURM killed it: it
    stops the search instead, as SIGTERM would.
    """
    global _requested
    ignore_sigterm()
    try:
        _scheduler(signum, frame)
    except Exception as error:
        _requested = EXIT_SIGTERM
        raise Interrupted(EXIT_SIGTERM) from error


def install() -> None:
    global _requested, _leaving, _scheduler
    _requested, _leaving = None, False
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    current = signal.getsignal(signal.SIGUSR2)
    if callable(current) and current is not _scheduler_signal:  # a job scheduler's handler (submitit's)
        _scheduler = current
        signal.signal(signal.SIGUSR2, _scheduler_signal)


def restore() -> None:
    """The handlers as before `install`; a stop asked for is forgotten, so a later search in this process
    (a test session, a notebook) does not stop at its first `check`."""
    global _requested, _scheduler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if _leaving else signal.SIG_DFL)
    if _scheduler is not None and signal.getsignal(signal.SIGUSR2) is _scheduler_signal:
        signal.signal(signal.SIGUSR2, _scheduler)
    _requested, _scheduler = None, None


def ignore_sigterm() -> None:
    """Under submitit, SIGUSR2 (time limit near, or preemption) requeues the job and exits; SLURM's SIGTERM
    that follows must neither turn the requeue into a stop nor cut short the runs being marked KILLED."""
    global _leaving
    _leaving = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check() -> None:
    """Raise Interrupted if a signal asked to stop (and its first raise was swallowed)."""
    if _requested is not None:
        raise Interrupted(_requested)
