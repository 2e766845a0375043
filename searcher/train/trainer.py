"""The training loop: one trial, trained until its learning behaviour is stable.

Reads top to bottom: settings, result, then `train_trial` (the loop: an epoch, a
verdict, a checkpoint) over a `Trial` (build, train an epoch, evaluate, save,
restore, sum up). Every speed trick is here or one import away in plain sight:
data resident on the device, batched augmentation, bf16 autocast and
channels_last on CUDA, each step replayed from a CUDA graph (steps.py), and one
host synchronisation per epoch (not per step). Over 300 lines because a trial's
whole life is here, so no rule of it hides in another module.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from typing import Literal

import torch
from torch import nn

from searcher.crash import crash_point
from searcher.data.batches import DeviceData, DeviceSplit
from searcher.model.cnn import CNN
from searcher.model.family import Family, SeededDropout, Spec, build_network
from searcher.train.auto import steps_per_epoch
from searcher.train.checkpoint import Checkpointing
from searcher.train.metrics import ACCURACY, Metric, task_loss
from searcher.train.rungs import Rungs, RungStop
from searcher.train.score import trial_score
from searcher.train.stability import Behavior, StabilityRule, judge, unlearned
from searcher.train.steps import EagerStep, GraphedStep, graphs_take_own_generators


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How a trial trains. The optimizer, rate and batch are always given (the search takes them from `train`, its
    `auto` ones made concrete for the device); every other default is conf/train/default.yaml's, and
    tests/test_defaults.py fails when one drifts from it."""

    optimizer: Literal["adamw", "sgd"]
    lr: float
    momentum: float = 0.9  # SGD only (Nesterov)
    batch_size: int
    weight_decay: float = 0.0  # decoupled (AdamW); SGD adds it to the gradient
    label_smoothing: float = 0.0
    augment: float = 0.0  # 0..1: random-crop padding of augment * size / 8 pixels, plus flips where allowed
    plateau_factor: float = 0.5  # learning rate x this when validation stalls (open-ended training)
    plateau_patience: int = 3  # epochs without a new best before the learning rate drops
    stability: StabilityRule = StabilityRule()
    compile: bool = False  # torch.compile: 8-18 s per architecture on a GPU, worth it only for long trials
    cuda_graphs: bool = True  # on CUDA, replay each step from a CUDA graph (searcher.train.steps); ignored on a CPU
    warm_lr_factor: float = 1.0  # starting learning rate x this when the trial starts from grown parent weights (fresh optimizer)
    warm_up_epochs: float = 1.0  # warm starts: the learning rate ramps linearly from 0 over this many epochs (0: no ramp)
    passes: int = 1  # over the training split per epoch: several on a small one (train.min_epoch_steps, searcher/train/auto.py)

    def to_dict(self) -> dict:
        """Every setting; `passes` only where it is more than one, so trials of one pass keep the keys they always had."""
        from dataclasses import asdict

        settings = asdict(self)
        if self.passes == 1:
            del settings["passes"]
        return settings


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float  # wall time since the trial started


@dataclass
class TrainResult:
    behavior: Behavior
    history: tuple[EpochRecord, ...]
    best_val_acc: float
    best_epoch: int
    train_seconds: float  # whole trial: build, train, evaluate
    images_per_second: float  # training steps only
    stopped_early: bool = False  # a callback (a pruner) asked to stop
    test_acc: float | None = None  # only when asked for: the final stage
    test_loss: float | None = None
    initial_val_acc: float | None = None  # warm starts only: validation accuracy of the given weights, before training
    score: float | None = None  # what comparisons rank by (searcher.train.score: best 3-epoch mean); None: best_val_acc
    why: str = ""  # diverged: what happened, in words
    val_correct: bytes | None = field(default=None, repr=False, compare=False)  # kept weights: which validation images they got right (packed bits)
    val_values: bytes | None = field(default=None, repr=False, compare=False)  # ...or, for a metric other than accuracy, each example's value (float32)
    val_losses: bytes | None = field(default=None, repr=False, compare=False)  # kept weights: each validation image's loss (float16)
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)  # best-epoch weights, on CPU
    rung_values: dict[int, bytes] | None = field(default=None, repr=False, compare=False)  # per-example values at the rung epochs (a later trial's reference)
    rung_stop: RungStop | None = None  # stopped at a rung: behind its reference beyond noise (train/rungs.py)


EpochCallback = Callable[[EpochRecord], bool]  # returns True to stop the trial now
ShowEpoch = Callable[[EpochRecord], None]  # shows the epoch to the user, nothing more


class TrialStopped(Exception):
    """The search stopped while the trial trained beside it (execution=threads): it ends at the step it is at."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model: nn.Module, settings: TrainSettings, graphed: bool = False) -> torch.optim.Optimizer:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)  # no decay on BN and biases
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=settings.lr, capturable=graphed)  # (SGD's update needs no flag to be captured)


@torch.no_grad()
def evaluate(
    model: nn.Module, split: DeviceSplit, autocast: torch.autocast, channels_last: bool, metric: Metric = ACCURACY
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(mean loss, score, each example's metric value, each example's loss) over a whole split, with one host synchronisation.

    The per-example values (on the device: right or wrong for accuracy, an error for regression)
    and losses are what paired comparisons of two trials are made of: both saw the same examples.
    """
    model.eval()
    values, losses = [], []
    for inputs, targets in split.batches(1024):
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast:
            outputs = model(inputs)
        losses.append(task_loss(outputs.float(), targets, reduction="none"))
        values.append(metric.values(outputs.float(), targets))
    per_example, per_loss = torch.cat(values), torch.cat(losses)
    loss, mean = (torch.stack([per_loss.sum(), per_example.sum().float()]) / len(split)).tolist()
    return loss, metric.score(mean), per_example, per_loss


def pack_losses(losses: torch.Tensor) -> bytes:
    """Per-image losses as float16 bytes: 2 bytes an image, ample for a paired test."""
    return losses.detach().to("cpu", torch.float16).numpy().tobytes()


def pack_values(values: torch.Tensor) -> bytes:
    """Per-example metric values (an error, a metric of your own) as float32 bytes."""
    return values.detach().to("cpu", torch.float32).numpy().tobytes()


def pack_bits(correct: torch.Tensor) -> bytes:
    """A bool per image -> packed bits (numpy's order: the first image is the high bit of the first byte)."""
    import numpy as np

    return np.packbits(correct.cpu().numpy()).tobytes()


def collapsed(val_scores: list[float], start: float | None, chance: float, window: int) -> bool:
    """A warm child that has lost more than half of its parent's accuracy above chance, and not won it back within a
    stability window, broke the function it was grown with: that is divergence (a failed trial), not a network that
    is merely worse. (Its kept weights would otherwise be the untouched grown parent, scored as a tie with it.)"""
    recent = val_scores[-window:]
    return start is not None and len(recent) == window and max(recent) < chance + (start - chance) / 2


def train_trial(
    spec: Spec,
    data: DeviceData,
    settings: TrainSettings,
    seed: int,
    *,
    family: Family | None = None,
    metric: Metric = ACCURACY,
    evaluate_test: bool = False,
    on_epoch: EpochCallback | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
    checkpoint: Checkpointing | None = None,
    stop: threading.Event | None = None,
    rungs: Rungs | None = None,
    rung_epochs: tuple[int, ...] = (),
) -> TrainResult:
    """Train `spec` (built by `family`; None: the cnn) for `metric` from `seed` (or from `initial_state`, a warm start) until its
    learning behaviour is stable, or until it is behind its reference at one of its `rungs`. `rung_epochs`: keep each
    example's value at these epochs (where the search's rungs look). `stop`: once set, the trial raises TrialStopped at its
    next step (a trial in a thread can be stopped no other way)."""
    trial = Trial(spec, data, settings, seed, initial_state, stop, family or CNN(), metric, (*rung_epochs, *(rungs.epochs if rungs else ())))
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:  # an interrupted attempt of this very trial got this far
        trial.restore(saved)
    behavior: Behavior | None = None
    stopped_early = False
    while behavior is None:
        record = trial.epoch()
        behavior = trial.verdict()
        if behavior is None and on_epoch is not None and on_epoch(record):
            behavior, stopped_early = "pruned", True  # stopped from outside (the stage's pruner) while still moving
        if behavior is None and rungs is not None:
            trial.rung_stop = rungs.judge(record.epoch, trial.last_values, metric)
            if trial.rung_stop is not None:
                behavior, stopped_early = "pruned", True  # behind the network it grows from, beyond noise
        if behavior is None and checkpoint is not None and checkpoint.due():
            checkpoint.save(trial.saved())
        crash_point("trial.epoch")  # (a test hook: searcher/crash.py)
    if checkpoint is not None:
        checkpoint.remove()  # the finished trial's weights live in its record now
    return trial.result(behavior, stopped_early, evaluate_test)


class Trial:
    """One trial's model, optimizer and progress: built, trained epoch by epoch, saved and restored, summed up."""

    def __init__(
        self,
        spec: Spec,
        data: DeviceData,
        settings: TrainSettings,
        seed: int,
        initial_state: dict[str, torch.Tensor] | None,
        stop: threading.Event | None = None,
        family: Family | None = None,
        metric: Metric = ACCURACY,
        rung_epochs: tuple[int, ...] = (),
    ):
        self.started = time.perf_counter()
        self.data, self.settings, self.stop, self.metric = data, settings, stop, metric
        self.device = data.device
        self.generator = torch.Generator().manual_seed(seed)  # shuffling and augmentation: CPU generator, same on any device
        model = build_network(family or CNN(), spec, data.dataset.input_shape, data.dataset.num_classes, seed=seed)
        if initial_state is not None:
            model.load_state_dict(initial_state)
        self.on_cuda = self.device.type == "cuda"
        self.channels_last = self.on_cuda and data.dataset.is_image
        self.dropout_generator = torch.Generator(self.device).manual_seed(seed)  # the trial's own masks (model/family.py)
        for module in model.modules():
            if isinstance(module, SeededDropout):
                module.generator = self.dropout_generator
        self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)  # type: ignore[call-overload]  # (torch's stubs omit memory_format)
        own_generators = spec.dropout == 0 or graphs_take_own_generators()  # (else a dropout trial's steps run eagerly)
        graphed = self.on_cuda and settings.cuda_graphs and not settings.compile and own_generators
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_cuda, cache_enabled=not graphed)
        self.optimizer = make_optimizer(self.model, settings, graphed)
        step_model: nn.Module = torch.compile(self.model) if settings.compile else self.model  # type: ignore[assignment]  # (a compiled module is called like one)
        self.eager_step = EagerStep(step_model, self.optimizer, self.autocast, settings.label_smoothing)
        self.graphed_step = GraphedStep(self.eager_step, settings.batch_size) if graphed else None
        self.history: list[EpochRecord] = []
        self.best_val_acc, self.best_epoch = -math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_values: torch.Tensor | None = None  # the kept weights' per-example metric values (accuracy: right or wrong)
        self.best_losses: torch.Tensor | None = None
        self.initial_val_acc: float | None = None
        self.warm_up_steps = 0
        if initial_state is not None:  # a warm start: a fresh optimizer, ramped up so that its first steps keep the grown function
            for group in self.optimizer.param_groups:
                group["lr"] = settings.lr * settings.warm_lr_factor
            self.warm_up_steps = math.ceil(settings.warm_up_epochs * settings.passes * steps_per_epoch(len(data.train), settings.batch_size))
            # Epoch 0: the grown network computes its parent's function, and it counts as a candidate for the kept weights,
            # so a child never scores below its parent merely because a fresh optimizer knocked it off the optimum.
            _, self.initial_val_acc, self.best_values, self.best_losses = evaluate(self.model, data.val, self.autocast, self.channels_last, metric)
            self.best_val_acc = self.initial_val_acc
            self.best_state = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}
        self.chance = metric.chance(data.dataset.num_classes)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=settings.plateau_factor, patience=settings.plateau_patience
        )
        augments = settings.augment > 0 and data.dataset.augmentable
        self.crop_padding = round(settings.augment * data.dataset.size / 8) if augments else 0
        self.flip = augments and data.dataset.flip
        self.step_seconds, self.images_seen, self.steps = 0.0, 0, 0
        self.why = ""
        self.rung_epochs = frozenset(rung_epochs)
        self.rung_values: dict[int, bytes] = {}  # (packed at once: a few bytes an example, kept for a later trial's rungs)
        self.rung_stop: RungStop | None = None
        self.last_values = torch.zeros(0)  # the last epoch's per-example values (a rung judges them)

    def epoch(self) -> EpochRecord:
        """Train one epoch, evaluate, keep the weights if they are the best so far, step the plateau schedule."""
        settings, device = self.settings, self.device
        self.model.train()
        epoch_started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        passes = (self.data.train.shuffled_batches(settings.batch_size, self.generator, self.crop_padding, self.flip) for _ in range(settings.passes))
        for images, labels in (batch for one_pass in passes for batch in one_pass):
            if self.stop is not None and self.stop.is_set():
                raise TrialStopped("the search stopped")
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            ramping = self.steps < self.warm_up_steps
            if ramping:  # linear warm-up of a warm start's fresh optimizer (the scheduler owns the rate after it)
                for group in self.optimizer.param_groups:
                    group["lr"] = settings.lr * settings.warm_lr_factor * (self.steps + 1) / self.warm_up_steps
            self.steps += 1
            loss = self.graphed_step(images, labels, eager=ramping) if self.graphed_step else self.eager_step(images, labels)
            loss_sum += loss * labels.shape[0]
        train_loss = loss_sum.item() / (settings.passes * len(self.data.train))  # the epoch's one synchronisation
        self.step_seconds += time.perf_counter() - epoch_started
        self.images_seen += settings.passes * len(self.data.train)

        val_loss, val_acc, values, losses = evaluate(self.model, self.data.val, self.autocast, self.channels_last, self.metric)
        lr = self.optimizer.param_groups[0]["lr"]
        record = EpochRecord(len(self.history) + 1, train_loss, val_loss, val_acc, lr, time.perf_counter() - self.started)
        self.history.append(record)
        self.last_values = values
        if record.epoch in self.rung_epochs:  # (packed as the kept weights' evidence is)
            self.rung_values[record.epoch] = pack_bits(values) if values.dtype == torch.bool else pack_values(values)
        if val_acc > self.best_val_acc and math.isfinite(train_loss):
            self.best_val_acc, self.best_epoch, self.best_values, self.best_losses = val_acc, record.epoch, values, losses
            self.best_state = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}
        self.scheduler.step(val_acc)
        if unlearned(settings.stability, [record.val_acc for record in self.history], self.chance, self.metric.perfect):
            self.scheduler.num_bad_epochs = 0  # a stall near chance is a plateau to cross, not a sign the rate is too high
        return record

    def verdict(self) -> Behavior | None:
        """The stability rule's verdict on the epochs so far (None: still moving); a collapsed warm child is diverged."""
        window = self.settings.stability.window
        val_scores = [record.val_acc for record in self.history]
        behavior = judge(self.settings.stability, [record.train_loss for record in self.history], val_scores, self.chance, self.metric.perfect)
        self.why = "the loss became NaN/inf or exploded" if behavior == "diverged" else ""
        if self.chance is not None and collapsed(val_scores, self.initial_val_acc, self.chance, window):
            behavior = "diverged"
            self.why = (
                f"collapsed: grown from a parent at val_acc {self.initial_val_acc:.4f}, it fell to {max(val_scores[-window:]):.4f} "
                f"and stayed there for {window} epochs (chance {self.chance:.2f})"
            )
        return behavior

    def saved(self) -> dict:
        """Everything a resumed attempt needs to go on exactly where this one is (Checkpointing writes it)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "dropout_rng": self.dropout_generator.get_state(),
            "history": [astuple(record) for record in self.history],
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "best_correct": self.best_values.cpu() if self.best_values is not None else None,  # (the key of checkpoints before metrics)
            "best_losses": self.best_losses.cpu() if self.best_losses is not None else None,
            "step_seconds": self.step_seconds,
            "images_seen": self.images_seen,
            "steps": self.steps,
            "rung_values": self.rung_values,
        }

    def restore(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.generator.set_state(saved["generator"])
        if "dropout_rng" in saved:  # (checkpoints of earlier versions drew dropout masks from the process's generator)
            self.dropout_generator.set_state(saved["dropout_rng"])
        self.history = [EpochRecord(*record) for record in saved["history"]]
        self.best_val_acc, self.best_epoch, self.best_state = saved["best_val_acc"], saved["best_epoch"], saved["best_state"]
        self.best_values, self.best_losses = (saved.get(k) for k in ("best_correct", "best_losses"))
        self.step_seconds, self.images_seen = saved["step_seconds"], saved["images_seen"]
        self.steps = saved.get("steps", self.warm_up_steps)
        self.rung_values = saved.get("rung_values", {})

    def result(self, behavior: Behavior, stopped_early: bool, evaluate_test: bool) -> TrainResult:
        """The kept (best-epoch) weights loaded back and summed up; the test split evaluated only when asked for."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        test_loss = test_acc = None
        if evaluate_test:
            test_loss, test_acc, _, _ = evaluate(self.model, self.data.test(), self.autocast, self.channels_last, self.metric)
        return TrainResult(
            behavior=behavior,
            history=tuple(self.history),
            best_val_acc=max(self.best_val_acc, self.metric.worst),
            best_epoch=self.best_epoch,
            train_seconds=time.perf_counter() - self.started,
            images_per_second=self.images_seen / max(self.step_seconds, 1e-9),
            stopped_early=stopped_early,
            test_acc=test_acc,
            test_loss=test_loss,
            initial_val_acc=self.initial_val_acc,
            score=trial_score([record.val_acc for record in self.history], self.initial_val_acc),
            why=self.why,
            val_correct=pack_bits(values) if (values := self.best_values) is not None and values.dtype == torch.bool else None,
            val_values=pack_values(values) if values is not None and values.dtype != torch.bool else None,
            val_losses=pack_losses(self.best_losses) if self.best_losses is not None else None,
            state={name: tensor.cpu() for name, tensor in (self.best_state or self.model.state_dict()).items()},
            rung_values=dict(self.rung_values) if self.rung_epochs else None,
            rung_stop=self.rung_stop,
        )
