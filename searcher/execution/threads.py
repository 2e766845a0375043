"""What this machine runs trials with: how many at once, on which devices, and how many torch threads each.

CPU float sums depend on the thread count, so a trial's numbers (and every decision after it)
would change with how many trials run beside it if each took "the free cores". A CPU trial
therefore trains with a fixed number of threads, one unless `execution.threads_per_trial` says
otherwise (Ray Tune's default is one CPU per trial too): serial and parallel runs with the same
seed then decide alike, and parallel runs use the cores by running trials side by side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def cpu_cores() -> int:
    """The cores this process may use: its CPU affinity, and in a SLURM job its allocation (SLURM_CPUS_PER_TASK),
    which a cluster that does not bind tasks to cores leaves out of the affinity."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(cores, int(allocated)) if allocated.isdigit() else cores)


def worker_devices(device: str, workers: int) -> list[str]:
    """One device per worker: CPU, one named GPU, or all GPUs round-robin."""
    if not device.startswith("cuda"):
        return ["cpu"] * workers
    if ":" in device:
        return [device] * workers
    import torch

    count = max(1, torch.cuda.device_count())
    return [f"cuda:{index % count}" for index in range(workers)]


def default_workers(device: str, trials_per_gpu: int, threads_per_trial: int | None = None) -> int:
    """Trials at once when `execution.workers` is not set: every GPU x `trials_per_gpu` on CUDA, else CPU cores / threads a trial."""
    if device == "cuda":
        import torch

        return max(1, torch.cuda.device_count()) * trials_per_gpu
    if device.startswith("cuda:"):
        return trials_per_gpu
    return max(1, cpu_cores() // (threads_per_trial or 1))


def trial_threads(device: str, trials_at_once: int, setting: int | None = None) -> int:
    """`setting` when given; CPU trials: 1; CUDA trials (whose CPU threads only feed the GPU): the cores shared
    among the trials at once, never more than this process may use itself (OMP_NUM_THREADS, or joblib's limit)."""
    if setting:
        return setting
    if not device.startswith("cuda"):
        return 1
    import torch

    return max(1, min(cpu_cores() // trials_at_once, torch.get_num_threads()))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Train in this process with `count` threads, then give back what the caller had."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
