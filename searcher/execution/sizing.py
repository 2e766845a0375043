"""`execution=auto` on CUDA: how many trials share a GPU, sized from the memory one trial was measured to take.

Small trials leave a GPU idle, so several share it (Ray Tune's fractional GPUs are the model), as many as fit:
trials per GPU = min(cap, floor(0.8 x free memory / one trial's memory)), at least one. The 0.8 leaves room
for what a step-by-step measurement does not see: the allocator's fragmentation, cuDNN choosing other
workspaces for other shapes, the test split and a fold's copy arriving later.

Where even a generous bound on one trial's memory leaves room for every trial the cap allows several times over (small
networks on a large GPU, the common case), that is settled without measuring: `generous_trial_bytes` counts the CUDA
context and libraries, the data, 20 bytes a parameter and each layer's activations four times over. Otherwise
one trial's memory is measured, not estimated, when the search starts: a probe process (started like a worker,
so it holds what a worker holds: the CUDA context, cuDNN and cuBLAS) builds the largest network the search can
build (every layer at search.width.cap, search.depth.cap deep), puts a buffer the size of the dataset on the
device, trains two steps at the batch size in use and evaluates one batch as the trainer does, keeps its best
weights' copy, and holds all of it while this process reads how much the device's free memory dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from searcher.model.family import Family, InputShape, Spec
from searcher.model.spec import ArchSpec
from searcher.train.trainer import TrainSettings

HEADROOM = 0.8  # of the free memory that trials may plan on
CONTEXT_BYTES = 2 * 2**30  # a CUDA context with cuDNN and cuBLAS loaded, and their workspaces: well above what is seen (~0.5-1 GiB)
CLEAR_MARGIN = 2  # the bound must fit this many times over before the probe is skipped
EVALUATION_BATCH = 1024  # trainer.evaluate's batch
PROBE_SECONDS = 120.0  # a probe that has not answered by then is given up (one trial per GPU, and the reason shown)


def trials_per_gpu(free_bytes: int, trial_bytes: int, cap: int) -> int:
    """min(cap, floor(0.8 x free / per trial)), never below one (a trial that does not fit fails as out_of_memory)."""
    if trial_bytes <= 0:
        return cap
    return max(1, min(cap, math.floor(HEADROOM * free_bytes / trial_bytes)))


@dataclass(frozen=True)
class GpuShare:
    """How many trials share a GPU and the measurement it rests on (None where the probe failed: `why` says why)."""

    trials_per_gpu: int
    trial_bytes: int | None
    free_bytes: int | None
    why: str = ""

    estimated: bool = False  # trial_bytes is generous_trial_bytes' bound (it fitted with a clear margin), not a measurement

    def describe(self) -> str:
        """What it rests on, for the run's first lines: `~1.2 GiB each` or why it was not measured."""
        if self.trial_bytes is None:
            return f"could not measure a trial's memory: {self.why}"
        if self.estimated:
            return f"at most ~{self.trial_bytes / 2**30:.1f} GiB each by a generous bound, not probed"
        return f"~{self.trial_bytes / 2**30:.1f} GiB each"


@dataclass(frozen=True)
class Probe:
    """What the probe process trains: the largest network, its data and its training settings."""

    device: str
    spec: Spec
    family: Family
    input_shape: InputShape
    classes: int
    settings: TrainSettings
    data_bytes: int  # the dataset as it lies on the device (uint8 images, int64 labels)


def generous_trial_bytes(probe: Probe) -> int:
    """More than one trial of `probe.spec` takes: context and libraries, the data, the weights with their gradients,
    optimizer state and best copy (20 bytes a parameter), and every layer's output at the batch size four times over
    in float32 (the step's saved activations, their gradients, a CUDA graph's copies), plus an evaluation batch's."""
    from searcher.model.family import build_network

    model = build_network(probe.family, probe.spec, probe.input_shape, probe.classes)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    activations = 4 * 4 * per_example(probe, model) * (probe.settings.batch_size + EVALUATION_BATCH)
    return CONTEXT_BYTES + probe.data_bytes + 20 * parameters + activations


def per_example(probe: Probe, model: Any) -> int:
    """Values a network's layers output for one example: a CNN's block outputs (a block's width x its resolution), else
    every leaf module's output, counted in one forward pass on the CPU."""
    if isinstance(probe.spec, ArchSpec):
        size, total = probe.input_shape[-1], 0
        for layer in probe.spec.layers:
            total += layer.width * size * size
            size = size // 2 if layer.halves else size
        return total
    return outputs_per_example(model, probe.input_shape)


def outputs_per_example(model: Any, input_shape: InputShape) -> int:
    """Values every leaf module of `model` outputs for one example (one forward pass on the CPU)."""
    import torch

    total = 0

    def count(module: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor) and not list(module.children()):
            total += output.numel()

    hooks = [module.register_forward_hook(count) for module in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def share_gpu(probe: Probe, cap: int) -> GpuShare:
    """Trials per GPU: the cap where a generous bound fits with a clear margin, else from one trial's memory measured by
    a probe process (one if that fails: a measurement that went wrong must not stop the search, and one trial per GPU
    is what fits if anything does)."""
    bound = generous_trial_bytes(probe)
    free = free_bytes(probe.device)
    if trials_per_gpu(free, CLEAR_MARGIN * bound, cap) == cap:
        return GpuShare(cap, bound, free, estimated=True)
    try:
        trial_bytes, free = measure_trial_bytes(probe)
    except ProbeFailed as failure:
        return GpuShare(1, None, None, str(failure))
    except Exception as error:
        return GpuShare(1, None, None, f"{type(error).__name__}: {error}")
    return GpuShare(trials_per_gpu(free, trial_bytes, cap), trial_bytes, free)


class ProbeFailed(Exception):
    """The probe process could not train its step (out of memory, no answer in time); the message says how."""


def free_bytes(device: str) -> int:
    """The device's free memory, every process's use counted (CUDA; 0 elsewhere, where there is nothing to size).

    Read in this process, whose own CUDA context then exists (it stays for the search, so it is rightly not free)."""
    import torch

    return int(torch.cuda.mem_get_info(torch.device(device))[0]) if device.startswith("cuda") else 0


def measure_trial_bytes(probe: Probe) -> tuple[int, int]:
    """(bytes one trial's process takes from the device, bytes free before it started) on `probe.device`.

    On a CPU the probe runs all the same (so the protocol is tested where there is no GPU) and measures (0, 0)."""
    from searcher.execution.processes import worker_context

    free_before = free_bytes(probe.device)
    context = worker_context()
    here, there = context.Pipe()
    process = context.Process(target=_probe, args=(there, probe), name="searcher-memory-probe", daemon=True)
    process.start()
    try:
        if not here.poll(PROBE_SECONDS):
            raise ProbeFailed(f"the probe process did not answer within {PROBE_SECONDS:.0f} s")
        status, value = here.recv()
        if status != "ready":
            raise ProbeFailed(value)
        free_during = free_bytes(probe.device)
        here.send("measured")
    except (EOFError, OSError) as error:  # the probe died (killed, crashed in CUDA)
        raise ProbeFailed(f"the probe process died ({type(error).__name__}, exit code {process.exitcode})") from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    # The drop in free memory is the whole footprint; what the probe's allocator held is a floor (another process
    # may have freed memory meanwhile).
    return max(free_before - free_during, value), free_before


def _probe(connection: Any, probe: Probe) -> None:
    """In a process of its own: hold what one trial holds at its peak, report the allocator's share, wait to be measured."""
    try:
        import torch

        device = torch.device(probe.device)
        held = peak_of_a_trial(probe, device)
        on_cuda = device.type == "cuda"
        if on_cuda:
            torch.cuda.synchronize(device)
        connection.send(("ready", torch.cuda.max_memory_reserved(device) if on_cuda else 0))
    except Exception as error:  # out of memory at this size, most likely: the parent reports it
        connection.send(("failed", f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"))
        return
    connection.recv()
    del held


def peak_of_a_trial(probe: Probe, device: Any) -> list[Any]:
    """Everything a trial of `probe.spec` holds at once, as the trainer trains it (bf16 autocast, channels_last): the data,
    the model, its gradients and optimizer state, a step's activations, an evaluation batch, the best weights' copy."""
    import torch

    from searcher.model.family import build_network
    from searcher.train.steps import WARM_UP_CALLS, EagerStep, GraphedStep
    from searcher.train.trainer import make_optimizer

    on_cuda = device.type == "cuda"
    graphed = on_cuda and probe.settings.cuda_graphs and not probe.settings.compile
    data = torch.empty(probe.data_bytes, dtype=torch.uint8, device=device)
    images_in = len(probe.input_shape) == 3
    layout = torch.channels_last if images_in else torch.contiguous_format
    model = build_network(probe.family, probe.spec, probe.input_shape, probe.classes).to(device, memory_format=layout)  # type: ignore[call-overload]
    optimizer = make_optimizer(model, probe.settings, graphed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda, cache_enabled=not graphed)
    eager = EagerStep(model, optimizer, autocast, 0.0)
    step = GraphedStep(eager, probe.settings.batch_size) if graphed else eager
    batch = probe.settings.batch_size
    images = torch.randn(batch, *probe.input_shape, device=device).contiguous(memory_format=layout)
    labels = torch.randint(0, probe.classes, (batch,), device=device)
    model.train()
    for _ in range(WARM_UP_CALLS + 2 if graphed else 2):  # the second step has the optimizer's state; a graph its own memory
        step(images, labels)
    model.eval()
    evaluation = torch.randn(EVALUATION_BATCH, *probe.input_shape, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
        model(evaluation.contiguous(memory_format=layout))
    best = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return [data, model, optimizer, step, best]
