"""The optimisation step: run op by op (eager), or replayed from a CUDA graph.

A small network on a fast GPU spends most of a step launching kernels from Python,
not computing them, so the GPU idles between launches. A CUDA graph records the
whole step once (forward, loss, backward and the optimizer's update) and replays it
with one launch per batch (docs/design.md §5). Same kernels, same arithmetic: a
graphed trial trains like an eager one.

A graph fixes what it was captured with, so the step falls back to eager where that
would be wrong, and captures again where that is cheap:
- the batch shape: an epoch's last, smaller batch runs eagerly;
- the learning rate: captured as a constant; a changed rate (the plateau schedule: a
  few times a trial) is captured again; a warm start's per-step warm-up ramp runs eagerly;
- the first steps run eagerly on a side stream, as CUDA requires before a capture
  (lazy initialisation of cuDNN and cuBLAS must not happen inside one).

Trials in threads of one process (execution=threads) capture one at a time, each
thread on a side stream of its own, in CUDA's thread-local capture mode (other
threads go on launching and allocating meanwhile); a trial's own dropout generator
is registered with its graph, so each replay draws new masks from it.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from searcher.model.family import SeededDropout
from searcher.train.metrics import task_loss

WARM_UP_CALLS = 3  # eager steps on a side stream before the first capture (PyTorch's CUDA-graph recipe)
_CAPTURING = threading.Lock()  # one capture at a time in a process: torch.cuda.graph synchronizes the whole device first
_THREAD = threading.local()


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """This thread's side stream on `device`, drawn once. torch hands streams out round-robin from a pool of 32 per
    device, so a fresh one for every capture would sooner or later be another thread's own stream (execution=threads),
    and that thread's kernels would be captured into this graph."""
    streams: dict[torch.device, torch.cuda.Stream] = _THREAD.__dict__.setdefault("side_streams", {})
    if device not in streams:
        streams[device] = torch.cuda.Stream(device)
    return streams[device]


def graph_generators(model: nn.Module) -> list[torch.Generator]:
    """The CUDA generators of the model's own that a captured step draws from (a trial's dropout masks)."""
    return [
        module.generator
        for module in model.modules()
        if isinstance(module, SeededDropout) and module.p > 0 and module.generator is not None and module.generator.device.type == "cuda"
    ]


def graphs_take_own_generators() -> bool:
    """Can a graph's replays draw from a generator other than the device's default? (Recent torch can; with an
    older one a dropout trial's steps run eagerly.)"""
    return hasattr(torch.cuda.CUDAGraph, "register_generator_state")


class EagerStep:
    """forward, loss, backward, update: one batch, op by op. Returns the batch's mean loss (on the device, detached)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, autocast: torch.autocast, label_smoothing: float):
        self.model = model
        self.optimizer = optimizer
        self.autocast = autocast
        self.label_smoothing = label_smoothing

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self.autocast:
            logits = self.model(images)
        loss = task_loss(logits.float(), labels, self.label_smoothing)  # cross-entropy, or squared error for a regression target
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


class GraphedStep:
    """The same step, captured once as a CUDA graph and replayed per batch (CUDA only)."""

    def __init__(self, eager: EagerStep, batch_size: int):
        self.eager = eager
        self.batch_size = batch_size  # only full batches are captured and replayed
        self.graph: torch.cuda.CUDAGraph | None = None
        self.images: torch.Tensor | None = None  # the graph's input buffers: each batch is copied in
        self.labels: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None  # the graph's output
        self.rates: tuple[float, ...] = ()  # the learning rates baked into the graph
        self.eager_calls = 0
        self.captures = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *, eager: bool = False) -> torch.Tensor:
        """`eager`: this step must not be replayed (its learning rate changes every step)."""
        if eager or images.shape[0] != self.batch_size:
            return self.eager(images, labels)
        if self.eager_calls < WARM_UP_CALLS:
            self.eager_calls += 1
            return self.on_side_stream(images, labels)
        rates = tuple(group["lr"] for group in self.eager.optimizer.param_groups)
        if self.graph is None or rates != self.rates:
            self.capture(images, labels, rates)
        assert self.graph is not None and self.images is not None and self.labels is not None and self.loss is not None
        self.images.copy_(images)
        self.labels.copy_(labels)
        self.graph.replay()
        return self.loss

    def on_side_stream(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        side = side_stream(images.device)
        side.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(side):
            loss = self.eager(images, labels)
        torch.cuda.current_stream(images.device).wait_stream(side)
        return loss

    def capture(self, images: torch.Tensor, labels: torch.Tensor, rates: tuple[float, ...]) -> None:
        """Record one step on buffers shaped like this batch (nothing is computed while recording)."""
        self.graph = None  # the old graph's memory goes back before the new one is recorded
        self.images, self.labels = torch.empty_like(images), torch.empty_like(labels)
        self.eager.optimizer.zero_grad(set_to_none=True)  # so the gradients are allocated inside the graph's memory
        graph = torch.cuda.CUDAGraph()
        for generator in graph_generators(self.eager.model):
            graph.register_generator_state(generator)
        with _CAPTURING, torch.cuda.graph(graph, stream=side_stream(images.device), capture_error_mode="thread_local"):
            self.loss = self.eager(self.images, self.labels)
        self.graph, self.rates = graph, rates
        self.captures += 1
