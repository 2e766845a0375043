"""Trials grouped into the candidates a stage compared: one network (or setting) and its seeds.

A stage decides on candidates, not on single trials: "d3 +w32" is scored by the mean over
its seeds ("d3 +w32", "d3 +w32 r1", ...), the number its decision quotes. Figures plot
that mean with the seeds around it, and the report's tables list every candidate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from searcher.tracking.records import TrialRecord

SEED_SUFFIX = re.compile(r"( r\d+)?( \(warm\))?$")  # "d3 +w32 r2 (warm)" -> "d3 +w32"


def candidate_name(trial: TrialRecord) -> str:
    return SEED_SUFFIX.sub("", trial.name)


def trial_score(trial: TrialRecord) -> float:
    """What decisions compare: the best mean over consecutive epochs (`score`), else the best epoch."""
    return trial.score


@dataclass(frozen=True)
class Candidate:
    name: str
    trials: tuple[TrialRecord, ...]  # its seeds, in the order they started (from any stage)
    stage: str | None = None  # the stage whose decision it carries

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(trial_score(t) for t in self.trials)

    @property
    def score(self) -> float:
        """The mean over its seeds; NaN when one failed (a failed seed fails the candidate)."""
        values = self.scores
        return sum(values) / len(values) if values and all(math.isfinite(v) for v in values) else math.nan

    @property
    def decision(self) -> str:
        """The decision its seeds were tagged with in `stage` (failed or pruned when any seed was)."""
        decisions = {t.decision for t in self.trials if self.stage is None or t.stage == self.stage}
        return next((d for d in ("failed", "pruned", "selected", "rejected") if d in decisions), "")

    @property
    def first(self) -> TrialRecord:
        return self.trials[0]


def candidates(trials: list[TrialRecord] | tuple[TrialRecord, ...], stage: str | None = None) -> list[Candidate]:
    """Candidates in the order their first seed started; `stage`: only those with a seed in that stage
    (whose seeds from earlier stages, e.g. the baseline's first seed in the width stage, still count)."""
    groups: dict[str, list[TrialRecord]] = {}
    for trial in sorted(trials, key=lambda t: t.started_ms):
        groups.setdefault(candidate_name(trial), []).append(trial)
    found = [Candidate(name, tuple(group), stage) for name, group in groups.items()]
    return [c for c in found if stage is None or any(t.stage == stage for t in c.trials)]
