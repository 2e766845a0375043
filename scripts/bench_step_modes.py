"""Eager steps, CUDA graphs or torch.compile: which pays for a trial of what length, per model size.

    python scripts/bench_step_modes.py --out step_modes.json [--modes eager,graphs,compile] [--epochs 6]

For the three model sizes of bench_throughput.py (baseline d2 w16, mid d4 w64, large d6 w128) on CIFAR-shaped
synthetic data (40k training images, the auto batch of train/auto.py), each mode trains the same trial through
`searcher.train.train_trial` for exactly `--epochs` epochs:

- eager: `train.cuda_graphs=false`, every op launched from Python;
- graphs: `train.cuda_graphs=true` (the default on CUDA), each step replayed from a CUDA graph;
- compile: `train.compile=true` (torch.compile's default mode, inductor's fused kernels; graphs off).

Per mode: the first epoch's seconds (setup included: capture, or compilation), the steady epoch (median of the
others), training images per second, and the setup's cost over eager's first epoch. From them the break-even: how
many epochs a trial must last before a mode's setup is paid back by its faster epochs, against eager. Imports only
searcher.data, .model and .train (it runs where only PyTorch is installed). Needs CUDA for graphs and compile; on a
CPU it measures eager only (and says so).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import torch  # noqa: E402
from bench_throughput import MODEL_SIZES, hardware, synthetic_cifar  # noqa: E402

from searcher.data import DeviceData  # noqa: E402
from searcher.model import LayoutPolicy  # noqa: E402
from searcher.train import StabilityRule, TrainSettings, train_trial  # noqa: E402
from searcher.train.auto import choose_training  # noqa: E402

MODES = {"eager": {"cuda_graphs": False}, "graphs": {"cuda_graphs": True}, "compile": {"compile": True, "cuda_graphs": False}}


def measure(spec, data: DeviceData, settings: TrainSettings, epochs: int) -> dict:
    rule = StabilityRule(min_epochs=epochs, max_epochs=epochs, window=max(1, epochs - 1), explode_factor=1e30)
    torch.cuda.synchronize() if data.device.type == "cuda" else None
    started = time.perf_counter()
    result = train_trial(spec, data, replace(settings, stability=rule), seed=0)
    wall = time.perf_counter() - started
    ends = [record.seconds for record in result.history]
    epoch_seconds = [ends[0], *(b - a for a, b in zip(ends, ends[1:], strict=False))]
    steady = statistics.median(epoch_seconds[1:])
    return {
        "first_epoch_seconds": epoch_seconds[0],
        "steady_epoch_seconds": steady,
        "setup_seconds": epoch_seconds[0] - steady,  # what the first epoch cost beyond a steady one
        "images_per_second": result.images_per_second,
        "best_val_acc": result.best_val_acc,
        "wall_seconds": wall,
    }


def break_even(eager: dict, mode: dict) -> float | None:
    """Epochs after which the mode's extra setup is paid back by its faster epochs (None: never; 0: at once)."""
    extra = mode["setup_seconds"] - eager["setup_seconds"]
    saved = eager["steady_epoch_seconds"] - mode["steady_epoch_seconds"]
    if saved <= 0:
        return None
    return max(0.0, extra / saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--models", default=",".join(MODEL_SIZES))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=40_000)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = [mode for mode in args.modes.split(",") if device.type == "cuda" or mode == "eager"]
    dataset = synthetic_cifar(args.train_images, val_images=10_000)
    data = DeviceData(dataset, device)
    choice = choose_training(device.type, len(dataset.train), "auto", "auto")
    settings = TrainSettings(optimizer="sgd", lr=choice.lr, batch_size=choice.batch_size)
    print(f"{len(dataset.train)} training images on {device}, batch {choice.batch_size}, lr {choice.lr}, {args.epochs} epochs; modes {modes}", flush=True)
    layout = LayoutPolicy(input_size=dataset.size)
    models: dict = {}
    for name in args.models.split(","):
        depth, width = MODEL_SIZES[name]
        spec = layout.baseline(depth, width)
        rows = {mode: measure(spec, data, replace(settings, **MODES[mode]), args.epochs) for mode in modes}
        for mode, row in rows.items():
            if mode != "eager" and "eager" in rows:
                row["speedup_steady"] = rows["eager"]["steady_epoch_seconds"] / row["steady_epoch_seconds"]
                row["break_even_epochs"] = break_even(rows["eager"], row)
            print(
                f"{name:8s} {spec.describe():14s} {mode:8s} first epoch {row['first_epoch_seconds']:6.2f}s  steady {row['steady_epoch_seconds']:6.3f}s  "
                f"{row['images_per_second']:9.0f} img/s" + (f"  x{row['speedup_steady']:.2f}, pays after {row['break_even_epochs']} epochs" if "speedup_steady" in row else ""),
                flush=True,
            )
        models[name] = {"arch": spec.describe(), "modes": rows}
    report = {
        "hardware": hardware(device),
        "device": device.type,
        "train_images": len(dataset.train),
        "batch_size": choice.batch_size,
        "lr": choice.lr,
        "epochs": args.epochs,
        "models": models,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
