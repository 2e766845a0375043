"""The staged controller: runs stage after stage, each started from the previous winner.

It decides; it does not train or record. A `Runner` does both: it runs the
requested trials (here, in worker processes, on SLURM...) and records them, and
the controller only sees the outcomes it is told.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Protocol

from searcher.crash import crash_point
from searcher.search.budget import Spending
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


BUDGETED_STAGES = (WidthStage.name, DepthStage.name, RegularizationStage.name)  # cut short or skipped when the budget runs out


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


def run_stage(
    stage: Stage, runner: Runner, streak: FailureStreak | None = None, spending: Spending | None = None, previous: StageResult | None = None
) -> tuple[StageResult, list[TrialOutcome]]:
    """A stage's trials until it decides. With a budget (`spending`), a growing stage also stops where its next trials
    and the final stage's retraining would not fit (search/budget.py)."""
    runner.begin_stage(stage)
    if spending is not None:
        spending.begin(stage.name)
    done: list[TrialOutcome] = []
    cut = ""
    while requests := stage.next_trials(done):
        if spending is not None and stage.name in BUDGETED_STAGES and not spending.fits(len(requests), done[-len(requests) :], stage.inherited):
            cut = spending.no_room(requests, stage.inherited)
            stage.withdraw(requests, done)
            break
        outcomes = runner.run_trials(stage, requests)
        stage.observe(outcomes)
        if spending is not None:
            spending.observe(stage.name, outcomes)
        if streak:
            streak.update(outcomes)
        done += outcomes
    result = conclude(stage, done, spending, cut, previous)
    runner.end_stage(stage, result, done)
    crash_point("stage.ended")  # (a test hook: searcher/crash.py)
    return result, done


def conclude(stage: Stage, done: list[TrialOutcome], spending: Spending | None, cut: str, previous: StageResult | None) -> StageResult:
    """The stage's decision, and what the budget did to it: a stage it stopped says so (one it stopped before any trial
    keeps the previous winner: skipped); the final stage's log opens with how the budget was spent."""
    if spending is None:
        return stage.conclude(done)
    if cut and not done and previous is not None:
        spending.undone[stage.name] = "skipped"
        note = stage.entry("budget", f"skipped by search.budget: {cut}")
        return StageResult(stage.name, previous.winner, previous.score, (note,), {}, winner_outcomes=previous.winner_outcomes)
    result = stage.conclude(done)
    if cut:
        spending.undone[stage.name] = "cut short"
        result = replace(result, decisions=(*result.decisions, stage.entry("budget", f"stopped by search.budget: {cut}")))
    if stage.name == FinalStage.name:
        summary = stage.entry("budget", spending.summary(), budget=spending.budget.amount, spent=spending.spent())
        result = replace(result, decisions=(summary, *result.decisions))  # (its last line stays the final result)
    return result


def run_search(plan: SearchPlan, studies: StudyBook, runner: Runner, transfer_runner: Runner | None = None) -> SearchResult:
    """Stages 0-4, then stage 5 (transfer) when the plan asks for it, on `transfer_runner` (the target's data)."""
    started = time.perf_counter()
    results: list[StageResult] = []
    everything: list[TrialOutcome] = []
    streak = FailureStreak(plan.max_consecutive_failures)
    spending = Spending(plan.budget, plan.final_seeds, plan.concurrency) if plan.budget is not None else None
    previous, outcomes = run_stage(BaselineStage(plan, studies.open(BaselineStage.name)), runner, streak, spending)
    results.append(previous)
    everything += outcomes
    for stage_type in GROWING_STAGES:  # each one starts from the previous stage's winner
        stage_plan = plan
        if stage_type is FinalStage and spending is not None:  # as many final seeds as the budget still pays for
            stage_plan = replace(plan, final_seeds=spending.final_seeds_that_fit(previous.winner_outcomes))
        previous, outcomes = run_stage(stage_type(stage_plan, studies.open(stage_type.name), previous), runner, streak, spending, previous)
        results.append(previous)
        everything += outcomes
    if plan.transfer is not None:
        stage = TransferStage(plan, studies.open(TransferStage.name), everything)
        transfer, outcomes = run_stage(stage, transfer_runner or runner)
        results.append(transfer)
        everything += outcomes
    return SearchResult(tuple(results), tuple(everything), time.perf_counter() - started)
