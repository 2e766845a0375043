"""Stage 1: the baseline widened on a geometric grid, stopping when wider stops helping."""

from __future__ import annotations

import optuna

from searcher.search.plan import SearchPlan
from searcher.search.stages.base import Stage, StageResult, fmt, outcomes_of
from searcher.search.trials import Candidate, TrialOutcome, TrialRequest


class WidthStage(Stage):
    """Stage 1: same depth, geometric widths; keep the smallest within `tolerance` of the best."""

    name, index = "width", 1

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study)
        self.start = start
        base = start.winner.arch.widths[0]
        widths, width = [], base
        while round(width * plan.width_factor) <= plan.width_cap:
            width = round(width * plan.width_factor)
            widths.append(width)
        self.grid = [self.candidate(width) for width in widths]

    def candidate(self, width: int) -> Candidate:
        arch = self.start.winner.arch.with_width(width)
        params = (("depth", arch.depth), ("width", width))
        return Candidate(f"w{width} d{arch.depth}", arch, self.start.winner.train, params, self.parents_from(self.start.winner_outcomes))

    def walk(self, done: list[TrialOutcome]) -> tuple[list[tuple[Candidate, float]], list[TrialRequest]]:
        """Scores in grid order until patience runs out, and what to run next.

        With a runner that trains several trials at once, the next `concurrency` candidates are
        asked for together. Patience is still applied in grid order, so the decision is the same;
        a candidate beyond the patience cutoff is trained but never compared.
        """
        points = [(self.start.winner, self.start.score)]
        best, since_best = self.start.score, 0
        for index, candidate in enumerate(self.grid):
            if since_best >= self.plan.width_patience:
                break
            score = self.score_of(candidate, done)
            if score is None:
                ahead = self.grid[index : index + max(1, self.plan.concurrency)]
                return points, [request for c in ahead for request in self.missing(c, done)]
            points.append((candidate, score))
            best, since_best = (score, 0) if score > best else (best, since_best + 1)
        return points, []

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.walk(done)[1]

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        points, _ = self.walk(done)
        best = max(score for _, score in points)
        chosen, score = next((c, s) for c, s in points if s >= best - self.plan.width_tolerance)
        entries = [
            self.entry(
                "kept" if candidate is chosen else "rejected",
                f"{candidate.name}: val_acc {fmt(s)} (best {fmt(best)}, tolerance {self.plan.width_tolerance})",
                width=candidate.arch.widths[0],
                val_acc=s,
            )
            for candidate, s in points
        ]
        entries.append(
            self.entry(
                "selected",
                f"smallest width within {self.plan.width_tolerance} of the best ({fmt(best)}): {chosen.name} at {fmt(score)}",
                width=chosen.arch.widths[0],
                val_acc=score,
                best_val_acc=best,
            )
        )
        winner_outcomes = self.start.winner_outcomes if chosen is self.start.winner else outcomes_of(chosen, done)
        compared = {candidate.name for candidate, _ in points}
        notes = {
            o.request.key: f"beyond patience: trained concurrently, not compared (patience {self.plan.width_patience})"
            for o in done
            if o.request.candidate not in compared
        }
        return StageResult(
            self.name, chosen, score, tuple(entries), self.trial_decisions(done, {chosen.name}), winner_outcomes=winner_outcomes, trial_notes=notes
        )
