"""Runs trials one after another in this process, and has each one recorded.

A trial that raises or diverges becomes a `failed` outcome with its reason;
the search goes on. Only the controller decides what a failure means.
"""

from __future__ import annotations

import gc
import traceback
from typing import Any, Protocol

from searcher.data.batches import DeviceData
from searcher.execution.warm import WarmStarts
from searcher.search.stages import Stage, StageResult
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.trainer import EpochRecord, TrainResult, train_trial


class Progress(Protocol):
    def stage(self, stage: Stage) -> None: ...

    def trial(self, request: TrialRequest) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome) -> None: ...


class QuietProgress:
    def stage(self, stage: Stage) -> None: ...

    def trial(self, request: TrialRequest) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome) -> None: ...


def outcome_of(request: TrialRequest, result: TrainResult) -> TrialOutcome:
    if result.behavior == "diverged":
        return TrialOutcome(request, "failed", result, error="diverged: the loss became NaN/inf or exploded")
    return TrialOutcome(request, "pruned" if result.stopped_early else "ok", result)


def run_one(
    data: DeviceData, stage: Stage, request: TrialRequest, progress: Progress, initial_state: dict[str, Any] | None = None
) -> tuple[TrialOutcome, str | None]:
    """Train one trial (from `initial_state` when warm-started); any exception becomes a failed outcome plus its traceback."""

    def on_epoch(record: EpochRecord) -> bool:
        progress.epoch(request, record)
        return stage.on_epoch(request, record)

    try:
        result = train_trial(
            request.arch, data, request.train, request.seed, evaluate_test=request.evaluate_test, on_epoch=on_epoch, initial_state=initial_state
        )
    except Exception as error:  # a broken trial must not end the search
        gc.collect()
        return TrialOutcome(request, "failed", None, error=f"{type(error).__name__}: {error}"), traceback.format_exc()
    return outcome_of(request, result), None


class LocalRunner:
    """The serial Runner: trains in this process, records through `recorder`."""

    def __init__(self, data: DeviceData, recorder: Any, progress: Progress | None = None):
        self.data = data
        self.recorder = recorder
        self.progress = progress or QuietProgress()
        self.run_ids: dict[str, str] = {}  # trial key -> MLflow run id
        self.warm = WarmStarts(data)  # parents' trained weights, grown for their children

    def begin_stage(self, stage: Stage) -> None:
        self.recorder.start_stage(stage)
        self.progress.stage(stage)

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]:
        outcomes = []
        for request in requests:
            self.progress.trial(request)
            warm = self.warm.for_request(request)
            run_id = self.recorder.start_trial(request, warm=warm is not None, growth_note=warm.note if warm else "")
            self.run_ids[request.key] = run_id
            outcome, traceback_text = run_one(self.data, stage, request, self.progress, warm.state if warm else None)
            self.warm.remember(outcome)
            self.recorder.finish_trial(run_id, outcome, traceback_text)
            self.progress.trial_done(outcome)
            outcomes.append(outcome)
        return outcomes

    def end_stage(self, stage: Stage, result: StageResult, outcomes: list[TrialOutcome]) -> None:
        self.recorder.finish_stage(result, outcomes, self.run_ids)
