"""Stage 2: one layer at a time, each new layer's width found by experiment, while depth helps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna

from searcher.search.evidence import Comparison
from searcher.search.plan import SearchPlan
from searcher.search.stages.base import Stage, StageResult, fmt
from searcher.search.trials import Candidate, TrialOutcome, TrialRequest, mean_score, rung_stop, stopped_at_rung


@dataclass(frozen=True)
class DepthRound:
    parent: Candidate
    children: tuple[tuple[Candidate, float], ...]  # (child, mean score on its first seeds)
    best: Candidate  # the best child, compared with the parent
    comparison: Comparison
    accepted: bool


@dataclass(frozen=True)
class DepthWalk:
    """The depth stage replayed from what is done: its rounds, where growth stopped, and what is kept."""

    rounds: list[DepthRound]
    chain: tuple[Candidate, ...]  # the stage's start, then each accepted layer's network: growth stopped at the last
    kept: Candidate  # the stage's winner: the shallowest network the deepest is not better than beyond noise
    trims: tuple[Comparison, ...]  # the deepest vs each network grown from ties, shallowest first
    pending: list[TrialRequest]  # what to train before the stage can go on
    why: str  # why growth stopped

    @property
    def deepest(self) -> Candidate:
        return self.chain[-1]


def best_of(scored: tuple[tuple[Candidate, float], ...]) -> Candidate:
    """The best-scoring child of a round; of equals the first, the narrower (children come narrowest first)."""
    return max(scored, key=lambda pair: pair[1])[0]


class DepthStage(Stage):
    """Stage 2: add one layer at a time, its width found by experiment, while it helps beyond noise."""

    name, index = "depth", 2
    keeps_rung_values = True

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study, start.winner_outcomes)
        self.start = start

    @property
    def tie_rule(self) -> str:
        return self.plan.depth_ties

    def children(self, parent: Candidate, parent_outcomes: tuple[TrialOutcome, ...] | list[TrialOutcome] = ()) -> list[Candidate]:
        previous = parent.arch.widths[-1]
        widths = sorted({min(self.plan.width_cap, max(1, round(previous * f))) for f in self.plan.new_layer_factors})
        children = []
        for width in widths:
            arch = self.plan.family.deepen(parent.arch, width, self.plan.input_shape)
            params = (("depth", arch.depth), ("new_width", width))
            rungs = self.rungs_from(parent, parent_outcomes, self.plan.depth_min_improvement)
            children.append(Candidate(f"d{arch.depth} +w{width}", arch, parent.train, params, self.parents_from(parent_outcomes), rungs))
        return children

    def grow(self, done: list[TrialOutcome]) -> tuple[list[DepthRound], Candidate, list[TrialRequest], str]:
        """Replays the rounds so far: (rounds, deepest network reached, what to run next, why growth ended).

        Each round trains the children of the current network; the best of them (on their first
        seeds; ties: the narrower) is compared with its parent on the same images, with more seeds
        of both while that is inconclusive. It is accepted when it is better beyond noise
        (p < significance / children, by more than `depth_min_improvement`), or, with `search.depth.ties=grow`,
        on a tie where it scores no lower (`Stage.grows`). The best of k children looks better than its
        parent by chance more often than one child would (the winner's curse), so its test is held to
        significance / k (Bonferroni): on digits, borderline wins by validation loss (p = 0.035-0.042 on one
        seed) kept adding layers that later seeds did not confirm.
        """
        rounds: list[DepthRound] = []
        current = self.start.winner
        while True:
            if current.arch.depth >= self.plan.depth_cap:
                return rounds, current, [], f"depth cap {self.plan.depth_cap} reached"
            children = self.children(current, self.outcomes_for(current, done))
            pending = [request for child in children for request in self.missing(child, done)]
            if pending:
                return rounds, current, pending, ""
            scored = self.scored(children, done)
            best_child = best_of(scored)
            comparison, pending = self.contest(best_child, current, done, self.plan.depth_min_improvement, self.plan.significance / len(children))
            if pending:
                return rounds, current, pending, ""
            accepted = self.grows(comparison)
            rounds.append(DepthRound(current, scored, best_child, comparison, accepted))
            if not accepted:
                return rounds, current, [], f"adding layer {current.arch.depth + 1} did not help beyond noise"
            current = best_child

    def walk(self, done: list[TrialOutcome]) -> DepthWalk:
        """Growth, then (`search.depth.select=shallowest`) the shallowest network the deepest is not better than."""
        rounds, deepest, pending, why = self.grow(done)
        accepted = [round_ for round_ in rounds if round_.accepted]
        chain = (self.start.winner, *(round_.best for round_ in accepted))  # ends at `deepest`
        if pending or self.plan.depth_select == "deepest":
            return DepthWalk(rounds, chain, deepest, (), pending, why)
        proven = max((i + 1 for i, round_ in enumerate(accepted) if round_.comparison.verdict == "better"), default=0)
        kept, trims, pending = self.shallowest_within_noise(list(chain), proven, done, self.plan.depth_min_improvement)
        return DepthWalk(rounds, chain, kept, tuple(trims), pending, why)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.walk(done).pending

    def scored(self, children: list[Candidate], done: list[TrialOutcome]) -> tuple[tuple[Candidate, float], ...]:
        """Each child with its mean score over the seeds it has (a round compares them once their first seeds are in); a
        child stopped at a rung is behind its parent, so never the round's best while another is not."""
        return tuple((child, -math.inf if stopped_at_rung(o := self.outcomes_for(child, done)) else mean_score(o)) for child in children)

    def speculate(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        """While a round trains: every seed of its parent (a tie reads them all); once every child has its first
        seeds, every seed of the best child and then its own children (the next round, if it is accepted). Once
        growth has stopped: every seed of the chain, deepest first (parsimony compares the deepest with each
        shallower network on all of them)."""
        walk = self.walk(done)
        if walk.why:  # growth has stopped (what is pending, if anything, is parsimony's)
            return self.every_seed(list(reversed(walk.chain)), done)
        current = walk.deepest
        guesses = self.every_seed([current], done)
        children = self.children(current, self.outcomes_for(current, done))
        if any(self.missing(child, done) for child in children):  # the best child is not known yet: guessing it wastes the slot as often as not
            return guesses
        best = best_of(self.scored(children, done))
        guesses += self.every_seed([best], done)
        if best.arch.depth < self.plan.depth_cap:
            guesses += [request for child in self.children(best, self.outcomes_for(best, done)) for request in self.missing(child, done)]
        return guesses

    def shown_score(self, child: Candidate, score: float, done: list[TrialOutcome]) -> str:
        """A child's score in the round's line, or where a rung stopped it."""
        stop = rung_stop(self.outcomes_for(child, done))
        return f"stopped at rung epoch {stop.epoch}" if stop is not None else fmt(score)

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        walk = self.walk(done)
        entries = []
        for round_ in walk.rounds:
            comparison = round_.comparison
            tried = ", ".join(f"{child.name} {self.shown_score(child, s, done)}" for child, s in round_.children)
            verdict = "accepted" if round_.accepted else "rejected"
            entries.append(
                self.entry(
                    verdict,
                    f"layer {round_.parent.arch.depth + 1}: {comparison.describe()} (needs p < {comparison.alpha:.2g}, the best of {len(round_.children)}, and "
                    f"{self.plan.metric.beyond(self.plan.depth_min_improvement)}); {'add it' if round_.accepted and comparison.verdict == 'better' else self.tie_note(comparison) + 'add it' if round_.accepted else 'keep the smaller'}; tried {tried}",
                    depth=round_.parent.arch.depth + 1,
                    child_score=mean_score(self.outcomes_for(round_.best, done)),
                    parent_score=mean_score(self.outcomes_for(round_.parent, done)),
                    **comparison.numbers(),
                )
            )
        for comparison in walk.trims:
            shallower = comparison.incumbent
            outcome = f"keep {shallower}" if comparison.verdict != "better" else f"the deepest is better than {shallower}"
            entries.append(
                self.entry(
                    "parsimony",
                    f"grown from ties, {comparison.describe()}; {outcome} (search.depth.select=shallowest)",
                    **comparison.numbers(),
                )
            )
        kept = walk.kept
        score = mean_score(self.outcomes_for(kept, done))
        trimmed = f", the shallowest within noise of {walk.deepest.name}" if kept != walk.deepest else ""
        entries.append(self.entry("selected", f"{kept.name} at {fmt(score)}{trimmed}; stopped: {walk.why}", depth=kept.arch.depth, score=score))
        selected = {candidate.name for candidate in walk.chain[1 : walk.chain.index(kept) + 1]} | {kept.name}  # the layers kept
        return StageResult(
            self.name, kept, score, tuple(entries), self.trial_decisions(done, selected), winner_outcomes=tuple(self.outcomes_for(kept, done))
        )
