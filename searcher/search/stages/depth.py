"""Stage 2: one layer at a time, each new layer's width found by experiment, while depth helps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna

from searcher.search.plan import SearchPlan
from searcher.search.stages.base import Stage, StageResult, fmt, outcomes_of
from searcher.search.trials import Candidate, TrialOutcome, TrialRequest


@dataclass(frozen=True)
class DepthRound:
    parent: Candidate
    parent_score: float
    children: tuple[tuple[Candidate, float], ...]
    accepted: bool


class DepthStage(Stage):
    """Stage 2: add one layer at a time, its width found by experiment, while it helps."""

    name, index = "depth", 2

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study)
        self.start = start

    def children(self, parent: Candidate, parent_outcomes: tuple[TrialOutcome, ...] | list[TrialOutcome] = ()) -> list[Candidate]:
        previous = parent.arch.widths[-1]
        widths = sorted({min(self.plan.width_cap, max(1, round(previous * f))) for f in self.plan.new_layer_factors})
        children = []
        for width in widths:
            arch = self.plan.layout.deepen(parent.arch, width)
            params = (("depth", arch.depth), ("new_width", width))
            children.append(Candidate(f"d{arch.depth} +w{width}", arch, parent.train, params, self.parents_from(parent_outcomes)))
        return children

    def walk(self, done: list[TrialOutcome]) -> tuple[list[DepthRound], Candidate, float, list[TrialRequest], str]:
        """Replays the rounds so far: (rounds, current network, its score, what to run next, why it ended)."""
        rounds: list[DepthRound] = []
        current, current_score, current_outcomes = self.start.winner, self.start.score, self.start.winner_outcomes
        while True:
            if current.arch.depth >= self.plan.depth_cap:
                return rounds, current, current_score, [], f"depth cap {self.plan.depth_cap} reached"
            children = self.children(current, current_outcomes)
            pending = [request for child in children for request in self.missing(child, done)]
            if pending:
                return rounds, current, current_score, pending, ""
            scored = tuple((child, self.score_of(child, done) or -math.inf) for child in children)
            best_child, best_score = max(scored, key=lambda pair: pair[1])  # ties: the narrower child
            accepted = best_score > current_score + self.plan.depth_min_improvement
            rounds.append(DepthRound(current, current_score, scored, accepted))
            if not accepted:
                return rounds, current, current_score, [], f"adding layer {current.arch.depth + 1} did not help"
            current, current_score, current_outcomes = best_child, best_score, outcomes_of(best_child, done)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.walk(done)[3]

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        rounds, current, score, _, why = self.walk(done)
        entries = []
        for round_ in rounds:
            best_child, best_score = max(round_.children, key=lambda pair: pair[1])
            tried = ", ".join(f"{child.name} {fmt(s)}" for child, s in round_.children)
            verdict = "accepted" if round_.accepted else "rejected"
            entries.append(
                self.entry(
                    verdict,
                    f"layer {best_child.arch.depth}: best child {best_child.name} {fmt(best_score)} vs parent "
                    f"{round_.parent.name} {fmt(round_.parent_score)} (needs > +{self.plan.depth_min_improvement}); tried {tried}",
                    depth=best_child.arch.depth,
                    child_val_acc=best_score,
                    parent_val_acc=round_.parent_score,
                )
            )
        entries.append(self.entry("selected", f"{current.name} at {fmt(score)}; stopped: {why}", depth=current.arch.depth, val_acc=score))
        accepted = {max(r.children, key=lambda pair: pair[1])[0].name for r in rounds if r.accepted}
        selected = accepted | {current.name}
        winner_outcomes = self.start.winner_outcomes if current is self.start.winner else outcomes_of(current, done)
        return StageResult(self.name, current, score, tuple(entries), self.trial_decisions(done, selected), winner_outcomes=winner_outcomes)
