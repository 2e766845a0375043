"""Warm-started (Net2Net) vs from-scratch width and depth stages on a digits search.

    python scripts/bench_growth.py --out growth.json [--quick] [--seeds 0,1,2] [override ...]

For each seed, trains the baseline once, then runs the width and depth stages twice from it,
warm (`search.warm_start=true`) and cold (`false`), with the same seeds, through
the real stages, the serial runner and Recorder (a temporary SQLite MLflow store).
`--quick` uses the quick preset (at most about 5 minutes on 2 cores); without it
the default preset. On digits one validation image is 0.35 points of accuracy,
so a single search's winner score is mostly noise; several seeds (default 3)
make the comparison mean something. The JSON holds, for `warm` and `cold`: the
two stages' wall `seconds` and the `epochs` trained in them (summed over seeds),
the depth stage's winner score `best_val_acc` (mean over seeds), `final_depth`
and `final_widths` (one per seed), `per_seed` details; and, measured right after each
growth step of the warm run, the largest absolute change of the network's
eval-mode logits on 512 validation images (fp32) for widening and deepening.

`max_abs_output_change_deepen` covers the growth steps that can preserve the
function. Where no exact mapping exists (a new layer narrower than the number of
classes, or one that halves the resolution: see searcher/model/growth.py) the
change is reported apart, in `inexact_growths`, with grow()'s note. The quick
preset's new layers are as wide as or wider than the layer below (factors 1, 2),
so every growth there is exact; the default preset also tries x0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchlib import cpu_model  # scripts/benchlib.py, beside this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VAL_IMAGES = 512  # validation images the output change is measured on (digits has only 287: all of them)


def compose(preset: str, overrides: list[str], uri: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from searcher.config import validate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        composed = hydra_compose(config_name="config", overrides=[f"search={preset}", f"tracking.uri={uri}", "device=cpu", *overrides])
    return validate(OmegaConf.to_container(composed, resolve=False))


class MeasuredWarmStarts:
    """Wraps a runner's WarmStarts: after each growth, the eval-mode output change on real validation images."""

    def __init__(self, warm, data, num_classes: int):
        import torch

        self.warm = warm
        self.images = data.val.normalise(data.val.images[:VAL_IMAGES]).cpu().float()
        self.channels, self.num_classes = data.dataset.channels, num_classes
        self.torch = torch
        self.growths: list[dict] = []
        self.original = warm.for_request
        warm.for_request = self.for_request

    def outputs(self, spec, state):
        from searcher.model import build_model

        model = build_model(spec, self.channels, self.num_classes)
        model.load_state_dict(state)
        model.eval()
        with self.torch.no_grad():
            return model(self.images)

    def for_request(self, request):
        grown = self.original(request)
        if grown is not None:
            parent = self.warm.finished[request.parent]
            before = self.outputs(parent.request.arch, parent.result.state)
            change = (self.outputs(request.arch, grown.state) - before).abs().max()
            self.growths.append(
                {
                    "kind": "widen" if request.stage == "width" else "deepen",
                    "trial": request.label,
                    "exact": grown.report.exact,
                    "max_abs_output_change": float(change),
                    "max_abs_output": float(before.abs().max()),  # the scale fp32 rounding is relative to
                    "note": grown.note,
                }
            )
        return grown


def run_mode(warm_start: bool, plan, baseline_result, baseline_outcomes, data, recorder, studies):
    from searcher.execution import serial_runner
    from searcher.search import run_stage
    from searcher.search.stages import DepthStage, WidthStage

    plan = replace(plan, warm_start=warm_start)
    runner = serial_runner(data, recorder)
    for outcome in baseline_outcomes:
        runner.warm.remember(outcome)
    measured = MeasuredWarmStarts(runner.warm, data, data.dataset.num_classes)
    suffix = "warm" if warm_start else "cold"
    started = time.perf_counter()
    width_result, width_done = run_stage(WidthStage(plan, studies(f"width-{suffix}"), baseline_result), runner)
    depth_result, depth_done = run_stage(DepthStage(plan, studies(f"depth-{suffix}"), width_result), runner)
    seconds = time.perf_counter() - started
    done = width_done + depth_done
    ok = [o for o in done if o.result is not None]
    report = {
        "seconds": seconds,
        "epochs": sum(len(o.result.history) for o in ok),
        "trials": len(done),
        "best_val_acc": depth_result.score,
        "final_depth": depth_result.winner.arch.depth,
        "final_widths": list(depth_result.winner.arch.widths),
        "width_winner": width_result.winner.name,
        "depth_winner": depth_result.winner.name,
        "trials_detail": [
            {
                "stage": o.request.stage,
                "trial": o.request.label,
                "warm": o.request.parent is not None,
                "epochs": len(o.result.history),
                "best_val_acc": o.result.best_val_acc,
                "initial_val_acc": o.result.initial_val_acc,
                "seconds": o.result.train_seconds,
                "behavior": o.result.behavior,
            }
            for o in ok
        ],
    }
    return report, measured.growths


def aggregate(runs: list[dict]) -> dict:
    """One mode over all seeds: time and epochs summed, the score averaged, the architectures listed per seed."""
    return {
        "seconds": sum(r["seconds"] for r in runs),
        "epochs": sum(r["epochs"] for r in runs),
        "trials": sum(r["trials"] for r in runs),
        "best_val_acc": sum(r["best_val_acc"] for r in runs) / len(runs),
        "final_depth": [r["final_depth"] for r in runs],
        "final_widths": [r["final_widths"] for r in runs],
        "per_seed": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="the quick preset: at most about 5 minutes on 2 cores")
    parser.add_argument("--seeds", type=lambda text: [int(v) for v in text.split(",")], default=[0, 1, 2], help="search seeds, each run warm and cold (default 0,1,2)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. train.warm_lr_factor=0.5")
    args = parser.parse_args()

    import optuna
    import torch

    from searcher.config import data_dir
    from searcher.data import DeviceData, load_dataset
    from searcher.execution import serial_runner
    from searcher.execution.setup import dataset_options
    from searcher.search import run_stage
    from searcher.search.setup import make_plan
    from searcher.search.stages import BaselineStage
    from searcher.tracking import open_recorder

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    preset = "quick" if args.quick else "default"
    runs: dict[str, list[dict]] = {"warm": [], "cold": []}
    growths: list[dict] = []
    baselines = []
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        recorder = open_recorder(uri, "bench-growth")
        storage = optuna.storages.InMemoryStorage()
        for seed in args.seeds:
            config = compose(preset, [*args.overrides, f"seed={seed}"], uri)
            dataset = load_dataset(dataset_options(config.dataset, data_dir(config)))
            data = DeviceData(dataset, torch.device("cpu"))
            plan = make_plan(config, dataset)
            recorder.start_search(f"bench-growth seed {seed}", {}, {})

            def studies(name: str, seed: int = seed) -> optuna.Study:
                return optuna.create_study(storage=storage, study_name=f"{seed}/{name}", direction="maximize")

            started = time.perf_counter()
            baseline_result, baseline_done = run_stage(BaselineStage(plan, studies("baseline")), serial_runner(data, recorder))
            baselines.append({"seed": seed, "seconds": time.perf_counter() - started, "best_val_acc": baseline_result.score})
            cold, _ = run_mode(False, plan, baseline_result, baseline_done, data, recorder, studies)
            warm, grown = run_mode(True, plan, baseline_result, baseline_done, data, recorder, studies)
            runs["cold"].append(cold | {"seed": seed})
            runs["warm"].append(warm | {"seed": seed})
            growths += [g | {"seed": seed} for g in grown]
            recorder.finish_search({}, {})

    def largest(kind: str, exact: bool) -> float | None:
        changes = [g["max_abs_output_change"] for g in growths if g["kind"] == kind and g["exact"] == exact]
        return max(changes) if changes else None

    widen, deepen = largest("widen", True), largest("deepen", True)
    warm, cold = aggregate(runs["warm"]), aggregate(runs["cold"])
    report = {
        "preset": preset,
        "overrides": args.overrides,
        "seeds": args.seeds,
        "warm_lr_factor": config.train.warm_lr_factor,
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "val_images_measured": min(VAL_IMAGES, len(dataset.val)),
        "baselines": baselines,
        "warm": warm | {"max_abs_output_change_widen": widen, "max_abs_output_change_deepen": deepen},
        "cold": cold,
        "max_abs_output_change_widen": widen,
        "max_abs_output_change_deepen": deepen,
        "inexact_growths": [g for g in growths if not g["exact"]],
        "growths": growths,
        "warm_seconds_share": warm["seconds"] / cold["seconds"],
        "warm_epochs_share": warm["epochs"] / cold["epochs"],
        "val_acc_points_warm_minus_cold": 100 * (warm["best_val_acc"] - cold["best_val_acc"]),
        "goals": {
            "warm_seconds_share_at_most": 0.6,
            "val_acc_points_lower_at_most": 0.5,
            "max_abs_output_change_at_most": 1e-4,
        },
    }
    report["goals_met"] = {
        "seconds": report["warm_seconds_share"] <= 0.6,
        "val_acc": report["val_acc_points_warm_minus_cold"] >= -0.5,
        "output_change": all(v is None or v <= 1e-4 for v in (widen, deepen)),
    }
    args.out.write_text(json.dumps(report, indent=2))
    summary = {k: v for k, v in report.items() if k not in ("growths", "warm", "cold", "inexact_growths")}
    summary["inexact_growths"] = len(report["inexact_growths"])
    summary |= {mode: {k: v for k, v in report[mode].items() if k != "per_seed"} for mode in ("warm", "cold")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
