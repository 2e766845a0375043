"""Crash points, a test hook: kill this process (SIGKILL) at a named point of a trial's life, deterministically.

`SEARCHER_CRASH_AT=trial.told:3` kills the process the 3rd time it passes `crash_point("trial.told")`;
several points are comma separated, and the first one reached kills. Passes are counted in this process
only (a re-run counts afresh; a worker process that reaches a point kills itself, not the search). The
resume tests (tests/test_crash_points.py) use it to stop a search at every point of a trial's life
without depending on timing, then check that the re-run decides exactly as an uninterrupted search.

Unset, as it always is outside those tests, a call costs one dict lookup. Plain stdlib on purpose: the
trainer, which imports no orchestration library, calls it too.
"""

from __future__ import annotations

import os
import signal

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


def parse(spec: str) -> dict[str, int]:
    """`name:count,name:count` -> {name: count} (count 1 when left out); a point nothing calls is an error, not a silent no-op."""
    targets: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"{ENV}={spec!r}: {name!r} is not a crash point; the points are {', '.join(POINTS)}")
        if count and not (count.isdigit() and int(count) >= 1):
            raise ValueError(f"{ENV}={spec!r}: {item!r} needs a count of 1 or more after the colon")
        targets[name] = int(count or 1)
    return targets


_targets = parse(os.environ.get(ENV, ""))
_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here, by SIGKILL (no handler, no cleanup: as a lost machine would), if `SEARCHER_CRASH_AT` names this pass."""
    if name not in _targets:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == _targets[name]:
        os.kill(os.getpid(), signal.SIGKILL)
