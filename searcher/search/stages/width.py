"""Stage 1: the baseline widened on a geometric grid, stopping when wider stops helping."""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from searcher.search.evidence import Comparison
from searcher.search.plan import SearchPlan
from searcher.search.stages.base import Stage, StageResult, fmt
from searcher.search.trials import Candidate, TrialOutcome, TrialRequest, mean_score


@dataclass(frozen=True)
class WidthWalk:
    """Where the width stage stands: what was compared, the best so far, the choice, and what to train next."""

    points: list[Candidate]  # compared, in grid order, the start winner first
    steps: list[tuple[Candidate, Comparison]]  # each compared candidate, against the best before it
    best: Candidate
    checks: list[Comparison]  # the best against each smaller candidate, smallest first, until one holds
    chosen: Candidate | None  # None while seeds are still missing
    pending: list[TrialRequest]


class WidthStage(Stage):
    """Stage 1: same depth, geometric widths; keep the smallest that the best does not beat beyond noise."""

    name, index = "width", 1
    keeps_rung_values = True

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study, start.winner_outcomes)
        self.start = start
        base = start.winner.arch.widths[0]
        widths, width = [], base
        while round(width * plan.width_factor) <= plan.width_cap:
            width = round(width * plan.width_factor)
            widths.append(width)
        self.grid = [self.candidate(width) for width in widths]

    @property
    def tie_rule(self) -> str:
        return self.plan.width_ties

    def candidate(self, width: int) -> Candidate:
        arch = self.plan.family.widen(self.start.winner.arch, width)
        params = (("depth", arch.depth), ("width", width))
        rungs = self.rungs_from(self.start.winner, self.start.winner_outcomes, self.plan.width_tolerance)
        return Candidate(f"w{width} d{arch.depth}", arch, self.start.winner.train, params, self.parents_from(self.start.winner_outcomes), rungs)

    def walk(self, done: list[TrialOutcome]) -> WidthWalk:
        """Replays the stage from `done`.

        Wider candidates are compared in grid order with the best so far (paired test, floor
        `width_tolerance`); one that is not better counts towards `width_patience`. With a runner
        that trains several trials at once, the next `concurrency` candidates are asked for
        together; patience is still applied in grid order, so the decision is the same, and a
        candidate beyond the patience cutoff is trained but never compared. Then the smallest
        candidate the best does not displace is kept (`Stage.grows`: beyond noise, or on a tie
        with `search.width.ties=grow`).
        """
        points = [self.start.winner]
        steps: list[tuple[Candidate, Comparison]] = []
        best, since_best = self.start.winner, 0
        for index, candidate in enumerate(self.grid):
            if since_best >= self.plan.width_patience:
                break
            if self.score_of(candidate, done) is None:  # its first seeds are not trained yet
                ahead = self.grid[index : index + max(1, self.plan.concurrency)]
                return WidthWalk(points, steps, best, [], None, [r for c in ahead for r in self.missing(c, done)])
            step, pending = self.contest(candidate, best, done, self.plan.width_tolerance)
            if pending:
                return WidthWalk(points, steps, best, [], None, pending)
            points.append(candidate)
            steps.append((candidate, step))
            best, since_best = (candidate, 0) if self.grows(step) else (best, since_best + 1)
        checks: list[Comparison] = []
        for candidate in points:
            if candidate is best:
                return WidthWalk(points, steps, best, checks, best, [])
            check, pending = self.contest(best, candidate, done, self.plan.width_tolerance)
            if pending:
                return WidthWalk(points, steps, best, checks, None, pending)
            checks.append(check)
            if not self.grows(check):
                return WidthWalk(points, steps, best, checks, candidate, [])
        raise AssertionError("the best width is among the points compared")

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.walk(done).pending

    def speculate(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        """Every seed of the best so far and of the next width it is compared with (a tie reads them all)."""
        walk = self.walk(done)
        if walk.chosen is not None:
            return []
        upcoming = [candidate for candidate in self.grid if candidate not in walk.points][:1]
        return self.every_seed([walk.best, *upcoming], done)

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        walk = self.walk(done)
        chosen = walk.chosen or walk.best
        scores = {candidate.name: mean_score(self.outcomes_for(candidate, done)) for candidate in walk.points}  # over every seed trained
        entries = [
            self.entry(
                "better" if self.grows(step) else "not better",
                f"{step.describe()}; {self.tie_note(step) + 'new best' if self.grows(step) else 'the best stays ' + step.incumbent}",
                width=candidate.arch.widths[0],
                score=scores[candidate.name],
                **step.numbers(),
            )
            for candidate, step in walk.steps
        ]
        logged = {(step.challenger, step.incumbent, step.pairs) for _, step in walk.steps}
        entries += [
            self.entry(
                "rejected" if self.grows(check) else "kept",
                f"{check.describe()}; {self.tie_note(check) + 'the smaller is rejected' if self.grows(check) else 'keep the smaller'}",
                **check.numbers(),
            )
            for check in walk.checks
            if (check.challenger, check.incumbent, check.pairs) not in logged  # (the same comparison is logged once, above)
        ]
        score = scores[chosen.name]
        tolerance = self.plan.width_tolerance
        margin = f"more than {tolerance}" if self.plan.metric.name == "accuracy" else self.plan.metric.beyond(tolerance)
        entries.append(
            self.entry(
                "selected",
                f"smallest width the best ({walk.best.name}, {fmt(scores[walk.best.name])}) does not beat beyond noise "
                f"(p < {self.plan.significance} and {margin}): {chosen.name} at {fmt(score)}",
                width=chosen.arch.widths[0],
                score=score,
                best_score=scores[walk.best.name],
            )
        )
        compared = {candidate.name for candidate in walk.points}
        notes = {
            o.request.key: f"beyond patience: trained concurrently, not compared (patience {self.plan.width_patience})"
            for o in done
            if o.request.candidate not in compared
        }
        winner_outcomes = tuple(self.outcomes_for(chosen, done))
        return StageResult(
            self.name, chosen, score, tuple(entries), self.trial_decisions(done, {chosen.name}),
            winner_outcomes=winner_outcomes, trial_notes=notes,
        )
