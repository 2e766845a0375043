"""Where trials run, built from the config's `execution` section: the Runner `execution.kind` asks for, its workers,
and what `auto` becomes on this machine.

Every Runner records the same way (runner.py); only where trials train differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from searcher.config import AUTO, ConfigError, DatasetConfig, SearcherConfig, beside_tracking_store, data_dir
from searcher.data import DatasetOptions, DeviceData, ImageDataset
from searcher.execution.runner import Backend, Progress, Runner, TrialRecorder
from searcher.execution.threads import cpu_cores, default_workers, worker_devices
from searcher.train.trainer import resolve_device

if TYPE_CHECKING:
    from searcher.execution.in_threads import ThreadBackend
    from searcher.execution.processes import ProcessBackend
    from searcher.execution.submitit import SubmititBackend


def dataset_options(section: DatasetConfig, folder: Path) -> DatasetOptions:
    """DatasetOptions from a dataset config section (the searched one or the transfer target): every shared field."""
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(DatasetOptions) if hasattr(section, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if values.get("path"):
        values["path"] = Path(values["path"]).expanduser()
    return DatasetOptions(**values, data_dir=folder)


def check_device(name: str) -> None:
    """`device` names a device torch can use here, checked before anything is created."""
    if not name.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.split(":", 1)[1]) if ":" in name else 0
    if index >= count:
        found = f"{count} CUDA device(s)" if count else "no CUDA device torch can use"
        raise ConfigError(f"device={name} but this machine has {found}; use device=auto (a GPU when there is one) or device=cpu.")


def with_auto_execution(config: SearcherConfig, dataset: ImageDataset) -> tuple[SearcherConfig, str | None]:
    """`execution=auto` made concrete, with the line that says what it became (None when execution was set).

    On a CPU, trials in threads of this process, one per core it may use (its affinity, and OMP_NUM_THREADS or
    joblib's limit when set), at most `execution.max_trials_on_cpu`: each trial trains with one torch thread as a
    serial run's does, so the decisions are a serial run's, and the cores a serial run leaves idle train the
    round's other trials (docs/BENCHMARKS.md §3: 0.70 of the serial wall on the default digits search, 2 cores).
    Serial where that is one. On CUDA, trials in threads too, a CUDA stream each, as many per GPU as fit in the
    memory one trial of the largest network the search can build was measured to take (searcher/execution/sizing.py);
    serial where that leaves a single one. Threads, not worker processes: a GPU runs one process's kernels at a time
    but overlaps one process's streams (docs/BENCHMARKS.md §5, one H200: 4 graphed trials in threads 1.48x one
    trial's throughput, in processes 0.98x; the synthetic search 46.6 s instead of 70.9 s, the same decisions)."""
    e = config.execution
    if e.kind != AUTO:
        return config, None
    device = str(resolve_device(config.device))
    if not device.startswith("cuda"):
        cores, threads = min(cpu_cores(), torch.get_num_threads()), e.threads_per_trial or 1
        workers = e.workers or min(e.max_trials_on_cpu, max(1, cores // threads))
        if workers == 1:
            limited = f" of {cpu_cores()}: torch's thread limit, e.g. OMP_NUM_THREADS" if cores < cpu_cores() else ""
            return replace(config, execution=replace(e, kind="serial")), f"execution: auto → serial ({device}, {cores} core{'s' if cores != 1 else ''}{limited})"
        chosen = replace(e, kind="threads", workers=workers)
        each = f"{threads} torch thread{'s' if threads > 1 else ''} a trial"
        return replace(config, execution=chosen), f"execution: auto → {workers} trial threads ({device}, {cores} cores, {each})"
    from searcher.execution.sizing import Probe, share_gpu
    from searcher.search.setup import make_plan

    plan = make_plan(config, dataset)
    largest = plan.family.baseline(plan.depth_cap, plan.width_cap, plan.input_shape)
    probe = Probe(device, largest, plan.family, plan.input_shape, dataset.num_classes, plan.train, dataset.nbytes * plan.folds)
    share = share_gpu(probe, e.max_trials_per_gpu)
    workers = e.workers or default_workers(device, share.trials_per_gpu, e.threads_per_trial)
    if workers == 1:
        return replace(config, execution=replace(e, kind="serial")), f"execution: auto → serial on {device} (one trial at a time: {share.trials_per_gpu} per GPU, {share.describe()})"
    chosen = replace(e, kind="threads", workers=workers, trials_per_gpu=share.trials_per_gpu)
    return replace(config, execution=chosen), f"execution: auto → {workers} trial threads on {device} ({share.trials_per_gpu} per GPU, a CUDA stream each, {share.describe()})"


def checkpoint_dir(config: SearcherConfig, name: str) -> Path:
    return Path(config.tracking.checkpoint_dir or beside_tracking_store(config, "checkpoints")) / name


def start_workers(config: SearcherConfig, dataset: ImageDataset) -> ProcessBackend | None:
    """execution=processes: the worker pool, started as early as possible (None for other executions)."""
    if config.execution.kind != "processes":
        return None
    return process_backend(config, dataset)


def local_workers(config: SearcherConfig) -> tuple[str, int]:
    """The device trials train on here, and how many train at once: `execution.workers`, else GPUs x trials per GPU
    on CUDA, CPU cores / threads per trial on a CPU."""

    e = config.execution
    device = str(resolve_device(config.device))
    return device, e.workers or default_workers(device, e.trials_per_gpu, e.threads_per_trial)


def process_backend(config: SearcherConfig, dataset: ImageDataset) -> ProcessBackend:
    from searcher.execution.processes import ProcessBackend
    from searcher.execution.worker import DataSpec

    device, workers = local_workers(config)
    spec = DataSpec(dataset_options(config.dataset, data_dir(config)), dataset.identity, device)
    return ProcessBackend(spec, workers, config.execution.threads_per_trial)


def thread_backend(config: SearcherConfig, dataset: ImageDataset) -> ThreadBackend:
    from searcher.execution.in_threads import ThreadBackend

    return ThreadBackend(dataset, worker_devices(*local_workers(config)))


def submitit_backend(config: SearcherConfig, dataset: ImageDataset, name: str) -> SubmititBackend:
    from searcher.execution.submitit import SubmititBackend
    from searcher.execution.worker import DataSpec

    e = config.execution
    folder = Path(e.folder) if e.folder else beside_tracking_store(config, "submitit") / name
    return SubmititBackend(
        DataSpec(dataset_options(config.dataset, data_dir(config)), dataset.identity, config.device),  # resolved on the job's node
        folder.resolve() / "%j",
        e.workers or 4,
        cluster=e.cluster,
        timeout_min=e.timeout_min,
        gpus_per_node=e.gpus_per_node,
        cpus_per_task=e.cpus_per_task,
        mem_gb=e.mem_gb,
        partition=e.partition,
        slurm_additional=dict(e.slurm_additional),
    )


def make_runner(
    config: SearcherConfig,
    dataset: ImageDataset,
    device: torch.device,
    recorder: TrialRecorder,
    progress: Progress,
    name: str,
    storage: str,
    workers: Backend | None = None,
    *,
    warm_start: bool,
) -> Runner:
    """The Runner `execution.kind` asks for; every one records the same way, only where trials train differs.
    `warm_start`: the plan's (its trials name parents whose weights this process keeps and grows)."""
    checkpoints = checkpoint_dir(config, name)
    if config.execution.kind == "serial":
        from searcher.execution.in_process import serial_runner

        return serial_runner(DeviceData(dataset, device), recorder, progress, checkpoints, config.train.checkpoint_seconds)
    backend: Backend
    if config.execution.kind == "processes":
        backend = workers or process_backend(config, dataset)
    elif config.execution.kind == "threads":
        backend = thread_backend(config, dataset)
    else:
        backend = submitit_backend(config, dataset, name)
    from searcher.execution.warm import WarmStarts

    warm = WarmStarts(DeviceData(dataset, torch.device("cpu"))) if warm_start else None  # grown here, trained there
    return Runner(backend, recorder, progress, checkpoints, config.train.checkpoint_seconds, storage, warm, speculates(config, backend.capacity))


def speculates(config: SearcherConfig, slots: int) -> bool:
    """`execution.speculate`, made concrete. auto: guesses where each slot computes on its own (CPU worker processes,
    one trial per GPU, submitit jobs); not where several trials share a GPU, which runs one process's kernels at a
    time (no MPS): a guess there is not free, it takes GPU time from the trials the search asked for (docs/BENCHMARKS.md
    §5: 4 graphed trials on one H200 gave 0.98x one trial's throughput, and a quarter of the slot time went to
    guesses never used). Nor where trials in threads share a GPU (execution=threads): their streams overlap, yet a
    guess still takes a share of the GPU (§5, one H200: the synthetic search 53.7 s with guesses, 46.6 s without).
    Nor under `search.budget`: a guess still training when the budget cuts a stage short takes a slot from the final seeds."""
    e = config.execution
    if e.speculate != AUTO:
        return bool(e.speculate)
    if config.search.budget is not None:
        return False
    device = str(resolve_device(config.device))
    if e.kind not in ("processes", "threads") or not device.startswith("cuda"):
        return True
    gpus = 1 if ":" in device else max(1, torch.cuda.device_count())
    return slots <= gpus


def describe_execution(config: SearcherConfig, runner: Runner) -> str:
    """The line that says where trials run (execution set, not auto: auto says what it chose when it chooses)."""
    if config.execution.kind == "serial":
        return "serial"
    if config.execution.kind == "processes":
        processes = cast("ProcessBackend", runner.backend)
        threads = f"{processes.threads} thread{'s' if processes.threads > 1 else ''} each"
        return f"{processes.capacity} worker processes ({', '.join(sorted(set(processes.devices)))}, {threads})"
    if config.execution.kind == "threads":
        in_threads = cast("ThreadBackend", runner.backend)
        count = torch.get_num_threads()
        each = "a CUDA stream each" if in_threads.devices[0].startswith("cuda") else f"{count} torch thread{'s' if count > 1 else ''} each"
        return f"{in_threads.capacity} trial threads in this process ({', '.join(sorted(set(in_threads.devices)))}, {each})"
    from searcher.execution.submitit import NO_ACCOUNTING

    jobs = cast("SubmititBackend", runner.backend)
    note = f"; note: {NO_ACCOUNTING}" if jobs.without_accounting else ""
    return f"up to {jobs.capacity} submitit jobs ({jobs.cluster}){note}"
