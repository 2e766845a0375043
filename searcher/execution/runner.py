"""The one Runner: replays finished trials, grows warm starts, dispatches the rest to a backend, records every outcome.

Serial, parallel, speculative and resumed runs share this one recording path; only
where a trial trains differs (a Backend): in this process (in_process.py), in
worker processes (processes.py) or as submitit jobs (submitit.py). A trial's run
is started when the trial is dispatched and finished when its outcome comes back;
a trial an earlier attempt of the search completed is replayed from its record,
not retrained. Outcomes are returned in request order, never completion order,
so the stages decide exactly as in a serial run.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Protocol

from searcher.execution import interrupts
from searcher.execution.warm import WarmStarts
from searcher.execution.work import TrialTask
from searcher.search.stages import Stage, StageResult
from searcher.search.studies import StudyStorageLost
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.trainer import EpochCallback, EpochRecord


class Progress(Protocol):
    """What the user is shown as trials start, train and finish (report/terminal.py's RichProgress)."""

    def stage(self, stage: Stage) -> None: ...

    def trial(self, request: TrialRequest) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome, reused: bool = False) -> None: ...


class QuietProgress:
    def stage(self, stage: Stage) -> None: ...

    def trial(self, request: TrialRequest) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome, reused: bool = False) -> None: ...


class TrialRecorder(Protocol):
    """Where stages and trials are recorded (tracking/recorder.py's Recorder), and finished trials found again."""

    def reusable(self, request: TrialRequest) -> tuple[str, TrialOutcome] | None:
        """(run id, outcome) of the trial if an earlier attempt of the search completed it."""

    def start_stage(self, stage: Stage) -> None: ...

    def start_trial(self, request: TrialRequest, warm: bool = False, growth_note: str = "") -> str:
        """Open the trial's run; returns its id."""

    def finish_trial(self, run_id: str, outcome: TrialOutcome, traceback_text: str | None = None) -> None: ...

    def finish_stage(self, result: StageResult, outcomes: list[TrialOutcome], run_ids: dict[str, str]) -> None: ...


class Backend(Protocol):
    """Somewhere trials train: `capacity` at once, each one submitted as a TrialTask."""

    capacity: int

    def submit(self, task: TrialTask, on_epoch: EpochCallback) -> Any:
        """Start the trial; returns a handle. `on_epoch` is the stage's per-epoch callback, for a backend that
        trains in this process; the others report epochs to `task.remote` through the shared Optuna storage."""

    def wait(self, handles: list[Any]) -> None:
        """Return once at least one of `handles` is done."""

    def done(self, handle: Any) -> bool: ...

    def result(self, handle: Any) -> tuple[TrialOutcome, str | None]:
        """The outcome and traceback text; raises when the worker or job itself died."""

    def close(self, cancel: bool = False) -> None:
        """Release the workers; `cancel` stops trials still running (the search was interrupted)."""


class Runner:
    """The controller's Runner (search/controller.py): trains on a Backend, records through a TrialRecorder."""

    def __init__(
        self,
        backend: Backend,
        recorder: TrialRecorder,
        progress: Progress | None = None,
        checkpoint_dir: Path | None = None,
        checkpoint_seconds: float = 60.0,
        study_storage: str | None = None,
        warm: WarmStarts | None = None,
    ):
        self.backend = backend
        self.recorder = recorder
        self.progress = progress or QuietProgress()
        self.checkpoint_dir = checkpoint_dir.resolve() if checkpoint_dir is not None else None  # None: no within-trial checkpoints
        self.checkpoint_seconds = checkpoint_seconds
        self.study_storage = study_storage  # where other processes report epochs for pruning (a URL every process can open)
        self.warm = warm  # parents' trained weights, grown for their children (None: cold starts only)
        self.run_ids: dict[str, str] = {}  # trial key -> MLflow run id
        self.running: dict[int, tuple[Any, str]] = {}  # request index -> (backend handle, run id)

    @property
    def concurrency(self) -> int:
        return self.backend.capacity

    def begin_stage(self, stage: Stage) -> None:
        self.recorder.start_stage(stage)
        self.progress.stage(stage)

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]:
        """Every request's outcome, in request order: replayed, or trained `capacity` at a time."""
        outcomes: dict[int, TrialOutcome] = {}
        try:
            for index, request in enumerate(requests):
                interrupts.check()  # between trials: a stop signal whose exception was swallowed still stops here
                reused = self.recorder.reusable(request)
                if reused:  # completed by an earlier attempt of this search: replayed, not retrained
                    self.run_ids[request.key], outcomes[index] = reused
                    self.remember(outcomes[index])
                    self.progress.trial_done(outcomes[index], reused=True)
                else:
                    while len(self.running) >= self.backend.capacity:
                        self.collect(requests, outcomes, block=True)
                    self.dispatch(stage, index, request)
                self.collect(requests, outcomes, block=False)
            while self.running:
                self.collect(requests, outcomes, block=True)
        except BaseException:
            self.running.clear()
            self.backend.close(cancel=True)  # interrupted: stop the trials still running; the recorder marks their runs
            raise
        return [outcomes[index] for index in range(len(requests))]

    def dispatch(self, stage: Stage, index: int, request: TrialRequest) -> None:
        """Open the trial's run, grow its warm start and hand it to the backend."""
        self.progress.trial(request)
        warm = self.warm.for_request(request) if self.warm else None
        run_id = self.recorder.start_trial(request, warm=warm is not None, growth_note=warm.note if warm else "")
        self.run_ids[request.key] = run_id
        task = TrialTask(
            request,
            checkpoint_path=self.checkpoint_dir / f"{request.key}.pt" if self.checkpoint_dir is not None and self.checkpoint_seconds > 0 else None,
            checkpoint_seconds=self.checkpoint_seconds,
            remote=stage.remote_trial(request) if self.study_storage else None,
            storage=self.study_storage,
            initial_state=warm.state if warm else None,
        )

        def on_epoch(record: EpochRecord) -> bool:
            interrupts.check()  # a stop signal whose exception was swallowed still stops the trial here
            self.progress.epoch(request, record)
            return stage.on_epoch(request, record)

        self.running[index] = (self.backend.submit(task, on_epoch), run_id)

    def collect(self, requests: list[TrialRequest], outcomes: dict[int, TrialOutcome], block: bool) -> None:
        """Record the trials that are done (`block`: wait for at least one first)."""
        if block:
            self.backend.wait([handle for handle, _ in self.running.values()])
        for index in [i for i, (handle, _) in self.running.items() if self.backend.done(handle)]:
            handle, run_id = self.running.pop(index)
            try:
                outcome, traceback_text = self.backend.result(handle)
            except StudyStorageLost:  # the worker lost the Optuna storage: the search stops, the trial is not failed
                raise
            except Exception as error:  # the worker or job died (killed, out of memory, time limit)
                message = f"the worker running it died: {type(error).__name__}: {str(error)[:2000]}"
                outcome, traceback_text = TrialOutcome(requests[index], "failed", None, error=message), traceback.format_exc()
            self.remember(outcome)
            self.recorder.finish_trial(run_id, outcome, traceback_text)
            self.progress.trial_done(outcome)
            outcomes[index] = outcome

    def remember(self, outcome: TrialOutcome) -> None:
        if self.warm is not None:
            self.warm.remember(outcome)

    def end_stage(self, stage: Stage, result: StageResult, outcomes: list[TrialOutcome]) -> None:
        self.recorder.finish_stage(result, outcomes, self.run_ids)

    def close(self) -> None:
        self.backend.close()
