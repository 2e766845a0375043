"""Which score of a trial's validation curve ranks trials best by their test accuracy?

    python scripts/bench_score.py --out docs/benchmarks/score_estimators_digits.json --configs 80 --workers 2
    python scripts/bench_score.py --out docs/benchmarks/score_estimators_synthetic16.json --dataset synthetic \\
        --configs 24 --workers 2 dataset.image_size=16 dataset.train_size=3000 dataset.test_size=2000 \\
        search.depth.cap=4 search.width.cap=64
    python scripts/bench_score.py --out OUT.json --reanalyse OUT.json   # recompute the tables, train nothing

On 2 CPU cores (--workers 2, one torch thread per trial): digits, 80 configurations x 3
seeds, 15 minutes (40 x 3: 7 minutes; a trial takes 1.5-9 s); the synthetic run above
about 15 minutes. Trials are deterministic: --configs 80 repeats --configs 40's trials
and adds 40 more configurations.

Today a trial's score is its best validation accuracy over epochs: the maximum of a
noisy curve, biased upward and favouring trials that drew more epochs. This script
trains a population of trials and measures, for a short list of estimators computed
from the per-epoch validation history alone, how well each ranks the trials by

- own_test:    the trial's own test accuracy (its kept, best-validation-epoch weights);
- config_test: the configuration's quality: the mean test accuracy of the same
               configuration trained with the other seeds (leave-one-out over
               --seeds), independent of the trial's own noise. This is what the
               search wants to rank (its final stage retrains the winner with fresh seeds).

The test split is read only here, never by the search.

Population: --configs configurations drawn from the default search space (as
scripts/bench_search.py's joint space: depth from the baseline depth to the depth cap,
each layer's width from the width grid, laid out by LayoutPolicy.next_layer), with the
regularizers of the search preset drawn uniformly; a share of the configurations
(--unregularized-share) have every regularizer off, as stages 0-2 train them. Each
configuration is trained with --seeds seeds (torch seed 1000 x config + j), one torch
thread per trial.

Estimators (val_acc per epoch v_1..v_T, val_loss l_1..l_T):
- max_val:          max v_t (today's score);
- max_val_tiebreak: max v_t, ties (between and within trials) broken by the lower val_loss
                    at those epochs: max v_t - 1e-4 x min{l_t : v_t = max v}; 1e-4 x loss is
                    far below one validation image, so the order is lexicographic;
- window3, window5: the best mean of k consecutive epochs;
- top3:             the mean of the 3 best epochs (not necessarily consecutive);
- last5:            the mean over the final stability window (the last 5 epochs);
- ema_max:          the maximum of an exponential moving average of v (weight 0.5 on each new epoch);
- neg_min_val_loss: -min l_t (not in accuracy units: no bias reported).
Reference (reads the test split, so no estimator): own_test as a predictor of config_test.

Metrics, per estimator and target: Spearman and Kendall (tau-b) over all trials;
pairwise agreement over all pairs of trials of different configurations whose target
differs (estimator ties count half), also restricted to close pairs (target within
--close points); bias = mean(estimator - own test accuracy); length_rho = Spearman
of (estimator - config_test) with the trial's epochs (> 0: the estimator favours long
trials). Noise: --bootstrap resamples of the configurations (a configuration's trials
travel together; pairs within one configuration never count), giving a 95% interval of
each estimator's advantage over max_val in Spearman and pairwise agreement, paired.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from bench_search import width_grid  # the joint space of scripts/bench_search.py, beside this script
from benchlib import cpu_model  # scripts/benchlib.py, beside this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TIEBREAK_EPSILON = 1e-4
EMA_WEIGHT = 0.5
FINAL_WINDOW = 5
ESTIMATORS = ("max_val", "max_val_tiebreak", "window3", "window5", "top3", "last5", "ema_max", "neg_min_val_loss")
ACCURACY_UNITS = set(ESTIMATORS) - {"neg_min_val_loss"}
BASELINE = "max_val"
REFERENCE = "own_test"  # reference row for config_test: reads the test split
TARGETS = ("own_test", "config_test")


# ---- estimators: functions of the validation history only -------------------------------------


def best_window(values: list[float], k: int) -> float:
    if len(values) <= k:
        return statistics.fmean(values)
    return max(statistics.fmean(values[i : i + k]) for i in range(len(values) - k + 1))


def ema_max(values: list[float], weight: float = EMA_WEIGHT) -> float:
    smoothed, best = values[0], values[0]
    for value in values[1:]:
        smoothed = weight * value + (1 - weight) * smoothed
        best = max(best, smoothed)
    return best


def estimates(val_acc: list[float], val_loss: list[float]) -> dict[str, float]:
    best = max(val_acc)
    loss_at_best = min(loss for acc, loss in zip(val_acc, val_loss, strict=True) if acc == best)
    return {
        "max_val": best,
        "max_val_tiebreak": best - TIEBREAK_EPSILON * loss_at_best,
        "window3": best_window(val_acc, 3),
        "window5": best_window(val_acc, 5),
        "top3": statistics.fmean(sorted(val_acc, reverse=True)[:3]),
        "last5": statistics.fmean(val_acc[-FINAL_WINDOW:]),
        "ema_max": ema_max(val_acc),
        "neg_min_val_loss": -min(val_loss),
    }


# ---- configuration, data and the population ---------------------------------------------------


def compose(args: argparse.Namespace) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from searcher.config import validate

    overrides = [f"+dataset={args.dataset}", f"device={args.device}", "tracking.uri=sqlite:///unused.db", *args.overrides]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return validate(OmegaConf.to_container(hydra_compose(config_name="config", overrides=overrides), resolve=False))


def load(config: Any) -> Any:
    from searcher.config import data_dir
    from searcher.data import load_dataset
    from searcher.execution.setup import dataset_options

    return load_dataset(dataset_options(config.dataset, data_dir(config)))


def draw(rng: random.Random, plan: Any, unregularized_share: float) -> tuple[tuple[int, ...], dict[str, float]]:
    widths = width_grid(plan)
    depth = rng.randint(plan.baseline_depth, plan.depth_cap)
    layer_widths = tuple(rng.choice(widths) for _ in range(depth))
    if rng.random() < unregularized_share:
        regularizers = {r.name: r.low for r in plan.regularizers}
    else:
        regularizers = {
            r.name: math.exp(rng.uniform(math.log(r.low), math.log(r.high))) if r.log else rng.uniform(r.low, r.high)
            for r in plan.regularizers
        }
    return layer_widths, regularizers


def build(plan: Any, layer_widths: tuple[int, ...], regularizers: dict[str, float]) -> tuple[Any, Any]:
    """The trial's ArchSpec and TrainSettings, made as the search makes them (next_layer, `regularized`)."""
    from searcher.search.stages import regularized
    from searcher.search.trials import Candidate

    arch = plan.family.baseline(1, layer_widths[0], plan.input_shape)
    for width in layer_widths[1:]:
        arch = plan.family.deepen(arch, width, plan.input_shape)
    candidate = regularized(Candidate("score", arch, plan.train), regularizers, "score")
    return candidate.arch, candidate.train


def population(args: argparse.Namespace, plan: Any) -> list[dict]:
    rng = random.Random(args.population_seed)
    configs, seen = [], set()
    while len(configs) < args.configs:
        layer_widths, regularizers = draw(rng, plan, args.unregularized_share)
        key = (layer_widths, tuple(round(v, 6) for v in regularizers.values()))
        if key in seen:
            continue
        seen.add(key)
        configs.append({"index": len(configs), "widths": list(layer_widths), "depth": len(layer_widths), **regularizers})
    return configs


# ---- training (in this process or in --workers processes, one torch thread each) ---------------

_DATA: Any = None


def _start_worker(config: Any) -> None:
    global _DATA
    import torch

    from searcher.data import DeviceData
    from searcher.train import resolve_device

    torch.set_num_threads(1)
    _DATA = DeviceData(load(config), resolve_device(config.device))


def _train(job: tuple[int, int, Any, Any]) -> dict:
    from searcher.train import train_trial

    config_index, seed, arch, settings = job
    result = train_trial(arch, _DATA, settings, seed, evaluate_test=True)
    history = result.history
    return {
        "config": config_index,
        "seed": seed,
        "behavior": result.behavior,
        "epochs": len(history),
        "best_epoch": result.best_epoch,
        "val_acc": [r.val_acc for r in history],
        "val_loss": [r.val_loss for r in history],
        "train_loss": [r.train_loss for r in history],
        "test_acc": result.test_acc,
        "test_loss": result.test_loss,
        "train_seconds": result.train_seconds,
    }


def train_all(config: Any, plan: Any, configs: list[dict], seeds: int, workers: int) -> list[dict]:
    regularizer_names = [r.name for r in plan.regularizers]
    jobs = []
    for c in configs:
        arch, settings = build(plan, tuple(c["widths"]), {name: c[name] for name in regularizer_names})
        c["describe"] = f"{arch.describe()} " + " ".join(f"{name}={c[name]:.2g}" for name in regularizer_names)
        jobs += [(c["index"], 1000 * c["index"] + j, arch, settings) for j in range(seeds)]
    trials, started = [], time.perf_counter()

    def done(trial: dict) -> None:
        trials.append(trial)
        print(
            f"[{len(trials):3d}/{len(jobs)} {time.perf_counter() - started:5.0f} s] {configs[trial['config']]['describe']:60s} "
            f"seed {trial['seed']:5d}  {trial['epochs']:2d} ep  max val {max(trial['val_acc']):.4f}  test {trial['test_acc']:.4f}",
            flush=True,
        )

    if workers <= 1:
        _start_worker(config)
        for job in jobs:
            done(_train(job))
    else:
        import multiprocessing

        with ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(config,)
        ) as pool:
            for trial in pool.map(_train, jobs):
                done(trial)
    return trials


# ---- ranking metrics ---------------------------------------------------------------------------


def concordance(
    estimate: np.ndarray, target: np.ndarray, groups: np.ndarray, close: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (i, j): 1 when the estimate orders it as the target does, 0 when reversed, 0.5 on an estimate tie;
    and the mask of pairs that count (different configurations, target not tied, within `close` when given)."""
    d_est = np.sign(estimate[:, None] - estimate[None, :])
    d_tgt = target[:, None] - target[None, :]
    valid = (groups[:, None] != groups[None, :]) & (d_tgt != 0)
    if close is not None:
        valid &= np.abs(d_tgt) <= close
    score = np.where(d_est == 0, 0.5, (d_est == np.sign(d_tgt)).astype(float))
    return score * valid, valid.astype(float)


def agreement(score: np.ndarray, valid: np.ndarray, weights: np.ndarray) -> float:
    return float(weights @ score @ weights / (weights @ valid @ weights))


def spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    from scipy import stats

    if weights is not None:
        x, y = np.repeat(x, weights), np.repeat(y, weights)
    return float(stats.spearmanr(x, y).statistic)


def evaluate(trials: list[dict], args: argparse.Namespace) -> tuple[dict, dict]:
    from scipy import stats

    groups = np.array([t["config"] for t in trials])
    epochs = np.array([t["epochs"] for t in trials], dtype=float)
    target_values = {name: np.array([t["targets"][name] for t in trials]) for name in TARGETS}
    rows = {name: np.array([t["estimators"][name] for t in trials]) for name in ESTIMATORS}
    close = args.close / 100

    # bootstrap over configurations: a trial's weight is how often its configuration was drawn
    n_configs = int(groups.max()) + 1
    rng = np.random.default_rng(args.population_seed)
    draws = [np.bincount(rng.integers(0, n_configs, n_configs), minlength=n_configs)[groups] for _ in range(args.bootstrap)]

    table: dict[str, dict] = {}
    best: dict[str, dict] = {}
    for target_name, target in target_values.items():
        predictors = dict(rows)
        if target_name == "config_test":
            predictors[REFERENCE] = target_values["own_test"]
        pairs = {name: concordance(values, target, groups, None) for name, values in predictors.items()}
        close_pairs = {name: concordance(values, target, groups, close) for name, values in predictors.items()}
        ones = np.ones(len(trials))
        boot_spearman = {name: np.array([spearman(v, target, w) for w in draws]) for name, v in predictors.items()}
        boot_pairwise = {name: np.array([agreement(*pairs[name], w) for w in draws]) for name in predictors}
        table[target_name] = {}
        for name, values in predictors.items():
            entry = {
                "spearman": float(stats.spearmanr(values, target).statistic),
                "kendall": float(stats.kendalltau(values, target).statistic),
                "pairwise": agreement(*pairs[name], ones),
                "pairwise_close": agreement(*close_pairs[name], ones),
                "pairs": int(pairs[name][1].sum() / 2),
                "close_pairs": int(close_pairs[name][1].sum() / 2),
                "reference": name == REFERENCE,
            }
            if name in ACCURACY_UNITS or name == REFERENCE:
                entry["bias"] = float(np.mean(values - target_values["own_test"]))
                entry["length_rho"] = float(stats.spearmanr(values - target_values["config_test"], epochs).statistic)
            for metric, boot in (("spearman", boot_spearman), ("pairwise", boot_pairwise)):
                diff = boot[name] - boot[BASELINE]
                entry[f"{metric}_vs_{BASELINE}"] = entry[metric] - table[target_name].get(BASELINE, entry)[metric]
                entry[f"{metric}_vs_{BASELINE}_ci95"] = [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))]
                entry[f"{metric}_beats_{BASELINE}_share"] = float(np.mean(diff > 0))
                entry[f"{metric}_ci95"] = [float(np.quantile(boot[name], 0.025)), float(np.quantile(boot[name], 0.975))]
            table[target_name][name] = entry
        best[target_name] = {}
        for metric, boot in (("spearman", boot_spearman), ("pairwise", boot_pairwise)):
            point = max(ESTIMATORS, key=lambda name, metric=metric: table[target_name][name][metric])
            winners = np.argmax(np.stack([boot[name] for name in ESTIMATORS]), axis=0)
            best[target_name][metric] = {
                "estimator": point,
                "best_share_in_bootstrap": {name: float(np.mean(winners == i)) for i, name in enumerate(ESTIMATORS)},
            }
    return table, best


def markdown(table: dict, close_points: float) -> str:
    lines = []
    for target_name, entries in table.items():
        lines += [
            f"\ntarget: {target_name}",
            "",
            f"| estimator | Spearman | Kendall | pairwise agreement | Δ pairwise vs {BASELINE} [95% CI] | Δ Spearman vs {BASELINE} [95% CI] "
            f"| pairwise, close pairs (≤{close_points:g} pt) | bias (points) | length rho |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in entries.items():
            label = f"{name} (reference: reads test)" if e["reference"] else name
            bias = f"{100 * e['bias']:+.2f}" if "bias" in e else "—"
            rho = f"{e['length_rho']:+.2f}" if "length_rho" in e else "—"
            dp, dpc = e[f"pairwise_vs_{BASELINE}"], e[f"pairwise_vs_{BASELINE}_ci95"]
            ds, dsc = e[f"spearman_vs_{BASELINE}"], e[f"spearman_vs_{BASELINE}_ci95"]
            lines.append(
                f"| {label} | {e['spearman']:.3f} | {e['kendall']:.3f} | {e['pairwise']:.3f} | "
                f"{dp:+.3f} [{dpc[0]:+.3f}, {dpc[1]:+.3f}] | {ds:+.3f} [{dsc[0]:+.3f}, {dsc[1]:+.3f}] | "
                f"{e['pairwise_close']:.3f} ({e['close_pairs']}) | {bias} | {rho} |"
            )
        pairs = next(iter(entries.values()))["pairs"]
        lines.append(f"\n({pairs} pairs of different configurations with a target difference)")
    return "\n".join(lines)


def analyse(trials: list[dict], configs: list[dict], args: argparse.Namespace) -> tuple[dict, dict]:
    """Each trial's estimators and targets (in place), each configuration's mean test accuracy, then the tables."""
    tests: dict[int, list[tuple[int, float]]] = {}
    for t in trials:
        tests.setdefault(t["config"], []).append((t["seed"], t["test_acc"]))
    for t in trials:
        others = [acc for seed, acc in tests[t["config"]] if seed != t["seed"]]
        t["estimators"] = estimates(t["val_acc"], t["val_loss"])
        t["targets"] = {"own_test": t["test_acc"], "config_test": statistics.fmean(others)}
    for c in configs:
        c["test_acc_mean"] = statistics.fmean(acc for _, acc in tests[c["index"]])
    return evaluate(trials, args)


def summary(best: dict) -> str:
    lines = []
    for target_name, metrics in best.items():
        for metric, b in metrics.items():
            shares = sorted(b["best_share_in_bootstrap"].items(), key=lambda item: -item[1])
            lines.append(
                f"best by {metric} on {target_name}: {b['estimator']} (best in bootstrap resamples: "
                + ", ".join(f"{name} {share:.0%}" for name, share in shares if share > 0)
                + ")"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", default="digits", help="a dataset config in conf/dataset/")
    parser.add_argument("--configs", type=int, default=40, help="configurations in the population")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per configuration (>= 2)")
    parser.add_argument("--population-seed", type=int, default=0, help="draws the configurations (and the bootstrap)")
    parser.add_argument(
        "--unregularized-share", type=float, default=0.25, help="share of configurations with every regularizer off"
    )
    parser.add_argument("--workers", type=int, default=1, help="trials side by side, one torch thread each")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the configurations")
    parser.add_argument("--close", type=float, default=1.0, help="close pairs: target within this many points")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument(
        "--reanalyse", type=Path, help="train nothing: recompute the tables from the trials of this earlier --out"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. dataset.image_size=16")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (config_test is the mean over the other seeds)")
    command = " ".join(["python", *sys.argv])

    if args.reanalyse:
        report = json.loads(args.reanalyse.read_text())
        args.population_seed = report["population_seed"]
        table, best = analyse(report["trials"], report["population"], args)
        report.update(
            table=table,
            best=best,
            estimators=list(ESTIMATORS),
            bootstrap=args.bootstrap,
            close_points=args.close,
            analysis_command=command,
        )
    else:
        import torch

        from searcher.search.setup import make_plan

        torch.set_num_threads(1)
        started = time.perf_counter()
        config = compose(args)
        dataset = load(config)
        plan = make_plan(config, dataset)
        configs = population(args, plan)
        trials = train_all(config, plan, configs, args.seeds, args.workers)
        train_wall = time.perf_counter() - started
        table, best = analyse(trials, configs, args)
        report = {
            "question": "which score of a trial's validation history ranks trials best by test accuracy "
            "(its own, and its configuration's over the other seeds)",
            "dataset": args.dataset,
            "overrides": args.overrides,
            "splits": {"train": len(dataset.train), "val": len(dataset.val), "test": len(dataset.test())},
            "configs": len(configs),
            "seeds_per_config": args.seeds,
            "population_seed": args.population_seed,
            "unregularized_share": args.unregularized_share,
            "width_grid": width_grid(plan),
            "depth_range": [plan.baseline_depth, plan.depth_cap],
            "regularizers": {r.name: [r.low, r.high] for r in plan.regularizers},
            "stability": dataclasses.asdict(plan.train.stability),
            "estimators": list(ESTIMATORS),
            "tiebreak_epsilon": TIEBREAK_EPSILON,
            "ema_weight": EMA_WEIGHT,
            "bootstrap": args.bootstrap,
            "close_points": args.close,
            "table": table,
            "best": best,
            "population": configs,
            "trials": trials,
            "epochs_mean": statistics.fmean(t["epochs"] for t in trials),
            "train_seconds_total": sum(t["train_seconds"] for t in trials),
            "train_wall_seconds": train_wall,
            "wall_seconds": time.perf_counter() - started,
            "workers": args.workers,
            "torch_threads_per_trial": 1,
            "device": args.device,
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "command": command,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(markdown(table, args.close))
    print()
    print(summary(best))
    print(
        f"\nwrote {args.out}: {len(report['trials'])} trials, {report['train_seconds_total']:.0f} s of training, "
        f"{report['wall_seconds']:.0f} s wall with {report['workers']} worker(s)"
    )


if __name__ == "__main__":
    main()
