"""What runs in a worker process or a submitit job: one trial, from plain picklable values.

The main process keeps every decision and every record; a worker only trains. It
gets the dataset by its options (and checks it loaded the very data the main
process did), the request, where to checkpoint, and, for the regularization
stage, the Optuna trial to report epochs to through the shared storage, so
pruning in a worker is the same pruning as in a serial run.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.execution.local import attempt
from searcher.search.studies import RemoteTrial
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.checkpoint import Checkpointing


@dataclass(frozen=True)
class DataSpec:
    options: DatasetOptions
    identity: str  # the main process's dataset identity: a worker must train on the same data
    device: str  # resolved where the worker runs: "cuda:1", "cpu", or "auto" in a SLURM job


@dataclass(frozen=True)
class TrialTask:
    request: TrialRequest
    checkpoint_path: Path | None = None  # within-trial checkpoints (None: none)
    checkpoint_seconds: float = 60.0
    remote: RemoteTrial | None = None  # report epochs here (regularization trials)
    storage: str | None = None  # the Optuna storage `remote` lives in
    initial_state: dict | None = None  # warm start: the parent's weights, grown for this trial (CPU tensors)


def load_data(spec: DataSpec) -> DeviceData:
    from searcher.train.trainer import resolve_device

    dataset = load_dataset(spec.options)
    if dataset.identity != spec.identity:
        raise RuntimeError(f"the worker loaded different data ({dataset.identity}) than the search ({spec.identity})")
    return DeviceData(dataset, resolve_device(spec.device))


def warm_up(data: DeviceData) -> None:
    """One training step of a tiny network, so the worker's first real trial does not pay PyTorch's
    first-use costs (about a second on a CPU; the CUDA context and cuDNN on a GPU)."""
    import torch

    from searcher.model.build import build_model
    from searcher.model.spec import LayoutPolicy

    model = build_model(LayoutPolicy(input_size=data.dataset.size).baseline(1, 4), data.dataset.channels, data.dataset.num_classes)
    model = model.to(data.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images, labels = next(data.train.shuffled_batches(64, torch.Generator().manual_seed(0), 1, data.dataset.flip))
    with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=data.device.type == "cuda"):
        loss = torch.nn.functional.cross_entropy(model(images).float(), labels, label_smoothing=0.1)
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        model(images).argmax(1).sum().item()


def run_task(data: DeviceData, task: TrialTask) -> tuple[TrialOutcome, str | None]:
    on_epoch = None
    if task.remote is not None and task.storage is not None:
        try:
            on_epoch = task.remote.reporter(task.storage)
        except Exception as error:  # the trial cannot be pruned like a serial one would: fail it, loudly
            import traceback

            message = f"cannot reach the Optuna storage to report epochs: {type(error).__name__}: {error}"
            return TrialOutcome(task.request, "failed", None, error=message), traceback.format_exc()
    checkpoint = Checkpointing(task.checkpoint_path, task.checkpoint_seconds) if task.checkpoint_path else None
    return attempt(data, task.request, on_epoch, checkpoint, initial_state=task.initial_state)


def packed(result: tuple[TrialOutcome, str | None]) -> bytes:
    """The outcome as plain pickle bytes: weights travel as copied bytes, not shared-memory handles."""
    return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)


def unpacked(payload: bytes) -> tuple[TrialOutcome, str | None]:
    return pickle.loads(payload)


def run_in_job(spec: DataSpec, task: TrialTask) -> bytes:
    """A submitit job's function: load the data, train the one trial."""
    try:
        data = load_data(spec)
    except Exception as error:
        import traceback

        return packed((TrialOutcome(task.request, "failed", None, error=f"loading the data failed: {type(error).__name__}: {error}"), traceback.format_exc()))
    return packed(run_task(data, task))
