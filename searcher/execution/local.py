"""Runs trials one after another in this process, and has each one recorded (the `serial` execution).

A trial that raises or diverges becomes a `failed` outcome with its reason;
the search goes on. Only the controller decides what a failure means.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from searcher.data.batches import DeviceData
from searcher.execution import interrupts
from searcher.execution.warm import WarmStarts
from searcher.search.stages import Stage, StageResult
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.checkpoint import Checkpointing
from searcher.train.trainer import EpochCallback, EpochRecord, TrainResult, train_trial

# What running a trial means: (data, request, per-epoch callback, checkpointing, warm-start weights) -> result.
Work = Callable[[DeviceData, TrialRequest, EpochCallback, "Checkpointing | None", "dict[str, Any] | None"], TrainResult]


def train_request(
    data: DeviceData,
    request: TrialRequest,
    on_epoch: EpochCallback,
    checkpoint: Checkpointing | None = None,
    initial_state: dict[str, Any] | None = None,
) -> TrainResult:
    """The ordinary trial: train the requested network until stable (from `initial_state` when warm-started)."""
    return train_trial(
        request.arch,
        data.fold(request.fold, request.folds),
        request.train,
        request.seed,
        evaluate_test=request.evaluate_test,
        on_epoch=on_epoch,
        checkpoint=checkpoint,
        initial_state=initial_state,
    )


class Progress(Protocol):
    def stage(self, stage: Stage) -> None: ...

    def trial(self, request: TrialRequest) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome, reused: bool = False) -> None: ...


class QuietProgress:
    def stage(self, stage: Stage) -> None: ...

    def trial(self, request: TrialRequest) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome, reused: bool = False) -> None: ...


def outcome_of(request: TrialRequest, result: TrainResult) -> TrialOutcome:
    if result.behavior == "diverged":
        return TrialOutcome(request, "failed", result, error=f"diverged: {result.why or 'the loss became NaN/inf or exploded'}")
    return TrialOutcome(request, "pruned" if result.stopped_early else "ok", result)


def run_one(
    data: DeviceData,
    stage: Stage,
    request: TrialRequest,
    progress: Progress,
    work: Work = train_request,
    checkpoint: Checkpointing | None = None,
    initial_state: dict[str, Any] | None = None,
) -> tuple[TrialOutcome, str | None]:
    """Train one trial (from `initial_state` when warm-started); any exception becomes a failed outcome plus its traceback."""

    def on_epoch(record: EpochRecord) -> bool:
        interrupts.check()  # a stop signal whose exception was swallowed still stops the trial here
        progress.epoch(request, record)
        return stage.on_epoch(request, record)

    return attempt(data, request, on_epoch, checkpoint, work, initial_state)


def attempt(
    data: DeviceData,
    request: TrialRequest,
    on_epoch: Callable[[EpochRecord], bool] | None,
    checkpoint: Checkpointing | None,
    work: Work = train_request,
    initial_state: dict[str, Any] | None = None,
) -> tuple[TrialOutcome, str | None]:
    """Train one trial wherever this runs (here or in a worker); any exception becomes a failed outcome."""
    try:
        result = work(data, request, on_epoch, checkpoint, initial_state)
    except Exception as error:  # a broken trial must not end the search
        gc.collect()
        if isinstance(error, torch.cuda.OutOfMemoryError):  # that size is infeasible here: free the memory, go on
            torch.cuda.empty_cache()
            return TrialOutcome(request, "failed", None, error=f"out_of_memory: {error}"), traceback.format_exc()
        return TrialOutcome(request, "failed", None, error=f"{type(error).__name__}: {error}"), traceback.format_exc()
    return outcome_of(request, result), None


class LocalRunner:
    """The serial Runner: runs `work` (training, or a transfer probe) in this process, records through `recorder`."""

    def __init__(
        self,
        data: DeviceData,
        recorder: Any,
        progress: Progress | None = None,
        checkpoint_dir: Path | None = None,
        checkpoint_seconds: float = 60.0,
        work: Work = train_request,
    ):
        self.data = data
        self.work = work
        self.recorder = recorder
        self.progress = progress or QuietProgress()
        self.checkpoint_dir = checkpoint_dir  # None: no within-trial checkpoints
        self.checkpoint_seconds = checkpoint_seconds
        self.run_ids: dict[str, str] = {}  # trial key -> MLflow run id
        self.warm = WarmStarts(data)  # parents' trained weights, grown for their children

    def begin_stage(self, stage: Stage) -> None:
        self.recorder.start_stage(stage)
        self.progress.stage(stage)

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]:
        outcomes = []
        for request in requests:
            interrupts.check()
            self.progress.trial(request)
            reused = self.recorder.reusable(request)
            if reused:  # completed by an earlier attempt of this search: replayed, not retrained
                self.run_ids[request.key], outcome = reused
                self.warm.remember(outcome)  # its stored weights can still warm-start its children
                self.progress.trial_done(outcome, reused=True)
            else:
                warm = self.warm.for_request(request)
                run_id = self.recorder.start_trial(request, warm=warm is not None, growth_note=warm.note if warm else "")
                self.run_ids[request.key] = run_id
                outcome, traceback_text = run_one(
                    self.data, stage, request, self.progress, self.work, self.checkpointing(request), warm.state if warm else None
                )
                self.warm.remember(outcome)
                self.recorder.finish_trial(run_id, outcome, traceback_text)
                self.progress.trial_done(outcome)
            outcomes.append(outcome)
        return outcomes

    def checkpointing(self, request: TrialRequest) -> Checkpointing | None:
        if self.checkpoint_dir is None or self.checkpoint_seconds <= 0:
            return None
        return Checkpointing(self.checkpoint_dir / f"{request.key}.pt", self.checkpoint_seconds)

    def end_stage(self, stage: Stage, result: StageResult, outcomes: list[TrialOutcome]) -> None:
        self.recorder.finish_stage(result, outcomes, self.run_ids)

    def close(self) -> None:
        """Nothing to release: trials ran in this process."""
