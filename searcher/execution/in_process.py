"""`execution=serial`: each trial trains in the search's own process, one at a time, as soon as it is dispatched.

Only here does a trial call its stage's per-epoch callback directly (pruning and
a stop signal checked after every epoch); the transfer
stage's probes always run here, on the target's data.
"""

from __future__ import annotations

from pathlib import Path

from searcher.data.batches import DeviceData
from searcher.execution.runner import Progress, Runner, TrialRecorder
from searcher.execution.warm import WarmStarts
from searcher.execution.work import TrialTask, Work, run_task, train_request
from searcher.search.trials import TrialOutcome
from searcher.train.trainer import EpochCallback, ShowEpoch

Done = tuple[TrialOutcome, "str | None"]  # a handle here is the finished trial's outcome and traceback text


class InProcessBackend:
    """Trains a trial in this process when it is submitted: capacity one, every handle done at once."""

    capacity = 1

    def __init__(self, data: DeviceData, work: Work = train_request):
        self.data = data
        self.work = work  # training, or a transfer probe

    def submit(self, task: TrialTask, on_epoch: EpochCallback, show: ShowEpoch | None = None) -> Done:
        return run_task(self.data, task, on_epoch, self.work, show=show)

    def wait(self, handles: list[Done]) -> None:
        """Nothing to wait for: `submit` trained the trial."""

    def done(self, handle: Done) -> bool:
        return True

    def result(self, handle: Done) -> Done:
        return handle

    def close(self, cancel: bool = False) -> None:
        """Nothing to release: trials ran in this process."""


def serial_runner(
    data: DeviceData,
    recorder: TrialRecorder,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_seconds: float = 60.0,
    work: Work = train_request,
) -> Runner:
    """A Runner training in this process on `data`; warm starts are grown from `data` too."""
    return Runner(InProcessBackend(data, work), recorder, progress, checkpoint_dir, checkpoint_seconds, warm=WarmStarts(data))
