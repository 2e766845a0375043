"""Is the trainer as fast as a hand-written loop? Images per second, side by side.

    python scripts/bench_throughput.py --out throughput.json [--device cpu|cuda] [--dataset digits|synthetic-cifar]

For three model sizes (baseline d2 w16, mid d4 w64, large d6 w128: the largest
the default search explores), the same work is done three ways:

- trainer: `searcher.train.train_trial`, forced to run exactly N epochs
  (StabilityRule(min_epochs=N, max_epochs=N), divergence check disabled);
- hand-written: a minimal PyTorch loop a user would write with the data already
  on the device: same model from the same spec, same optimizer (SGD, Nesterov),
  batch size, precision (bf16 autocast + channels_last on CUDA, fp32 on CPU),
  augmentation (random crop with padding augment*size/8, flips where allowed)
  and the same per-epoch evaluation on the validation split;
- tutorial (CUDA only): the textbook pipeline, a CPU DataLoader with worker
  processes doing per-image augmentation, fp32, for reference.

What is timed: training steps only (shuffle, augment, forward, backward,
optimizer step, up to the epoch's host synchronisation), which is what
TrainResult.images_per_second counts; the per-epoch evaluation runs in both
loops but is not in `*_img_s`. Whole-run figures including evaluation and model
building are reported beside them as `*_wall_img_s`.

How: the two loops run interleaved epoch by epoch (the trainer's per-epoch
callback runs one hand-written epoch), so that load from other processes on a
shared machine falls on both alike. Per model: a 2-epoch warm-up, then
`--repeats` timed runs of N epochs each, N = `--epochs` or, by default, enough
for about `--run-seconds` of the hand-written loop's training steps (at least
3); who goes first alternates between repeats. The headline figures are the
medians of the repeats; the best of the repeats is kept beside them.

Imports only searcher.data, searcher.model and searcher.train, so it runs
where PyTorch is installed without optuna, mlflow or hydra. The data: the
built-in digits, or CIFAR-shaped synthetic uint8 images made here (class
templates plus noise; no real CIFAR is needed).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from benchlib import cpu_model  # noqa: E402  (scripts/benchlib.py, beside this script)
from torch import nn  # noqa: E402

from searcher.data import DatasetOptions, DeviceData, ImageDataset, load_dataset  # noqa: E402
from searcher.data.dataset import Split, channel_stats  # noqa: E402
from searcher.model import ArchSpec, LayoutPolicy, build_model, count_parameters  # noqa: E402
from searcher.train import StabilityRule, TrainSettings, train_trial  # noqa: E402
from searcher.train.auto import choose_training  # noqa: E402

MODEL_SIZES = {"baseline": (2, 16), "mid": (4, 64), "large": (6, 128)}  # name -> (depth, width)


# ---- data ------------------------------------------------------------------------------------


def synthetic_cifar(train_images: int, val_images: int, test_images: int = 1000, seed: int = 0) -> ImageDataset:
    """CIFAR-shaped uint8 data (N, 3, 32, 32), 10 classes: a smooth per-class template plus per-image noise."""
    generator = torch.Generator().manual_seed(seed)
    templates = nn.functional.interpolate(torch.rand(10, 3, 4, 4, generator=generator) * 160 + 48, size=32, mode="bilinear")
    total = train_images + val_images + test_images
    labels = torch.randint(0, 10, (total,), generator=generator)
    images = torch.empty(total, 3, 32, 32, dtype=torch.uint8)
    for start in range(0, total, 5000):  # in chunks: no float copy of the whole set
        chunk = labels[start : start + 5000]
        noisy = templates[chunk] + torch.randn(len(chunk), 3, 32, 32, generator=generator) * 40
        images[start : start + 5000] = noisy.clamp(0, 255).round().to(torch.uint8)
    train = Split(images[:train_images], labels[:train_images])
    val = Split(images[train_images : train_images + val_images], labels[train_images : train_images + val_images])
    test = Split(images[train_images + val_images :], labels[train_images + val_images :])
    mean, std = channel_stats(train.images)
    return ImageDataset(
        name="synthetic-cifar",
        train=train,
        val=val,
        _test=test,
        num_classes=10,
        mean=mean,
        std=std,
        flip=True,
        identity=f"synthetic-cifar|n={train_images},{val_images}|seed={seed}",
    )


def load(name: str, train_images: int) -> ImageDataset:
    if name == "digits":
        return load_dataset(DatasetOptions(name="digits"))
    return synthetic_cifar(train_images, val_images=max(1000, train_images // 10))


# ---- the hand-written loop -------------------------------------------------------------------


def random_crop_and_flip(images: torch.Tensor, padding: int, flip: bool) -> torch.Tensor:
    """Per-image random HxW window of the zero-padded batch, then per-image horizontal flips; device RNG."""
    n, channels, height, width = images.shape
    device = images.device
    if padding > 0:
        padded = nn.functional.pad(images, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (2, n), device=device)
        rows = (offsets[0, :, None] + torch.arange(height, device=device))[:, None, :, None]
        cols = (offsets[1, :, None] + torch.arange(width, device=device))[:, None, None, :]
        batch = torch.arange(n, device=device)[:, None, None, None]
        channel = torch.arange(channels, device=device)[None, :, None, None]
        images = padded[batch, channel, rows, cols]
    if flip:
        images = torch.where(torch.rand(n, device=device)[:, None, None, None] < 0.5, images.flip(3), images)
    return images


@dataclass(frozen=True)
class Timing:
    step_seconds: float  # training steps only
    wall_seconds: float  # build, train, evaluate
    images: int  # training images processed

    @property
    def img_s(self) -> float:
        return self.images / self.step_seconds

    @property
    def wall_img_s(self) -> float:
        return self.images / self.wall_seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class HandWritten:
    """The loop a user would write with the data on the device, one epoch per `epoch()` call."""

    def __init__(self, spec: ArchSpec, dataset: ImageDataset, data: DeviceData, settings: TrainSettings, seed: int):
        started = time.perf_counter()
        self.data, self.settings, self.device = data, settings, data.device
        self.on_cuda = self.device.type == "cuda"
        torch.manual_seed(seed)
        model = build_model(spec, dataset.channels, dataset.num_classes)
        self.model = model.to(self.device, memory_format=torch.channels_last if self.on_cuda else torch.contiguous_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=settings.lr, momentum=settings.momentum, nesterov=True)
        self.mean = torch.tensor(dataset.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std, device=self.device).view(1, -1, 1, 1)
        self.padding = round(settings.augment * dataset.size / 8)
        self.flip = settings.augment > 0 and dataset.flip
        self.epochs, self.step_seconds = 0, 0.0
        self.wall_seconds = time.perf_counter() - started

    def epoch(self) -> None:
        started = time.perf_counter()
        model, device = self.model, self.device
        images, labels = self.data.train.images, self.data.train.labels  # uint8 (N, C, H, W), int64 (N,), on the device
        model.train()
        order = torch.randperm(len(labels), device=device)
        for start in range(0, len(labels), self.settings.batch_size):
            index = order[start : start + self.settings.batch_size]
            x = random_crop_and_flip(images[index], self.padding, self.flip)
            x = (x.float() / 255 - self.mean) / self.std
            if self.on_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.on_cuda):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), labels[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        synchronize(device)
        self.step_seconds += time.perf_counter() - started
        model.eval()  # the same per-epoch evaluation the trainer does
        val = self.data.val
        correct = torch.zeros((), device=device, dtype=torch.long)
        with torch.no_grad():
            for start in range(0, len(val), 1024):
                x = (val.images[start : start + 1024].float() / 255 - self.mean) / self.std
                if self.on_cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.on_cuda):
                    correct += (model(x).argmax(1) == val.labels[start : start + 1024]).sum()
        correct.item()
        self.epochs += 1
        self.wall_seconds += time.perf_counter() - started

    def timing(self) -> Timing:
        return Timing(self.step_seconds, self.wall_seconds, self.epochs * len(self.data.train))


# ---- searcher's trainer, interleaved with the hand-written loop ------------------------------


def interleaved(
    spec: ArchSpec, dataset: ImageDataset, data: DeviceData, settings: TrainSettings, epochs: int, seed: int, hand_first: bool
) -> tuple[Timing, Timing]:
    """`epochs` epochs of each, alternating epoch by epoch (the trainer's per-epoch callback runs the
    hand-written epoch), so that load from other processes falls on both alike. Returns (trainer, hand-written)."""
    rule = StabilityRule(min_epochs=epochs, max_epochs=epochs, window=max(1, epochs - 1), explode_factor=1e30)
    hand = HandWritten(spec, dataset, data, settings, seed)
    if hand_first:
        hand.epoch()

    def on_epoch(record: object) -> bool:  # called after each trainer epoch but the last
        hand.epoch()
        return False

    inside = hand.wall_seconds
    synchronize(data.device)
    started = time.perf_counter()
    result = train_trial(spec, data, replace(settings, stability=rule), seed, on_epoch=on_epoch)
    synchronize(data.device)
    trainer_wall = time.perf_counter() - started - (hand.wall_seconds - inside)
    while hand.epochs < epochs:
        hand.epoch()
    assert len(result.history) == epochs, f"the trainer ran {len(result.history)} epochs, not {epochs} ({result.behavior})"
    images = epochs * len(data.train)
    return Timing(images / result.images_per_second, trainer_wall, images), hand.timing()


# ---- the tutorial pipeline (CUDA reference) --------------------------------------------------


class AugmentedImages(torch.utils.data.Dataset):
    """Per-image augmentation in DataLoader workers, as the PyTorch tutorials do it (no torchvision needed)."""

    def __init__(self, split: Split, mean: tuple[float, ...], std: tuple[float, ...], padding: int, flip: bool):
        self.images, self.labels = split.images, split.labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.padding, self.flip = padding, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        _, height, width = image.shape
        if self.padding:
            padded = nn.functional.pad(image, (self.padding,) * 4)
            top, left = torch.randint(0, 2 * self.padding + 1, (2,)).tolist()
            image = padded[:, top : top + height, left : left + width]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(2)
        return (image.float() / 255 - self.mean) / self.std, self.labels[index]


def tutorial(
    spec: ArchSpec, dataset: ImageDataset, settings: TrainSettings, epochs: int, device: torch.device, workers: int, seed: int
) -> Timing:
    """CPU DataLoader with workers, pinned memory, fp32, no channels_last; the same per-epoch evaluation."""
    torch.manual_seed(seed)
    padding = round(settings.augment * dataset.size / 8)
    loader = torch.utils.data.DataLoader(
        AugmentedImages(dataset.train, dataset.mean, dataset.std, padding, settings.augment > 0 and dataset.flip),
        batch_size=settings.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=True,
        persistent_workers=True,
    )
    val_loader = torch.utils.data.DataLoader(
        AugmentedImages(dataset.val, dataset.mean, dataset.std, 0, False), batch_size=1024, num_workers=workers, pin_memory=True
    )
    model = build_model(spec, dataset.channels, dataset.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum, nesterov=True)
    for _ in loader:  # start the workers outside the timing
        break
    synchronize(device)
    started = time.perf_counter()
    step_seconds = 0.0
    for _ in range(epochs):
        epoch_started = time.perf_counter()
        model.train()
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)
        step_seconds += time.perf_counter() - epoch_started
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x.to(device)).argmax(1) == y.to(device)).sum()) for x, y in val_loader)
        del correct
    synchronize(device)
    return Timing(step_seconds, time.perf_counter() - started, epochs * len(dataset.train))


# ---- the comparison --------------------------------------------------------------------------


def summarise(timings: list[Timing]) -> dict:
    rates = [t.img_s for t in timings]
    return {
        "img_s": statistics.median(rates),
        "img_s_best": max(rates),
        "img_s_samples": rates,
        "wall_img_s": statistics.median(t.wall_img_s for t in timings),
    }


def compare(
    name: str, spec: ArchSpec, dataset: ImageDataset, data: DeviceData, settings: TrainSettings, args: argparse.Namespace
) -> dict:
    _, warm = interleaved(spec, dataset, data, settings, 2, seed=0, hand_first=False)  # warm-up: allocator, kernels
    epochs = args.epochs or max(3, math.ceil(args.run_seconds / (warm.step_seconds / 2)))
    ours, theirs = [], []
    for repeat in range(args.repeats):  # who goes first in each pair of epochs alternates between repeats
        trainer_timing, hand_timing = interleaved(spec, dataset, data, settings, epochs, seed=repeat, hand_first=repeat % 2 == 1)
        ours.append(trainer_timing)
        theirs.append(hand_timing)
    a, b = summarise(ours), summarise(theirs)
    row = {
        "arch": spec.describe(),
        "kernels": list(spec.kernels),
        "parameters": count_parameters(build_model(spec, dataset.channels, dataset.num_classes)),
        "epochs": epochs,
        "trainer_img_s": a["img_s"],
        "handwritten_img_s": b["img_s"],
        "ratio": a["img_s"] / b["img_s"],
        "trainer_img_s_best": a["img_s_best"],
        "handwritten_img_s_best": b["img_s_best"],
        "ratio_best": a["img_s_best"] / b["img_s_best"],
        "trainer_img_s_samples": a["img_s_samples"],
        "handwritten_img_s_samples": b["img_s_samples"],
        "trainer_wall_img_s": a["wall_img_s"],
        "handwritten_wall_img_s": b["wall_img_s"],
        "wall_ratio": a["wall_img_s"] / b["wall_img_s"],
    }
    if data.device.type == "cuda" and not args.no_tutorial:
        timing = tutorial(spec, dataset, settings, epochs, data.device, args.workers, seed=0)
        row["tutorial_img_s"] = timing.img_s
        row["tutorial_workers"] = args.workers
    print(
        f"{name:9s} {spec.describe():14s} {epochs:3d} epochs  trainer {a['img_s']:9.0f} img/s  hand-written {b['img_s']:9.0f} img/s  "
        f"ratio {row['ratio']:.3f} (best of {args.repeats}: {row['ratio_best']:.3f})"
        + (f"  tutorial {row['tutorial_img_s']:9.0f} img/s" if "tutorial_img_s" in row else ""),
        flush=True,
    )
    return row


def hardware(device: torch.device) -> dict:
    info = {"cpu": cpu_model(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dataset", choices=["digits", "synthetic-cifar"], help="default: digits on cpu, synthetic-cifar on cuda"
    )
    parser.add_argument("--train-images", type=int, default=50_000, help="synthetic-cifar training images (default 50k)")
    parser.add_argument("--batch-size", type=int, help="default: train.batch_size=auto's choice (64 on cpu; on cuda 256 for 40k+ images)")
    parser.add_argument("--augment", type=float, default=1.0, help="crop padding augment*size/8, plus flips where allowed")
    parser.add_argument("--epochs", type=int, help="timed epochs per run (default: enough for about --run-seconds)")
    parser.add_argument(
        "--run-seconds", type=float, default=3.0, help="target length of one timed run when --epochs is not given"
    )
    parser.add_argument("--repeats", type=int, default=5, help="alternating trainer / hand-written runs per model")
    parser.add_argument("--models", default=",".join(MODEL_SIZES), help="comma-separated subset of " + ",".join(MODEL_SIZES))
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the tutorial pipeline (CUDA)")
    parser.add_argument("--no-tutorial", action="store_true", help="skip the tutorial pipeline on CUDA")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA device here.")
    dataset_name = args.dataset or ("digits" if args.device == "cpu" else "synthetic-cifar")
    device = torch.device(args.device)

    dataset = load(dataset_name, args.train_images)
    args.batch_size = args.batch_size or choose_training(device.type, len(dataset.train), "auto", "auto").batch_size
    data = DeviceData(dataset, device)
    layout = LayoutPolicy(input_size=dataset.size)  # the model config's defaults: 5x5 first block, 3x3 above
    settings = TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=args.batch_size, augment=args.augment)
    print(
        f"{dataset_name}: {len(dataset.train)} train / {len(dataset.val)} val images {dataset.channels}x{dataset.size}x{dataset.size} "
        f"on {device}; batch {args.batch_size}, {args.repeats} repeats; "
        f"{'bf16 autocast + channels_last' if device.type == 'cuda' else 'fp32'}",
        flush=True,
    )
    models = {}
    for name in args.models.split(","):
        depth, width = MODEL_SIZES[name]
        models[name] = compare(name, layout.baseline(depth, width), dataset, data, settings, args)
    report = {
        "device": args.device,
        "hardware": hardware(device),
        "dataset": dataset_name,
        "train_images": len(dataset.train),
        "val_images": len(dataset.val),
        "batch_size": args.batch_size,
        "augment": args.augment,
        "epochs": args.epochs or f"auto (about {args.run_seconds} s of hand-written training steps per run)",
        "repeats": args.repeats,
        "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "fp32",
        "timed": "training steps only (TrainResult.images_per_second); both loops also evaluate the validation split every epoch, "
        "which *_wall_img_s includes. Headline: medians of the repeats; *_best beside them.",
        "models": models,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
