"""How far apart do small and large networks land on the generated dataset? The spread `difficulty` is calibrated by.

    python scripts/calibrate_synthetic.py --out docs/benchmarks/calibrate_synthetic_hard16.json
    python scripts/calibrate_synthetic.py --image-size 32 --train-size 10000 --nets d2w16,d4w32 --out ...

Trains a fixed set of networks on one generated dataset (default: the
`synthetic_hard` preset, conf/dataset/synthetic_hard.yaml; `--dataset grammar`
the sequence one, with its transformer and AdamW) with searcher's own trainer
and the training settings the dataset's config selects (trained until stable),
and reports each one's test accuracy. A network is written `d<depth>w<width>`
(the family's baseline layout: every layer that wide), optionally followed by
regularizers: `d6w64:aug=0.5:do=0.2:wd=5e-4:ls=0.1` (augment, dropout,
weight_decay, label_smoothing, as the regularization stage sets them).

The default networks: the search's baseline (d2w16), depth alone (d4w16), a
mid network (d4w32) and the large end of the default search space,
regularized (d6w64 with augmentation, dropout and weight decay). Add d2w64
(width alone) and d6w64 (unregularized) to separate all three effects, as
docs/benchmarks/calibrate_synthetic_hard16.json does.

One torch thread (leaves the other cores to everyone else): about 8 minutes
for the defaults at 16x16 with 10k images on a busy 2-core machine, 13 with
d2w64 and d6w64 added; 32x32 costs about 4x as much per image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchlib import cpu_model  # scripts/benchlib.py, beside this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_NETS = "d2w16,d4w16,d4w32,d6w64:aug=0.5:do=0.2:wd=5e-4"
SHORT = {"aug": "augment", "do": "dropout", "wd": "weight_decay", "ls": "label_smoothing"}


def parse_net(text: str) -> tuple[int, int, dict[str, float]]:
    """'d6w64:aug=0.5:do=0.2' -> (6, 64, {'augment': 0.5, 'dropout': 0.2})."""
    shape, *regs = text.split(":")
    if not shape.startswith("d") or "w" not in shape:
        raise SystemExit(f"--nets: {text!r} is not d<depth>w<width>[:reg=value...]")
    depth, width = shape[1:].split("w")
    params = {}
    for reg in regs:
        key, value = reg.split("=")
        params[SHORT.get(key, key)] = float(value)
    return int(depth), int(width), params


def compose(args: argparse.Namespace) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from searcher.config import validate

    overrides = [f"+dataset={args.dataset}", f"device={args.device}"]
    for key in ("image_size", "train_size", "test_size", "difficulty", "data_seed"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"dataset.{key}={value}")
    if args.max_epochs is not None:
        overrides.append(f"train.stability.max_epochs={args.max_epochs}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return validate(
            OmegaConf.to_container(hydra_compose(config_name="config", overrides=overrides + args.overrides), resolve=False)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic_hard", help="a generated conf/dataset: synthetic, synthetic_hard, sequences or grammar")
    parser.add_argument("--image-size", type=int, dest="image_size")
    parser.add_argument("--train-size", type=int, dest="train_size")
    parser.add_argument("--test-size", type=int, dest="test_size")
    parser.add_argument("--difficulty", type=float)
    parser.add_argument("--data-seed", type=int, dest="data_seed")
    parser.add_argument("--nets", default=DEFAULT_NETS, help=f"comma-separated networks (default {DEFAULT_NETS})")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated (test accuracy: their mean)")
    parser.add_argument("--max-epochs", type=int, dest="max_epochs", help="train.stability.max_epochs (default: conf/train)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leave the other cores free)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: train.batch_size/lr=auto then resolve for it")
    parser.add_argument("--out", type=Path, help="write the JSON here (e.g. docs/benchmarks/calibrate_synthetic_hard16.json)")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. train.lr=0.1")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from searcher.config import data_dir
    from searcher.data import DeviceData, load_dataset
    from searcher.execution.setup import dataset_options
    from searcher.search.setup import make_plan
    from searcher.train import train_trial

    config = compose(args)
    load_at_start = [round(x, 2) for x in os.getloadavg()]  # other people's work on a shared machine slows every figure
    started = time.perf_counter()
    dataset = load_dataset(dataset_options(config.dataset, data_dir(config)))
    load_seconds = time.perf_counter() - started
    plan = make_plan(config, dataset)
    data = DeviceData(dataset, torch.device(args.device))
    d = config.dataset
    print(
        f"{d.name} difficulty={d.difficulty} {dataset.describe_input()}, {dataset.num_classes} classes, "
        f"{len(dataset.train)} train / {len(dataset.val)} val / {len(dataset.test())} test; generated and split in {load_seconds:.1f} s",
        flush=True,
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for net in args.nets.split(","):
        depth, width, params = parse_net(net)
        arch = plan.family.baseline(depth, width, plan.input_shape).with_dropout(params.get("dropout", 0.0))
        settings = replace(plan.train, **{k: v for k, v in params.items() if k != "dropout"})
        runs = []
        for seed in seeds:
            result = train_trial(arch, data, settings, seed, family=plan.family, evaluate_test=True)
            runs.append(
                {
                    "seed": seed,
                    "test_acc": result.test_acc,
                    "best_val_acc": result.best_val_acc,
                    "epochs": len(result.history),
                    "behavior": result.behavior,
                    "train_seconds": round(result.train_seconds, 1),
                }
            )
        mean = sum(r["test_acc"] for r in runs) / len(runs)
        results.append({"net": net, "arch": arch.describe(), "regularizers": params, "test_acc": mean, "runs": runs})
        print(
            f"{net:32s} test {mean:.4f}  val "
            + " ".join(f"{r['best_val_acc']:.4f}" for r in runs)
            + "  epochs "
            + " ".join(f"{r['epochs']}({r['behavior']})" for r in runs)
            + f"  {sum(r['train_seconds'] for r in runs):.0f} s",
            flush=True,
        )
    report = {
        "what": "test accuracy of fixed networks on the generated dataset (scripts/calibrate_synthetic.py)",
        "command": " ".join(["python", "scripts/calibrate_synthetic.py", *sys.argv[1:]]),
        "dataset": {
            "name": d.name,
            "difficulty": d.difficulty,
            "input": dataset.describe_input(),
            "classes": dataset.num_classes,
            "train": len(dataset.train),
            "val": len(dataset.val),
            "test": len(dataset.test()),
            "data_seed": d.data_seed,
            "generate_and_split_seconds": round(load_seconds, 2),
        },
        "train": {
            "optimizer": plan.train.optimizer,
            "lr": plan.train.lr,
            "batch_size": plan.train.batch_size,
            "max_epochs": plan.train.stability.max_epochs,
        },
        "seeds": seeds,
        "results": results,
        "spread_points": round(100 * (max(r["test_acc"] for r in results) - min(r["test_acc"] for r in results)), 2),
        "hardware": {
            "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": args.threads,
            "load_average_at_start": load_at_start,
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
