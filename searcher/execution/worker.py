"""What runs in a worker process or a submitit job: the data loaded from its options, then trials (work.py).

The main process keeps every decision and every record; a worker only trains. It
gets the dataset by its options (and checks it loaded the very data the main
process did), and each trial as a TrialTask; outcomes travel back as pickle bytes.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.execution.work import TrialTask, run_task
from searcher.search.trials import TrialOutcome


@dataclass(frozen=True)
class DataSpec:
    options: DatasetOptions
    identity: str  # the main process's dataset identity: a worker must train on the same data
    device: str  # resolved where the worker runs: "cuda:1", "cpu", or "auto" in a SLURM job


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

    from searcher.model.cnn import CNN
    from searcher.model.family import build_network
    from searcher.model.mlp import MLP
    from searcher.train.metrics import task_loss

    shape = data.dataset.input_shape
    family = CNN() if data.dataset.is_image else MLP()  # any small network pays the first-use costs
    model = build_network(family, family.baseline(1, 4, shape), shape, data.dataset.num_classes)
    model = model.to(data.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    augmentable = data.dataset.augmentable
    images, labels = next(data.train.shuffled_batches(64, torch.Generator().manual_seed(0), int(augmentable), augmentable and data.dataset.flip))
    with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=data.device.type == "cuda"):
        loss = task_loss(model(images).float(), labels, label_smoothing=0.1)  # (squared error for a regression target)
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        model(images).argmax(1).sum().item()


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
