"""Crash points, a test hook: kill this process (SIGKILL) at a named point of a trial's life, deterministically.
Or hold it there until a signal ends it (`SEARCHER_HOLD_AT`), so a scheduler's signal lands mid-search, not by chance.

`SEARCHER_CRASH_AT=trial.told:3` kills the process the 3rd time it passes `crash_point("trial.told")`;
several points are comma separated, and the first one reached kills. Passes are counted in this process
only (a re-run counts afresh; a worker process that reaches a point kills itself, not the search). The
resume tests (tests/test_crash_points.py) use it to stop a search at every point of a trial's life
without depending on timing, then check that the re-run decides exactly as an uninterrupted search.

`SEARCHER_HOLD_AT=stage.ended:1` with `SEARCHER_HOLD_MARKER=FILE` instead waits at that pass, sleeping, until a
signal's handler ends the process (at most HOLD_SECONDS), once: the hold writes FILE, and a process that finds it
goes on, so the job a scheduler requeues runs through (tests/test_slurm.py holds a search until its time limit, and
one job of a multirun mid-trial until scancel).

Unset, as they always are outside those tests, a call costs one dict lookup. Plain stdlib on purpose: the
trainer, which imports no orchestration library, calls it too.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "SEARCHER_CRASH_AT"

POINTS = {
    "trial.asked": "a regularization trial created in its Optuna study, before its parameters are sampled",
    "trial.started": "a trial's run opened (RUNNING), before it trains",
    "trial.epoch": "a trial's epoch trained (after its callback and checkpoint), in the process training it",
    "trial.finished": "a trial's outcome back in the runner, before its run records it",
    "trial.recorded": "a trial's run recorded and ended, before its stage's study is told",
    "trial.told": "a trial told to (or added to) its stage's Optuna study",
    "stage.ended": "a stage decided and its run ended, before the next stage starts",
}


def parse(spec: str, env: str = ENV) -> dict[str, int]:
    """`name:count,name:count` -> {name: count} (count 1 when left out); a point nothing calls is an error, not a silent no-op."""
    targets: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"{env}={spec!r}: {name!r} is not a crash point; the points are {', '.join(POINTS)}")
        if count and not (count.isdigit() and int(count) >= 1):
            raise ValueError(f"{env}={spec!r}: {item!r} needs a count of 1 or more after the colon")
        targets[name] = int(count or 1)
    return targets


HOLD_ENV, HOLD_MARKER_ENV = "SEARCHER_HOLD_AT", "SEARCHER_HOLD_MARKER"
HOLD_SECONDS = 300.0  # a hold no signal ends gives up: the test then fails on its own asserts, it does not hang

_targets = parse(os.environ.get(ENV, ""))
_holds = parse(os.environ.get(HOLD_ENV, ""), HOLD_ENV)
_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here, by SIGKILL (no handler, no cleanup: as a lost machine would), if `SEARCHER_CRASH_AT` names this pass;
    or wait here for a signal, if `SEARCHER_HOLD_AT` does."""
    if name not in _targets and name not in _holds:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == _targets.get(name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _passes[name] == _holds.get(name):
        hold()


def hold() -> None:
    """Sleep until a signal's handler ends the process; once per marker file (a requeued job goes on). Of two processes
    that reach the point at once (two jobs of a multirun) exactly one holds: the marker is created exclusively, and it
    names the process held, so a test can signal that one."""
    marker = Path(os.environ.get(HOLD_MARKER_ENV) or "searcher-hold")
    try:
        with marker.open("x") as file:
            file.write(f"held by pid {os.getpid()}\n")
    except FileExistsError:
        return
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.1)
