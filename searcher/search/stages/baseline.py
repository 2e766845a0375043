"""Stage 0: a small network, trained until its learning behaviour is stable."""

from __future__ import annotations

import math

import optuna

from searcher.search.plan import SearchPlan
from searcher.search.stages.base import SearchFailed, Stage, StageResult, fmt
from searcher.search.trials import Candidate, TrialOutcome, TrialRequest


class BaselineStage(Stage):
    """Stage 0: one small network, trained until stable."""

    name, index = "baseline", 0
    keeps_rung_values = True  # (the width stage's reference)

    def __init__(self, plan: SearchPlan, study: optuna.Study):
        super().__init__(plan, study)
        arch = plan.family.baseline(plan.baseline_depth, plan.baseline_width, plan.input_shape)
        params = (("depth", plan.baseline_depth), ("width", plan.baseline_width))
        self.candidate = Candidate(f"w{plan.baseline_width} d{plan.baseline_depth}", arch, plan.train, params)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.missing(self.candidate, done)

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        score = self.score_of(self.candidate, done)
        if score is None or math.isinf(score):
            errors = "; ".join(o.error or o.status for o in done if o.status == "failed")
            raise SearchFailed(f"the baseline {self.candidate.name} failed ({errors}); nothing to grow from.")
        behaviors = ", ".join(sorted({o.result.behavior for o in done if o.result}))
        entry = self.entry("baseline", f"{self.candidate.name} trained until {behaviors}: score {fmt(score)}", score=score)
        return StageResult(self.name, self.candidate, score, (entry,), self.trial_decisions(done, {self.candidate.name}), winner_outcomes=tuple(done))
