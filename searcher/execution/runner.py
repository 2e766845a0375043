"""The one Runner: replays finished trials, grows warm starts, dispatches the rest to a backend, records every outcome.

Serial, parallel, speculative and resumed runs share this one recording path; only
where a trial trains differs (a Backend): in this process (in_process.py), in
worker processes (processes.py) or as submitit jobs (submitit.py). A trial's run
is started when the trial is dispatched and finished when its outcome comes back;
a trial an earlier attempt of the search completed is replayed from its record,
not retrained. Outcomes are returned in request order, never completion order,
so the stages decide exactly as in a serial run.

Speculation (docs/design.md §5): the procedure is a chain, so slots idle while a
round's last trials finish. A slot that would idle trains what the stage guesses it
will ask next (`Stage.speculate`: a tie's extra seeds, the leading child's own
children). A guess is a trial like any other, keyed the same way; when the stage
asks for that key, the speculative outcome is its answer, so decisions are exactly a
serial run's. Guesses the search never asked for are recorded as `discarded`.
Over 300 lines because it is one path: replay, speculation, retries and recording
split apart would scatter the rules that keep decisions identical to a serial run.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from searcher.crash import crash_point
from searcher.execution import interrupts
from searcher.execution.warm import WarmStarts
from searcher.execution.work import TrialTask
from searcher.search.stages import Stage, StageResult
from searcher.search.studies import StudyStorageLost
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.trainer import EpochCallback, EpochRecord, ShowEpoch

OUT_OF_MEMORY = "out_of_memory"  # how work.attempt words a CUDA out-of-memory failure


class Progress(Protocol):
    """What the user is shown as trials start, train and finish (report/terminal.py's RichProgress). `epoch` may be
    called from a trial's own thread (execution=threads)."""

    def stage(self, stage: Stage) -> None: ...

    def trial(self, request: TrialRequest, speculative: bool = False) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome, reused: bool = False, speculative: bool = False) -> None: ...

    def stage_ended(self, result: StageResult, outcomes: list[TrialOutcome]) -> None: ...


class QuietProgress:
    def stage(self, stage: Stage) -> None: ...

    def stage_ended(self, result: StageResult, outcomes: list[TrialOutcome]) -> None: ...

    def trial(self, request: TrialRequest, speculative: bool = False) -> None: ...

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None: ...

    def trial_done(self, outcome: TrialOutcome, reused: bool = False, speculative: bool = False) -> None: ...


class TrialRecorder(Protocol):
    """Where stages and trials are recorded (tracking/recorder.py's Recorder), and finished trials found again."""

    def reusable(self, request: TrialRequest) -> tuple[str, TrialOutcome] | None:
        """(run id, outcome) of the trial if an earlier attempt of the search completed it."""

    def start_stage(self, stage: Stage) -> None: ...

    def completed(self, request: TrialRequest) -> bool:
        """Did an earlier attempt of the search complete this trial? (`reusable` without reading it back.)"""

    def start_trial(self, request: TrialRequest, warm: bool = False, growth_note: str = "", speculative: bool = False) -> str:
        """Open the trial's run; returns its id."""

    def finish_trial(self, run_id: str, outcome: TrialOutcome, traceback_text: str | None = None) -> None: ...

    def adopt_trial(self, run_id: str, stage: Stage) -> None:
        """A speculative trial the search asked for after all: it belongs to `stage` now."""

    def discard_trial(self, run_id: str, finished: bool) -> None:
        """A speculative trial the search never asked for (`finished`: else it was stopped in flight)."""

    def unasked_earlier_guesses(self) -> list[str]:
        """Run ids of guesses an earlier attempt of the search finished and this one never asked for (a resume)."""

    def finish_stage(self, result: StageResult, outcomes: list[TrialOutcome], run_ids: dict[str, str]) -> None: ...


class Backend(Protocol):
    """Somewhere trials train: `capacity` at once, each one submitted as a TrialTask."""

    capacity: int

    def submit(self, task: TrialTask, on_epoch: EpochCallback, show: ShowEpoch | None = None) -> Any:
        """Start the trial; returns a handle. `on_epoch` is the stage's per-epoch callback, for a backend that
        trains in this process's main thread; the others report epochs to `task.remote` through the shared Optuna
        storage. `show`: the user's live line, for a backend whose trials train in this process (any thread)."""

    def wait(self, handles: list[Any]) -> None:
        """Return once at least one of `handles` is done."""

    def done(self, handle: Any) -> bool: ...

    def result(self, handle: Any) -> tuple[TrialOutcome, str | None]:
        """The outcome and traceback text; raises when the worker or job itself died."""

    def close(self, cancel: bool = False) -> None:
        """Release the workers; `cancel` stops trials still running (the search was interrupted)."""


@dataclass
class Flight:
    """A trial being trained: its backend handle and run, and whether it was a guess when it started."""

    request: TrialRequest
    handle: Any
    run_id: str
    speculative: bool
    initial_state: dict | None = field(default=None, repr=False)  # a warm start's grown weights (a retry trains from them again)
    retried: bool = False  # already retried once with no neighbours after running out of memory


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
        speculate: bool = False,
    ):
        self.backend = backend
        self.recorder = recorder
        self.progress = progress or QuietProgress()
        self.checkpoint_dir = checkpoint_dir.resolve() if checkpoint_dir is not None else None  # None: no within-trial checkpoints
        self.checkpoint_seconds = checkpoint_seconds
        self.study_storage = study_storage  # where other processes report epochs for pruning (a URL every process can open)
        self.warm = warm  # parents' trained weights, grown for their children (None: cold starts only)
        self.speculate = speculate and backend.capacity > 1  # fill idle slots with the stage's guesses
        self.run_ids: dict[str, str] = {}  # trial key -> MLflow run id
        self.flights: dict[str, Flight] = {}  # trial key -> trained right now
        self.guessed: dict[str, tuple[str, TrialOutcome]] = {}  # finished guesses not asked for (yet): key -> (run id, outcome)
        self.stage_done: list[TrialOutcome] = []  # the stage's outcomes so far: what its guesses are made from
        self.retry: Flight | None = None  # a trial out of memory beside others: retried once the GPU is its own
        self.clock: Callable[[], float] | None = None  # the search's clock (search/budget.py): stamped on every outcome recorded

    @property
    def concurrency(self) -> int:
        return self.backend.capacity

    def begin_stage(self, stage: Stage) -> None:
        interrupts.check()  # a stop that waited for the last record comes before another run is opened
        self.stage_done = []
        self.recorder.start_stage(stage)
        self.progress.stage(stage)

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]:
        """Every request's outcome, in request order: replayed, or trained `capacity` at a time."""
        wanted = {request.key: index for index, request in enumerate(requests)}
        outcomes: dict[int, TrialOutcome] = {}
        try:
            for request in requests:
                interrupts.check()  # between trials: a stop signal whose exception was swallowed still stops here
                if self.adopt(stage, request, wanted, outcomes):
                    continue
                reused = self.recorder.reusable(request)
                if reused:  # completed by an earlier attempt of this search: replayed, not retrained
                    self.run_ids[request.key], outcome = reused
                    self.remember(outcome)
                    self.progress.trial_done(outcome, reused=True)
                    self.settle(request.key, outcome, wanted, outcomes)
                    continue
                while not self.room():
                    self.collect(stage, wanted, outcomes, block=True)
                self.dispatch(stage, request)
                self.collect(stage, wanted, outcomes, block=False)
            while len(outcomes) < len(requests):
                self.fill_with_guesses(stage)
                self.collect(stage, wanted, outcomes, block=True)
        except BaseException:
            self.flights.clear()
            self.retry = None
            self.backend.close(cancel=True)  # interrupted: stop the trials still running; the recorder marks their runs
            raise
        return [outcomes[index] for index in range(len(requests))]

    def adopt(self, stage: Stage, request: TrialRequest, wanted: dict[str, int], outcomes: dict[int, TrialOutcome]) -> bool:
        """A request that was guessed earlier: its outcome now, or its flight awaited like the others. False: not guessed."""
        flight = self.flights.get(request.key)
        if flight is not None and flight.speculative:
            flight.speculative = False
            self.run_ids[request.key] = flight.run_id
            self.recorder.adopt_trial(flight.run_id, stage)
            return True  # (collected with the batch: its key is wanted)
        if request.key in self.guessed:
            run_id, outcome = self.guessed.pop(request.key)
            self.recorder.adopt_trial(run_id, stage)
            self.run_ids[request.key] = run_id
            self.settle(request.key, outcome, wanted, outcomes)
            return True
        return False

    def settle(self, key: str, outcome: TrialOutcome, wanted: dict[str, int], outcomes: dict[int, TrialOutcome]) -> None:
        outcomes[wanted[key]] = outcome
        self.stage_done.append(outcome)

    def room(self) -> bool:
        """Is a slot free? Not while a trial that ran out of memory waits for, or has, the device to itself."""
        alone = self.retry is not None or any(flight.retried for flight in self.flights.values())
        return not alone and len(self.flights) < self.backend.capacity

    def fill_with_guesses(self, stage: Stage) -> None:
        """Free slots train the stage's guesses of what it asks next."""
        if not self.speculate or not self.room():
            return
        for request in stage.speculate(self.stage_done):
            if not self.room():
                return
            known = request.key in self.flights or request.key in self.guessed or request.key in self.run_ids
            parent_ready = request.parent is None or (self.warm is not None and request.parent in self.warm.finished)
            if not known and parent_ready and not self.recorder.completed(request):
                self.dispatch(stage, request, speculative=True)

    def dispatch(self, stage: Stage, request: TrialRequest, speculative: bool = False) -> None:
        """Open the trial's run, grow its warm start and hand it to the backend.

        A stop that came while the trial before was being recorded waited for that record (interrupts.py), and its
        second delivery may come only once this run's opening has begun: it is raised first, so that no run is opened
        (no record begun: `begin_stage`, `end_stage`, `end_search` too) after it. A process that lost its lease leaves
        the search's runs to the new owner, who never sees a run opened after it took over (CI found one left RUNNING)."""
        interrupts.check()
        self.progress.trial(request, speculative)
        warm = self.warm.for_request(request) if self.warm else None
        run_id = self.recorder.start_trial(request, warm=warm is not None, growth_note=warm.note if warm else "", speculative=speculative)
        if not speculative:
            self.run_ids[request.key] = run_id
        crash_point("trial.started")  # (a test hook: searcher/crash.py)
        state = warm.state if warm else None
        self.flights[request.key] = Flight(request, self.submit(stage, request, state), run_id, speculative, state)

    def submit(self, stage: Stage, request: TrialRequest, initial_state: dict | None) -> Any:
        task = TrialTask(
            request,
            checkpoint_path=self.checkpoint_dir / f"{request.key}.pt" if self.checkpoint_dir is not None and self.checkpoint_seconds > 0 else None,
            checkpoint_seconds=self.checkpoint_seconds,
            remote=stage.remote_trial(request) if self.study_storage else None,
            storage=self.study_storage,
            initial_state=initial_state,
        )

        def on_epoch(record: EpochRecord) -> bool:
            interrupts.check()  # a stop signal whose exception was swallowed still stops the trial here
            return stage.on_epoch(request, record)

        def show(record: EpochRecord) -> None:
            self.progress.epoch(request, record)

        return self.backend.submit(task, on_epoch, show)

    def collect(self, stage: Stage, wanted: dict[str, int], outcomes: dict[int, TrialOutcome], block: bool) -> None:
        """Record the trials that are done (`block`: wait for at least one first)."""
        if self.retry is not None and not self.flights:  # the GPU is the retried trial's alone now
            retry, self.retry = self.retry, None
            retry.handle, retry.retried = self.submit(stage, retry.request, retry.initial_state), True
            self.flights[retry.request.key] = retry
        if block and self.flights:
            self.backend.wait([flight.handle for flight in self.flights.values()])
        for key in [key for key, flight in self.flights.items() if self.backend.done(flight.handle)]:
            flight = self.flights.pop(key)
            try:
                outcome, traceback_text = self.backend.result(flight.handle)
            except StudyStorageLost:  # the worker lost the Optuna storage: the search stops, the trial is not failed
                raise
            except Exception as error:  # the worker or job died (killed, out of memory, time limit)
                message = f"the worker running it died: {type(error).__name__}: {str(error)[:2000]}"
                outcome, traceback_text = TrialOutcome(flight.request, "failed", None, error=message), traceback.format_exc()
            if self.crowded_out(flight, outcome):
                self.retry = flight  # not recorded yet: its run stays open for the retry
                continue
            crash_point("trial.finished")  # (test hooks: searcher/crash.py)
            if self.clock is not None:
                outcome = replace(outcome, elapsed=self.clock())
            self.remember(outcome)
            self.recorder.finish_trial(flight.run_id, outcome, traceback_text)
            crash_point("trial.recorded")
            self.progress.trial_done(outcome, speculative=flight.speculative)
            if key in wanted and not flight.speculative:
                self.settle(key, outcome, wanted, outcomes)
            else:
                self.guessed[key] = (flight.run_id, outcome)

    def crowded_out(self, flight: Flight, outcome: TrialOutcome) -> bool:
        """Out of memory while other trials shared the device: it may fit alone, so it is retried once with no neighbours."""
        return (
            outcome.status == "failed"
            and (outcome.error or "").startswith(OUT_OF_MEMORY)
            and not flight.retried
            and self.backend.capacity > 1
        )

    def remember(self, outcome: TrialOutcome) -> None:
        if self.warm is not None:
            self.warm.remember(outcome)

    def end_stage(self, stage: Stage, result: StageResult, outcomes: list[TrialOutcome]) -> None:
        interrupts.check()  # (as before opening a run: no record begins after a stop came)
        self.recorder.finish_stage(result, outcomes, self.run_ids)
        self.progress.stage_ended(result, outcomes)

    def end_search(self) -> None:
        """The search is decided: guesses still in flight are stopped, and every guess never asked for is recorded as discarded."""
        interrupts.check()
        if self.flights:
            self.backend.close(cancel=True)
            for flight in self.flights.values():
                self.recorder.discard_trial(flight.run_id, finished=False)
            self.flights.clear()
        for run_id in [run_id for run_id, _ in self.guessed.values()] + self.recorder.unasked_earlier_guesses():
            self.recorder.discard_trial(run_id, finished=True)
        self.guessed.clear()

    def close(self) -> None:
        self.backend.close()
