"""Anytime curves from scripts/bench_search.py's results: the best validation score found so far against compute.

    python scripts/plot_anytime.py OUT.png RESULT.json [RESULT.json ...]

One panel per result file (a dataset and preset). Per method, the mean over seeds of the best validation score so
far (a step curve: a search holds its best until a better trial ends), drawn where every seed has finished a trial.
Compute is in multiples of the staged search's mean compute, so the staged curves end near 1 and a peer's at its
--budget-factor: how far behind a peer is when the staged search has finished is read at x = 1. The score is the
one the searches ranked by: accuracy, or -RMSE in standard deviations of the target for regression.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COLORS = {  # Okabe & Ito, as in the report (searcher/report/canvas.py)
    "staged": "#000000", "tpe": "#E69F00", "random": "#56B4E9", "tpe_hyperband": "#009E73",
    "gp": "#0072B2", "tpe_default": "#D55E00", "dehb": "#CC79A7",
}
POINTS = 400  # compute grid of each panel


def best_so_far(curve: list[list[float]], grid: np.ndarray) -> np.ndarray:
    """The best score recorded at or before each compute of `grid` (NaN before the first trial ended)."""
    computes = np.array([point[0] for point in curve], dtype=float)
    running_best = np.maximum.accumulate(np.array([point[1] for point in curve], dtype=float))
    index = np.searchsorted(computes, grid, side="right") - 1
    return np.where(index >= 0, running_best[np.clip(index, 0, None)], np.nan)


def mean_curves(result: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The compute grid (in multiples of the staged search's mean compute) and each method's mean best-so-far on it."""
    unit = float(np.mean([seed["compute"] for seed in result["methods"]["staged"]["seeds"]]))
    # Every compute divided by `unit` once, here: the grid's breakpoints are then exactly the curves' steps (multiplying
    # the grid back by `unit` landed a hair past a trial's end and dropped the last trial of a method's longest seed).
    scaled = {
        name: [[[point[0] / unit, point[1]] for point in seed["curve"]] for seed in method["seeds"]]
        for name, method in result["methods"].items()
    }
    ends = {name: max(seed["compute"] for seed in method["seeds"]) / unit for name, method in result["methods"].items()}
    breakpoints = [point[0] for curves in scaled.values() for curve in curves for point in curve]
    grid = np.union1d(np.linspace(0.0, max(ends.values()), POINTS), breakpoints)  # every step where it is
    means = {}
    for name, curves in scaled.items():
        best = np.array([best_so_far(curve, grid) for curve in curves])
        means[name] = np.where(grid <= ends[name], best.mean(axis=0), np.nan)  # (NaN until every seed has finished a trial)
    return grid, means


def plot(results: list[dict], titles: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(results))
    rows = -(-len(results) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), squeeze=False)
    for axis in axes.flat[len(results):]:
        axis.set_visible(False)
    for axis, result, heading in zip(axes.flat, results, titles, strict=False):  # (more axes than results)
        grid, means = mean_curves(result)
        for name, curve in means.items():
            axis.step(grid, curve, where="post", color=COLORS.get(name, "#8C8C8C"), linewidth=2 if name == "staged" else 1.4, label=name)
        axis.axvline(1.0, color="#8C8C8C", linestyle=":", linewidth=1)
        metric = result.get("metric") or {"name": "accuracy"}
        axis.set_ylabel("best validation accuracy so far" if metric["name"] == "accuracy" else f"best validation score so far (-{metric['name'].upper()} / std)")
        axis.set_xlabel("compute (x the staged search's mean)")
        axis.set_title(f"{heading} ({len(result['methods']['staged']['seeds'])} seeds)")
        finite = np.concatenate([curve[np.isfinite(curve)] for curve in means.values()])
        low, high = np.quantile(finite, 0.1), finite.max()  # the first trials' scores would flatten what differs
        axis.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(out, dpi=150)


def title(result: dict) -> str:
    """`digits quick`, `table quick, regression`: what a panel shows."""
    task = (result.get("metric") or {}).get("task", "classification")
    return f"{result['dataset']} {result['preset']}" + (f", {task}" if task != "classification" else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by scripts/bench_search.py")
    args = parser.parse_args()
    results = [json.loads(path.read_text()) for path in args.results]
    titles = [title(result) for result in results]
    plot(results, titles, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
