"""`execution=processes`: trials in N local worker processes, each with the dataset loaded once.

Workers start from a fork server (or are spawned; never forked from this process:
CUDA and threads do not survive a fork), load the data once, train with the
threads a trial gets (execution/threads.py: one on the CPU), and take CUDA
devices round-robin, `trials_per_gpu` to a GPU: small trials leave a GPU idle,
and four of them on one H100 gave 1.83x the throughput of one (docs/design.md §5).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
from dataclasses import replace
from typing import Any

from searcher.execution.threads import trial_threads, worker_devices
from searcher.execution.work import TrialTask, run_task
from searcher.execution.worker import DataSpec, load_data, packed, unpacked, warm_up
from searcher.search.trials import TrialOutcome
from searcher.train.trainer import EpochCallback, ShowEpoch

_data: Any = None  # this worker's DeviceData, loaded once by `_start_worker`
_load_error: str | None = None


def worker_context() -> Any:
    """forkserver where there is one: a clean server process imports torch and searcher once, and workers
    fork from it in milliseconds; spawn elsewhere. Never plain fork: CUDA and threads do not survive it."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        # In another library's worker (joblib's loky, under hydra/launcher=joblib) the default start method is
        # that library's; new workers are told to use it and cannot find it. Use the standard one here.
        multiprocessing.set_start_method(method, force=True)
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__])
    return context


def _start_worker(spec: DataSpec, devices: Any, threads: int) -> None:
    global _data, _load_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it stops the workers
    import torch

    torch.set_num_threads(threads)
    try:
        _data = load_data(replace(spec, device=devices.get()))
        warm_up(_data)
    except Exception as error:  # every trial of this worker fails with the reason, and the failure streak stops the search
        _load_error = f"the worker could not load the data: {type(error).__name__}: {error}"


def _ready() -> int:
    return os.getpid()


def _train(task: TrialTask) -> bytes:
    if _load_error is not None:
        return packed((TrialOutcome(task.request, "failed", None, error=_load_error), None))
    return packed(run_task(_data, task))


class ProcessBackend:
    def __init__(self, spec: DataSpec, workers: int, threads_per_trial: int | None = None):
        self.capacity = workers
        self.spec = spec
        self.threads = trial_threads(spec.device, workers, threads_per_trial)
        self.devices = worker_devices(spec.device, workers)
        self.executor = self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        context = worker_context()
        devices = context.Queue()
        for device in self.devices:
            devices.put(device)
        executor = cf.ProcessPoolExecutor(
            self.capacity, mp_context=context, initializer=_start_worker, initargs=(self.spec, devices, self.threads)
        )
        # Start every worker now, from a thread: starting the fork server waits for its imports, and the workers
        # then load the data and warm up while this process opens the tracking store.
        self.starter = threading.Thread(target=lambda: [executor.submit(_ready) for _ in range(self.capacity)], daemon=True)
        self.starter.start()
        return executor

    def submit(self, task: TrialTask, on_epoch: EpochCallback | None = None, show: ShowEpoch | None = None) -> cf.Future:
        """(`on_epoch` and `show` stay here: the worker reports epochs to `task.remote`; the live line shows no epochs of a trial in another process.)"""
        try:
            return self.executor.submit(_train, task)
        except cf.process.BrokenProcessPool:  # a worker was killed (out of memory?): start a fresh pool
            self.starter.join()
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._start()
            return self.executor.submit(_train, task)

    def wait(self, handles: list[cf.Future]) -> None:
        cf.wait(handles, return_when=cf.FIRST_COMPLETED)

    def done(self, handle: cf.Future) -> bool:
        return handle.done()

    def result(self, handle: cf.Future) -> tuple[TrialOutcome, str | None]:
        return unpacked(handle.result())

    def close(self, cancel: bool = False) -> None:
        self.starter.join()
        if cancel:
            for process in list(getattr(self.executor, "_processes", {}).values()):
                process.terminate()  # a trial in a worker cannot be interrupted any other way
        self.executor.shutdown(wait=not cancel, cancel_futures=True)
