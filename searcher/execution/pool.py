"""Runs a stage's trials several at once on a backend (worker processes, submitit jobs), recording them here.

The recording is the serial runner's: a trial's run is started when the trial is
dispatched and finished when its outcome comes back, and a trial an earlier
attempt completed is reused, not retrained. Outcomes are returned in request
order, never completion order, so the stages decide exactly as in a serial run.
"""

from __future__ import annotations

import traceback
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from searcher.execution.local import Progress, QuietProgress
from searcher.execution.warm import WarmStarts
from searcher.execution.worker import TrialTask
from searcher.search.stages import Stage, StageResult
from searcher.search.trials import TrialOutcome, TrialRequest


class Backend(Protocol):
    """Somewhere trials train: `capacity` at once, each one submitted as a TrialTask."""

    capacity: int

    def submit(self, task: TrialTask) -> Any: ...

    def wait(self, handles: list[Any]) -> None:
        """Return once at least one of `handles` is done."""

    def done(self, handle: Any) -> bool: ...

    def result(self, handle: Any) -> tuple[TrialOutcome, str | None]:
        """The outcome and traceback text; raises when the worker or job itself died."""

    def close(self, cancel: bool = False) -> None:
        """Release the workers; `cancel` stops trials still running (the search was interrupted)."""


class PoolRunner:
    """The Runner for concurrent execution: dispatches to a Backend, records in this process."""

    def __init__(
        self,
        backend: Backend,
        recorder: Any,
        progress: Progress | None = None,
        checkpoint_dir: Path | None = None,
        checkpoint_seconds: float = 60.0,
        study_storage: str | None = None,
        warm: WarmStarts | None = None,
    ):
        self.backend = backend
        self.recorder = recorder
        self.progress = progress or QuietProgress()
        self.checkpoint_dir = checkpoint_dir.resolve() if checkpoint_dir is not None else None
        self.checkpoint_seconds = checkpoint_seconds
        self.study_storage = study_storage  # where workers report epochs for pruning (a URL every process can open)
        self.run_ids: dict[str, str] = {}  # trial key -> MLflow run id
        self.warm = warm  # parents' weights, grown here and shipped with the child's task

    @property
    def concurrency(self) -> int:
        return self.backend.capacity

    def begin_stage(self, stage: Stage) -> None:
        self.recorder.start_stage(stage)
        self.progress.stage(stage)

    def task(self, stage: Stage, request: TrialRequest, initial_state: dict | None = None) -> TrialTask:
        checkpointing = self.checkpoint_dir is not None and self.checkpoint_seconds > 0
        return TrialTask(
            request,
            checkpoint_path=self.checkpoint_dir / f"{request.key}.pt" if checkpointing else None,  # type: ignore[operator]
            checkpoint_seconds=self.checkpoint_seconds,
            remote=stage.remote_trial(request) if self.study_storage else None,
            storage=self.study_storage,
            initial_state=initial_state,
        )

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]:
        outcomes: dict[int, TrialOutcome] = {}
        waiting: deque[int] = deque()
        for index, request in enumerate(requests):
            reused = self.recorder.reusable(request)
            if reused:  # completed by an earlier attempt of this search: replayed, not retrained
                self.run_ids[request.key], outcomes[index] = reused
                self.remember(outcomes[index])
                self.progress.trial_done(outcomes[index], reused=True)
            else:
                waiting.append(index)
        running: dict[int, tuple[Any, str]] = {}  # request index -> (backend handle, run id)
        try:
            while waiting or running:
                while waiting and len(running) < self.backend.capacity:
                    index = waiting.popleft()
                    request = requests[index]
                    self.progress.trial(request)
                    warm = self.warm.for_request(request) if self.warm else None
                    run_id = self.recorder.start_trial(request, warm=warm is not None, growth_note=warm.note if warm else "")
                    self.run_ids[request.key] = run_id
                    task = self.task(stage, request, warm.state if warm else None)
                    running[index] = (self.backend.submit(task), run_id)
                self.backend.wait([handle for handle, _ in running.values()])
                for index in [i for i, (handle, _) in running.items() if self.backend.done(handle)]:
                    handle, run_id = running.pop(index)
                    try:
                        outcome, traceback_text = self.backend.result(handle)
                    except Exception as error:  # the worker or job died (killed, out of memory, time limit)
                        message = f"the worker running it died: {type(error).__name__}: {str(error)[:2000]}"
                        outcome, traceback_text = TrialOutcome(requests[index], "failed", None, error=message), traceback.format_exc()
                    self.remember(outcome)
                    self.recorder.finish_trial(run_id, outcome, traceback_text)
                    self.progress.trial_done(outcome)
                    outcomes[index] = outcome
        except BaseException:
            self.backend.close(cancel=True)  # interrupted: stop the trials still running; the recorder marks their runs
            raise
        return [outcomes[index] for index in range(len(requests))]

    def remember(self, outcome: TrialOutcome) -> None:
        if self.warm is not None:
            self.warm.remember(outcome)

    def end_stage(self, stage: Stage, result: StageResult, outcomes: list[TrialOutcome]) -> None:
        self.recorder.finish_stage(result, outcomes, self.run_ids)

    def close(self) -> None:
        self.backend.close()
