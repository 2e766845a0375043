"""`train.batch_size=auto` and `train.lr=auto`: the batch and learning rate chosen from the device (docs/design.md §5).

On a CPU they are what searcher has always trained with, batch 64 at lr 0.05, so CPU searches, their
trial keys and their decisions stay as they were. On CUDA a batch of 64 leaves a fast GPU mostly idle
(a small CNN on CIFAR-shaped data kept an H100 12-23% busy), so the batch grows to the largest power of
two up to 256 that still leaves every epoch at least 64 optimizer steps: on a small training split a big
batch would make an epoch a handful of steps, and the stability rule judges epochs. The learning rate
follows the batch linearly, lr = 0.05 x batch / 64 (Goyal et al., 2017). Both were chosen by measurement
on one H200 (docs/BENCHMARKS.md §5, the hard synthetic at 40k training images, two networks, trained
until stable): at 256 with the linear rate the test accuracy matched batch 64's within noise (79.7 / 95.4%
vs 79.8 / 95.3%) at 2.5-4x its speed; at 512 no rate tried (0.05-0.4) did (about -1 and -0.6 points), and
the square-root rule lost more (77.1 / 95.2% at 256). An explicit value wins over `auto`, and an `auto`
learning rate follows an explicit batch by the same rule.

A small training split makes an epoch a handful of steps on any device (96 table rows at batch 64: 2), too little
for the stability rule, the plateau schedule and the kept weights, which count epochs: there an epoch is several
passes over the data, enough for `train.min_epoch_steps` steps (iris: 76.7% -> 90% test, docs/BENCHMARKS.md §7).

Pure functions of the device type and the training split's size: resolved once, before any trial key
is made, so keys and records hold the numbers that were used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AUTO = "auto"
BASE_BATCH_SIZE = 64  # the CPU batch, and the batch the base learning rate is for
BASE_LR = 0.05
MAX_GPU_BATCH_SIZE = 256  # 512 trained ~1 point worse at every rate tried (docs/BENCHMARKS.md §5)
MIN_STEPS_PER_EPOCH = 64


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: the trainer drops no image, so a last short batch is a step too."""
    return math.ceil(train_images / batch_size)


def epoch_passes(train_images: int, batch_size: int, min_epoch_steps: int) -> int:
    """Passes over the training split one epoch makes: 1, or as many as bring it to `min_epoch_steps` steps."""
    return max(1, math.ceil(min_epoch_steps / steps_per_epoch(train_images, batch_size)))


def auto_batch_size(device_type: str, train_images: int) -> int:
    """64 on a CPU; on CUDA the largest power of two <= 256 with >= 64 steps per epoch, never below 64."""
    if device_type != "cuda":
        return BASE_BATCH_SIZE
    batch = MAX_GPU_BATCH_SIZE
    while batch > BASE_BATCH_SIZE and steps_per_epoch(train_images, batch) < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return batch


def auto_lr(batch_size: int) -> float:
    """0.05 x batch / 64, to 3 significant digits (the number shown is the number used): 0.05 at 64, 0.2 at 256."""
    return float(f"{BASE_LR * batch_size / BASE_BATCH_SIZE:.3g}")


@dataclass(frozen=True)
class TrainingChoice:
    """The batch and learning rate a search trains with, and whether each was chosen (auto) or set."""

    batch_size: int
    lr: float
    device_type: str
    steps_per_epoch: int
    batch_auto: bool
    lr_auto: bool
    passes: int = 1  # over the training split, per epoch (epoch_passes)

    def describe(self) -> str:
        """One line for the start of a run, e.g. `training: batch 256, lr 0.2 (auto for cuda: 157 steps/epoch)`."""
        steps = f"{self.steps_per_epoch} steps/epoch"
        if self.passes > 1:
            steps += f", {self.passes} passes over the data: train.min_epoch_steps"
        if self.batch_auto and self.lr_auto:
            return f"training: batch {self.batch_size}, lr {self.lr:g} (auto for {self.device_type}: {steps})"
        if self.batch_auto:
            return f"training: batch {self.batch_size} (auto for {self.device_type}: {steps}), lr {self.lr:g} (set)"
        if self.lr_auto:
            return f"training: batch {self.batch_size} (set: {steps}), lr {self.lr:g} (auto: 0.05 x {self.batch_size}/64)"
        return f"training: batch {self.batch_size}, lr {self.lr:g} (set: {steps})"


def choose_training(device_type: str, train_images: int, batch_size: int | str, lr: float | str, min_epoch_steps: int = 1) -> TrainingChoice:
    """`batch_size` and `lr` as set (a number, or "auto") made concrete for `device_type` and a training split of `train_images`."""
    batch = auto_batch_size(device_type, train_images) if batch_size == AUTO else int(batch_size)
    rate = auto_lr(batch) if lr == AUTO else float(lr)
    passes = epoch_passes(train_images, batch, min_epoch_steps)
    return TrainingChoice(batch, rate, device_type, passes * steps_per_epoch(train_images, batch), batch_size == AUTO, lr == AUTO, passes)
