"""One trial, wherever it runs (this process, a worker, a submitit job): the task, the work, and `attempt`.

A task is plain picklable values: the request, where to checkpoint, the grown
initial weights of a warm start and, for trials trained away from the search's
process, the Optuna trial to report epochs to through the shared storage (so
pruning there is the same pruning as here). The work trains the requested
network (`train_request`) or probes a trained one's features (`probe_request`,
the transfer stage). `attempt` turns any exception into a `failed` outcome with
its reason: a broken trial never ends the search, only the controller decides
what a failure means.
"""

from __future__ import annotations

import gc
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from searcher.data.batches import DeviceData
from searcher.model.spec import ArchSpec
from searcher.search.studies import RemoteTrial, StudyStorageLost
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.checkpoint import Checkpointing
from searcher.train.linear_probe import ProbeSettings, probe_trial
from searcher.train.trainer import EpochCallback, EpochRecord, ShowEpoch, TrainResult, TrialStopped, train_trial

# What running a trial means: (data, request, per-epoch callback, checkpointing, warm-start weights, stop) -> result.
Work = Callable[[DeviceData, TrialRequest, EpochCallback | None, "Checkpointing | None", "dict[str, Any] | None", "threading.Event | None"], TrainResult]


@dataclass(frozen=True)
class TrialTask:
    request: TrialRequest
    checkpoint_path: Path | None = None  # within-trial checkpoints (None: none)
    checkpoint_seconds: float = 60.0
    remote: RemoteTrial | None = None  # report epochs here (regularization trials trained in another process)
    storage: str | None = None  # the Optuna storage `remote` lives in
    initial_state: dict | None = None  # warm start: the parent's weights, grown for this trial (CPU tensors)


def train_request(
    data: DeviceData,
    request: TrialRequest,
    on_epoch: EpochCallback | None,
    checkpoint: Checkpointing | None = None,
    initial_state: dict[str, Any] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """The ordinary trial: train the requested network until stable (from `initial_state` when warm-started)."""
    return train_trial(
        request.arch,
        data.fold(request.fold, request.folds),
        request.train,
        request.seed,
        family=request.family,
        metric=request.metric,
        evaluate_test=request.evaluate_test,
        on_epoch=on_epoch,
        checkpoint=checkpoint,
        initial_state=initial_state,
        stop=stop,
        rungs=request.rungs,
        rung_epochs=request.rung_epochs,
    )


def probe_request(settings: ProbeSettings | None = None) -> Work:
    """The transfer stage's work: probe the features of the trained trial each request carries, on the target's data."""
    settings = settings or ProbeSettings()

    def probe(
        data: DeviceData, request: TrialRequest, on_epoch: EpochCallback | None, checkpoint: object = None, initial_state: object = None, stop: object = None
    ) -> TrainResult:
        # probes are short (no checkpoints, always in the search's own thread) and start from the probed trial's weights
        if not isinstance(request.arch, ArchSpec):
            raise ValueError(f"{request.label}: the transfer stage probes conv features; this trial's network is not the cnn's")
        if request.source_state is None:
            raise ValueError(f"{request.label}: the source trial's weights are not in memory; nothing to probe")
        return probe_trial(request.arch, request.source_state, data, settings, request.seed, on_epoch=on_epoch)

    return probe


def outcome_of(request: TrialRequest, result: TrainResult) -> TrialOutcome:
    if result.behavior == "diverged":
        return TrialOutcome(request, "failed", result, error=f"diverged: {result.why or 'the loss became NaN/inf or exploded'}")
    return TrialOutcome(request, "pruned" if result.stopped_early else "ok", result)


def attempt(
    data: DeviceData,
    request: TrialRequest,
    on_epoch: EpochCallback | None,
    checkpoint: Checkpointing | None,
    work: Work = train_request,
    initial_state: dict[str, Any] | None = None,
    stop: threading.Event | None = None,
) -> tuple[TrialOutcome, str | None]:
    """Run `work` on one trial; any exception becomes a failed outcome plus its traceback."""
    try:
        result = work(data, request, on_epoch, checkpoint, initial_state, stop)
    except (StudyStorageLost, TrialStopped):  # not the trial's fault: the search stops, a re-run trains the trial again
        raise
    except Exception as error:  # a broken trial must not end the search
        gc.collect()
        if isinstance(error, torch.cuda.OutOfMemoryError):  # that size is infeasible here: free the memory, go on
            torch.cuda.empty_cache()
            return TrialOutcome(request, "failed", None, error=f"out_of_memory: {error}"), traceback.format_exc()
        return TrialOutcome(request, "failed", None, error=f"{type(error).__name__}: {error}"), traceback.format_exc()
    return outcome_of(request, result), None


def run_task(
    data: DeviceData,
    task: TrialTask,
    on_epoch: EpochCallback | None = None,
    work: Work = train_request,
    stop: threading.Event | None = None,
    show: ShowEpoch | None = None,
) -> tuple[TrialOutcome, str | None]:
    """Run a task on `data`. `on_epoch`: the stage's callback, where the trial trains in the search's process;
    elsewhere the task's remote trial takes the epochs (through the shared Optuna storage). `stop`: once set, the
    trial ends at its next step (a trial in a thread can be stopped no other way). `show`: each epoch, to the user."""
    if task.remote is not None and task.storage is not None:
        try:
            on_epoch = task.remote.reporter(task.storage)
        except StudyStorageLost:
            raise
        except Exception as error:  # the trial cannot be pruned like a serial one would: fail it, loudly
            message = f"cannot reach the Optuna storage to report epochs: {type(error).__name__}: {error}"
            return TrialOutcome(task.request, "failed", None, error=message), traceback.format_exc()
    if show is not None:
        on_epoch = shown(on_epoch, show)
    checkpoint = Checkpointing(task.checkpoint_path, task.checkpoint_seconds) if task.checkpoint_path else None
    return attempt(data, task.request, on_epoch, checkpoint, work, task.initial_state, stop)


def shown(on_epoch: EpochCallback | None, show: ShowEpoch) -> EpochCallback:
    """`on_epoch`, with each epoch shown first."""

    def both(record: EpochRecord) -> bool:
        show(record)
        return on_epoch(record) if on_epoch is not None else False

    return both
