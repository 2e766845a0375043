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


def install() -> None:
    global _requested, _leaving
    _requested, _leaving = None, False
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def restore() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if _leaving else signal.SIG_DFL)


def ignore_sigterm() -> None:
    """Under submitit, SIGUSR2 (time limit near) requeues the job and exits; SLURM's SIGTERM that follows
    must not cut short the runs being marked KILLED. SIGUSR2 itself is left to submitit's handler."""
    global _leaving
    _leaving = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check() -> None:
    """Raise Interrupted if a signal asked to stop (and its first raise was swallowed)."""
    if _requested is not None:
        raise Interrupted(_requested)
