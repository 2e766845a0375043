"""What every stage shares: the Stage interface, its result, and the helpers the stages use."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import ClassVar

import optuna

from searcher.search.plan import SearchPlan
from searcher.search.studies import RemoteTrial
from searcher.search.trials import Candidate, Decision, DecisionEntry, TrialOutcome, TrialRequest, mean_score
from searcher.train.trainer import EpochRecord


@dataclass(frozen=True)
class StageResult:
    stage: str
    winner: Candidate
    score: float  # the winner's mean validation accuracy
    decisions: tuple[DecisionEntry, ...]
    trial_decisions: dict[str, Decision]  # by trial key
    metrics: dict[str, float] = field(default_factory=dict)  # logged on the stage run
    winner_outcomes: tuple[TrialOutcome, ...] = ()
    trial_notes: dict[str, str] = field(default_factory=dict)  # by trial key: why a trial played no part in the decision


def group_by_candidate(done: list[TrialOutcome]) -> dict[str, list[TrialOutcome]]:
    groups: dict[str, list[TrialOutcome]] = defaultdict(list)
    for outcome in done:
        groups[outcome.request.candidate].append(outcome)
    return groups


class Stage:
    name: ClassVar[str]
    index: ClassVar[int]

    def __init__(self, plan: SearchPlan, study: optuna.Study):
        self.plan = plan
        self.study = study
        self._recorded: set[str] | None = None  # trial keys already in the study (a resume replays them)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        raise NotImplementedError

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        raise NotImplementedError

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

    # helpers shared by the stages

    def requests(self, candidate: Candidate, evaluate_test: bool = False) -> list[TrialRequest]:
        parents = dict(candidate.parents)
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
                evaluate_test=evaluate_test,
                parent=parents.get(repeat),
            )
            for repeat in range(self.plan.repeats)
        ]

    def score_of(self, candidate: Candidate, done: list[TrialOutcome]) -> float | None:
        """The candidate's mean score once all its repeats are done, else None."""
        outcomes = group_by_candidate(done).get(candidate.name, [])
        return mean_score(outcomes) if len(outcomes) >= self.plan.repeats else None

    def missing(self, candidate: Candidate, done: list[TrialOutcome]) -> list[TrialRequest]:
        finished = {outcome.request.key for outcome in done}
        return [request for request in self.requests(candidate) if request.key not in finished]

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

    def parents_from(self, outcomes: tuple[TrialOutcome, ...] | list[TrialOutcome]) -> tuple[tuple[int, str], ...]:
        """Warm starts: each repeat grows from the parent's trial of the same repeat (only trained ones)."""
        if not self.plan.warm_start:
            return ()
        return tuple((o.request.repeat, o.request.key) for o in outcomes if o.status == "ok" and o.result is not None)


GRID_DISTRIBUTION = optuna.distributions.IntDistribution(0, 1 << 16)


def record_in_study(study: optuna.Study, outcome: TrialOutcome) -> None:
    params = dict(outcome.request.params)
    distributions = {name: GRID_DISTRIBUTION for name in params}  # grid stages vary integers only
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


def outcomes_of(candidate: Candidate, done: list[TrialOutcome]) -> tuple[TrialOutcome, ...]:
    return tuple(group_by_candidate(done).get(candidate.name, []))
