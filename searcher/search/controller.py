"""The staged controller: runs stage after stage, each started from the previous winner.

It decides; it does not train or record. A `Runner` does both: it runs the
requested trials (here, in worker processes, on SLURM...) and records them, and
the controller only sees the outcomes it is told.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from searcher.crash import crash_point
from searcher.search.plan import SearchPlan
from searcher.search.stages import (
    BaselineStage,
    DepthStage,
    FinalStage,
    RegularizationStage,
    SearchFailed,
    Stage,
    StageResult,
    TransferStage,
    WidthStage,
)
from searcher.search.studies import StudyBook
from searcher.search.trials import DecisionEntry, TrialOutcome, TrialRequest


class Runner(Protocol):
    def begin_stage(self, stage: Stage) -> None: ...

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]: ...

    def end_stage(self, stage: Stage, result: StageResult, outcomes: list[TrialOutcome]) -> None: ...


@dataclass(frozen=True)
class SearchResult:
    stages: tuple[StageResult, ...]
    outcomes: tuple[TrialOutcome, ...]
    seconds: float

    @property
    def final(self) -> StageResult:
        return next(stage for stage in self.stages if stage.stage == "final")

    @property
    def transfer(self) -> StageResult | None:
        return next((stage for stage in self.stages if stage.stage == "transfer"), None)

    @property
    def decisions(self) -> list[DecisionEntry]:
        return [entry for stage in self.stages for entry in stage.decisions]


GROWING_STAGES: tuple[type[WidthStage] | type[DepthStage] | type[RegularizationStage] | type[FinalStage], ...] = (
    WidthStage,
    DepthStage,
    RegularizationStage,
    FinalStage,
)


class FailureStreak:
    """Stops a search whose trials keep failing instead of letting it burn the budget."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0

    def update(self, outcomes: list[TrialOutcome]) -> None:
        for outcome in outcomes:
            self.count = self.count + 1 if outcome.status == "failed" else 0
            if self.limit and self.count >= self.limit:
                raise SearchFailed(
                    f"{self.count} trials in a row failed (last: {outcome.request.label}: {outcome.error}); stopping the search. "
                    "Fix the cause (see the failed trial runs' searcher.error tags and traceback.txt), or raise "
                    "search.max_consecutive_failures; re-running the same command resumes."
                )


def run_stage(stage: Stage, runner: Runner, streak: FailureStreak | None = None) -> tuple[StageResult, list[TrialOutcome]]:
    runner.begin_stage(stage)
    done: list[TrialOutcome] = []
    while requests := stage.next_trials(done):
        outcomes = runner.run_trials(stage, requests)
        stage.observe(outcomes)
        if streak:
            streak.update(outcomes)
        done += outcomes
    result = stage.conclude(done)
    runner.end_stage(stage, result, done)
    crash_point("stage.ended")  # (a test hook: searcher/crash.py)
    return result, done


def run_search(plan: SearchPlan, studies: StudyBook, runner: Runner, transfer_runner: Runner | None = None) -> SearchResult:
    """Stages 0-4, then stage 5 (transfer) when the plan asks for it, on `transfer_runner` (the target's data)."""
    started = time.perf_counter()
    results: list[StageResult] = []
    everything: list[TrialOutcome] = []
    streak = FailureStreak(plan.max_consecutive_failures)
    previous, outcomes = run_stage(BaselineStage(plan, studies.open(BaselineStage.name)), runner, streak)
    results.append(previous)
    everything += outcomes
    for stage_type in GROWING_STAGES:  # each one starts from the previous stage's winner
        previous, outcomes = run_stage(stage_type(plan, studies.open(stage_type.name), previous), runner, streak)
        results.append(previous)
        everything += outcomes
    if plan.transfer is not None:
        stage = TransferStage(plan, studies.open(TransferStage.name), everything)
        transfer, outcomes = run_stage(stage, transfer_runner or runner)
        results.append(transfer)
        everything += outcomes
    return SearchResult(tuple(results), tuple(everything), time.perf_counter() - started)
