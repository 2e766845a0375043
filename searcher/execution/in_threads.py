"""`execution=threads`: trials train side by side in threads of the search's own process, each on a CUDA stream of its own.

Worker processes that share one GPU take turns on it (without MPS a GPU runs one
process's kernels at a time), so small graphed trials, whose kernels fill a fraction
of the GPU, gain nothing from sharing it that way (docs/BENCHMARKS.md §5: 0.98x).
Streams of one process can run at once. Threads also share one copy of the data on
each device and one CUDA context, and start in no time.

A trial in a thread trains exactly as it would alone: its initial weights are drawn
under one lock (model/build.py), its dropout masks, shuffling and augmentation come
from generators of its own, and CPU trials keep the search's fixed torch thread count
(execution/threads.py). As from a worker process, epochs reach pruning through the
Optuna storage; a stopped search ends each trial at the step it is at.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from searcher.data import DeviceData, ImageDataset
from searcher.execution.work import TrialTask, run_task
from searcher.execution.worker import warm_up
from searcher.search.trials import TrialOutcome
from searcher.train.trainer import EpochCallback, ShowEpoch


@dataclass(frozen=True)
class Slot:
    """Where one trial at a time trains: a device, and on CUDA a stream no other trial uses."""

    device: torch.device
    stream: Any = None  # torch.cuda.Stream on CUDA

    @contextmanager
    def current(self) -> Iterator[None]:
        """This thread's current device and stream, for the trial's every kernel and allocation."""
        if self.stream is None:
            yield
            return
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            yield


class ThreadBackend:
    """`capacity` trials at once, in threads of this process, round-robin over `devices` (one per slot)."""

    def __init__(self, dataset: ImageDataset, devices: list[str]):
        self.capacity = len(devices)
        self.devices = devices
        self.data = {name: DeviceData(dataset, torch.device(name)) for name in sorted(set(devices))}  # one copy per device
        for data in self.data.values():  # PyTorch's first-use costs (imports, the CUDA context, cuDNN) paid here, once:
            warm_up(data)  # a trial thread in the middle of them would not see a stop for a second
        self.slots: queue.SimpleQueue[Slot] = queue.SimpleQueue()
        for name in devices:  # (drawn one after another from torch's round-robin pool of 32 streams a device: distinct)
            device = torch.device(name)
            self.slots.put(Slot(device, torch.cuda.Stream(device) if device.type == "cuda" else None))
        self.stopping = threading.Event()
        self.pool = cf.ThreadPoolExecutor(self.capacity, thread_name_prefix="searcher-trial", initializer=adopt_torch_threads)

    def submit(self, task: TrialTask, on_epoch: EpochCallback | None = None, show: ShowEpoch | None = None) -> cf.Future:
        """(`on_epoch` stays here: the trial reports its epochs to `task.remote`, as in a worker process; `show`,
        the live line, is called from the trial's thread.)"""
        return self.pool.submit(self.train, task, show)

    def train(self, task: TrialTask, show: ShowEpoch | None = None) -> tuple[TrialOutcome, str | None]:
        slot = self.slots.get()  # as many threads as slots: one is free
        try:
            with slot.current():
                return run_task(self.data[str(slot.device)], task, stop=self.stopping, show=show)
        finally:
            self.slots.put(slot)

    def wait(self, handles: list[cf.Future]) -> None:
        cf.wait(handles, return_when=cf.FIRST_COMPLETED)

    def done(self, handle: cf.Future) -> bool:
        return handle.done()

    def result(self, handle: cf.Future) -> tuple[TrialOutcome, str | None]:
        return handle.result()

    def close(self, cancel: bool = False) -> None:
        """Wait for the trials in flight; `cancel`: each stops at the step it is at, and queued ones never start."""
        if cancel:
            self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=cancel)


def adopt_torch_threads() -> None:
    """A new thread computes with torch's process-wide thread count (set by the search), not OpenMP's default:
    torch applies it to a thread on the thread's first call into its thread pool, and a convolution (oneDNN) may come
    first. Without this, a CPU trial's first sums in a fresh thread used every core and came out differently."""
    torch.get_num_threads()
