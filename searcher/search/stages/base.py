"""What every stage shares: the Stage interface, its result, and the helpers the stages use."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import optuna

from searcher.crash import crash_point
from searcher.search.evidence import Comparison, compare
from searcher.search.plan import SearchPlan
from searcher.search.studies import RemoteTrial
from searcher.search.trials import Candidate, Decision, DecisionEntry, TrialOutcome, TrialRequest, mean_score
from searcher.train.rungs import Rungs
from searcher.train.trainer import EpochRecord


@dataclass(frozen=True)
class StageResult:
    stage: str
    winner: Candidate
    score: float  # the winner's mean score (what the decisions compare; transfer: the probe's accuracy on the target)
    decisions: tuple[DecisionEntry, ...]
    trial_decisions: dict[str, Decision]  # by trial key
    metrics: dict[str, float] = field(default_factory=dict)  # logged on the stage run
    winner_outcomes: tuple[TrialOutcome, ...] = ()
    trial_notes: dict[str, str] = field(default_factory=dict)  # by trial key: why a trial played no part in the decision


class Stage:
    name: ClassVar[str]
    index: ClassVar[int]
    keeps_rung_values: ClassVar[bool] = False  # its trials keep their values at the rung epochs (a width or depth candidate's reference)

    def __init__(self, plan: SearchPlan, study: optuna.Study, inherited: tuple[TrialOutcome, ...] = ()):
        self.plan = plan
        self.study = study
        self.inherited = inherited  # the start winner's trials from the stage before: its seeds count here too
        self._recorded: set[str | None] | None = None  # trial keys already in the study (a resume replays them)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        raise NotImplementedError

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        raise NotImplementedError

    def speculate(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        """Trials this stage will likely ask for next, likeliest first. A runner with idle slots trains them
        (`execution.speculate`); an outcome counts only once the stage asks for its key, so a guess never changes
        a decision. Default: no guesses."""
        return []

    def every_seed(self, candidates: list[Candidate], done: list[TrialOutcome]) -> list[TrialRequest]:
        """The untrained seeds, up to `plan.max_repeats`, of candidates about to be compared: where ties grow, a tie
        is read off every seed (`contest`), so these are the likeliest next requests."""
        return [request for candidate in candidates for request in self.missing(candidate, done, self.plan.max_repeats)]

    def withdraw(self, requests: list[TrialRequest], done: list[TrialOutcome]) -> None:
        """search.budget stopped the stage before `requests` ran: forget what asking for them set up. Default: nothing
        (a grid stage records a trial only once it has run)."""

    def on_epoch(self, request: TrialRequest, record: EpochRecord) -> bool:
        """Called after every epoch of this stage's trials; True stops the trial (pruning)."""
        return False

    def remote_trial(self, request: TrialRequest) -> RemoteTrial | None:
        """What a trial trained in another process reports its epochs to (the same pruning as `on_epoch`), if anything."""
        return None

    def observe(self, outcomes: list[TrialOutcome]) -> None:
        """Record finished trials in the stage's Optuna study (a grid stage's study is its record), once each."""
        if self._recorded is None:
            self._recorded = {t.user_attrs.get("trial_key") for t in self.study.get_trials(deepcopy=False)}
        for outcome in outcomes:
            if outcome.request.key not in self._recorded:
                record_in_study(self.study, outcome)
                self._recorded.add(outcome.request.key)
                crash_point("trial.told")  # (a test hook: searcher/crash.py)

    # helpers shared by the stages

    def requests(self, candidate: Candidate, repeats: int | None = None) -> list[TrialRequest]:
        """The candidate's first `repeats` seeds (default: `plan.repeats`, the seeds every candidate starts with).

        With cross-validation (`plan.folds` > 1) seed r trains without fold r and is judged on it,
        so the seeds of a comparison look at different validation images, not the same ones again.

        A warm child's seed r grows from its parent's seed r; the extra seeds adaptive repeats add
        (r >= plan.repeats) grow from the parent's seed 0, which is always trained by then, so no
        seed ever waits for its parent and the keys never depend on what happens to be done.
        """
        parents, rungs = dict(candidate.parents), dict(candidate.rungs)
        return [
            TrialRequest(
                stage=self.name,
                candidate=candidate.name,
                arch=candidate.arch,
                train=candidate.train,
                seed=self.plan.seed + repeat,
                data_identity=self.plan.data_identity,
                params=candidate.params,
                repeat=repeat,
                parent=parents.get(repeat if repeat < self.plan.repeats else 0),
                fold=repeat % self.plan.folds,
                folds=self.plan.folds,
                family=self.plan.family,
                metric=self.plan.metric,
                rungs=rungs.get(repeat) if repeat < self.plan.repeats else None,
                rung_epochs=self.plan.rungs if self.keeps_rung_values else (),
            )
            for repeat in range(self.plan.repeats if repeats is None else repeats)
        ]

    def outcomes_for(self, candidate: Candidate, done: list[TrialOutcome]) -> list[TrialOutcome]:
        """The candidate's finished seeds, in repeat order, whichever stage trained them."""
        keys = {request.key for request in self.requests(candidate, max(self.plan.repeats, self.plan.max_repeats))}
        found = {o.request.key: o for o in (*self.inherited, *done) if o.request.key in keys}
        return sorted(found.values(), key=lambda o: o.request.repeat)

    def score_of(self, candidate: Candidate, done: list[TrialOutcome]) -> float | None:
        """The candidate's mean score over its finished seeds, once its first `plan.repeats` are done; else None."""
        outcomes = self.outcomes_for(candidate, done)
        return mean_score(outcomes) if len(outcomes) >= self.plan.repeats else None

    def missing(self, candidate: Candidate, done: list[TrialOutcome], repeats: int | None = None) -> list[TrialRequest]:
        finished = {outcome.request.key for outcome in (*self.inherited, *done)}
        return [request for request in self.requests(candidate, repeats) if request.key not in finished]

    @property
    def tie_rule(self) -> str:
        """What a tie between a larger and a smaller network means here (`search.<stage>.ties`): grow or keep_smaller."""
        return "keep_smaller"

    def grows(self, comparison: Comparison) -> bool:
        """Does the larger network (the challenger) take the smaller one's place? Better beyond noise always does;
        a tie does only when the stage's ties rule is `grow` and its score is no lower (the larger is kept unless the evidence is against it)."""
        if comparison.verdict == "better":
            return True
        return self.tie_rule == "grow" and comparison.verdict == "tie" and comparison.effect >= 0

    def tie_note(self, comparison: Comparison) -> str:
        return "" if comparison.verdict == "better" else f"a tie grows (search.{self.name}.ties=grow): "

    def contest(
        self, challenger: Candidate, incumbent: Candidate, done: list[TrialOutcome], floor: float, alpha: float | None = None
    ) -> tuple[Comparison, list[TrialRequest]]:
        """Paired comparison of two candidates, and the seeds still to train before it can be trusted.

        Starts on `plan.repeats` seeds; while the comparison is inconclusive (above its floor, not
        significant) and fewer than `plan.max_repeats` seeds were compared, asks for one more seed
        of both. Where ties grow, every tie is inconclusive: the sign of its effect decides, so it is
        read off all `plan.max_repeats` seeds, not off one seed's draw (often an exact 0 on a small
        split). `alpha` (default: `plan.significance`) is lower where the challenger is the best of
        several (`DepthStage`). A deterministic function of `done`: a resumed or parallel search asks the same.
        """
        seeds = self.plan.repeats
        while True:
            result = compare(
                challenger.name, self.outcomes_for(challenger, done), incumbent.name, self.outcomes_for(incumbent, done),
                floor, self.plan.significance if alpha is None else alpha, seeds, self.plan.unit, self.plan.metric,
            )
            sign_decides = self.tie_rule == "grow" and result.paired and result.verdict == "tie"
            if not (result.inconclusive or sign_decides) or seeds >= self.plan.max_repeats:
                return result, []
            seeds += 1
            pending = self.missing(incumbent, done, seeds) + self.missing(challenger, done, seeds)
            if pending:
                return result, pending

    def shallowest_within_noise(
        self, chain: list[Candidate], proven: int, done: list[TrialOutcome], floor: float
    ) -> tuple[Candidate, list[Comparison], list[TrialRequest]]:
        """Parsimony after growth: the smallest network of `chain` that its last (largest) is not better than beyond noise.

        Ties grow so that small gains can add up over several steps, but a run of ties on a
        plateau is a random walk: where it stops is noise. So the end of the chain is compared
        with each network grown from ties (from `chain[proven]`, the last one proven better than
        its parent, on), smallest first, on every seed (`contest`); the first it does not beat
        is kept (the one-standard-error rule of model selection, with a paired test).
        Returns (kept, the comparisons made, the seeds still to train).
        """
        largest = chain[-1]
        comparisons: list[Comparison] = []
        for candidate in chain[proven:-1]:
            comparison, pending = self.contest(largest, candidate, done, floor)
            if pending:
                return largest, comparisons, pending
            comparisons.append(comparison)
            if comparison.verdict != "better":
                return candidate, comparisons, []
        return largest, comparisons, []

    def trial_decisions(self, done: list[TrialOutcome], selected: set[str]) -> dict[str, Decision]:
        decisions: dict[str, Decision] = {}
        for outcome in done:
            if outcome.status == "failed":
                decisions[outcome.request.key] = "failed"
            elif outcome.status == "pruned":
                decisions[outcome.request.key] = "pruned"
            else:
                decisions[outcome.request.key] = "selected" if outcome.request.candidate in selected else "rejected"
        return decisions

    def entry(self, decision: str, reason: str, **numbers: float | int | str) -> DecisionEntry:
        return DecisionEntry(self.name, decision, reason, numbers)

    def rungs_from(self, reference: Candidate, outcomes: tuple[TrialOutcome, ...] | list[TrialOutcome], floor: float) -> tuple[tuple[int, Rungs], ...]:
        """search.rungs: each of a cold candidate's first seeds is checked against `reference`'s trial of the same seed
        (the same fold) at every rung epoch; a seed behind beyond noise stops there (train/rungs.py). The test is held to
        the significance over every look the candidate gets (rungs x first seeds: Bonferroni)."""
        if not self.plan.rungs or self.plan.warm_start:
            return ()
        alpha = self.plan.significance / (len(self.plan.rungs) * self.plan.repeats)
        return tuple(
            (o.request.repeat, Rungs(self.plan.rungs, o.request.key, reference.name, tuple(o.result.rung_values.get(e) for e in self.plan.rungs), alpha, floor))
            for o in outcomes
            if o.status == "ok" and o.result is not None and o.result.rung_values and o.request.repeat < self.plan.repeats
        )

    def parents_from(self, outcomes: tuple[TrialOutcome, ...] | list[TrialOutcome]) -> tuple[tuple[int, str], ...]:
        """Warm starts: each of the first `plan.repeats` seeds grows from the parent's trial of the same seed (trained ones only)."""
        if not self.plan.warm_start:
            return ()
        return tuple(
            (o.request.repeat, o.request.key)
            for o in outcomes
            if o.status == "ok" and o.result is not None and o.request.repeat < self.plan.repeats
        )


GRID_DISTRIBUTION = optuna.distributions.IntDistribution(0, 1 << 16)


def record_in_study(study: optuna.Study, outcome: TrialOutcome) -> None:
    params = dict(outcome.request.params)
    distributions: dict[str, optuna.distributions.BaseDistribution] = {name: GRID_DISTRIBUTION for name in params}  # grid stages vary integers only
    state = {"ok": optuna.trial.TrialState.COMPLETE, "failed": optuna.trial.TrialState.FAIL}.get(
        outcome.status, optuna.trial.TrialState.PRUNED
    )
    result = outcome.result
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=distributions,
            value=outcome.score if state == optuna.trial.TrialState.COMPLETE else None,
            intermediate_values={r.epoch: r.val_acc for r in result.history if math.isfinite(r.val_acc)} if result else {},
            user_attrs={"candidate": outcome.request.candidate, "trial_key": outcome.request.key},
            state=state,
        )
    )


def fmt(score: float) -> str:
    return "failed" if math.isinf(score) else f"{score:.4f}"


class SearchFailed(Exception):
    """The search cannot go on (its baseline or final stage failed)."""
