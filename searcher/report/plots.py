"""The search's figures, drawn from its records (matplotlib's Agg canvas: no display, no pyplot state).

One learning-curve figure per trial (optional: the costliest part), one story per
stage, and one overview of all stages on a shared axis of compute spent. Each
PNG carries its title in the PNG `Title` text chunk, so a test (or a person
with `identify -verbose`) can tell which figure a file holds.

One module of ~350 lines on purpose: eight figures share one look (colours,
fixed margins, `new_figure`), and each is a short function read on its own.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searcher.tracking.records import SearchRecord, StageRecord, TrialRecord

DPI = 80  # small, fast PNGs: a 7x2.6 inch figure is 560x208 pixels
# Fixed margins (inches), not constrained layout: measuring every label first doubles the drawing time.
MARGIN_INCHES = {"left": 0.7, "right": 0.15, "bottom": 0.5, "top": 0.35}
DECISION_COLORS = {"selected": "#2a9d8f", "rejected": "#e76f51", "pruned": "#f4a261", "failed": "#264653", "": "#8d99ae"}
STAGE_COLORS = {
    "baseline": "#264653",
    "width": "#2a9d8f",
    "depth": "#e9c46a",
    "regularization": "#f4a261",
    "final": "#e76f51",
    "transfer": "#6a4c93",
}


@dataclass
class Plot:
    name: str  # file name without .png, e.g. "stage-depth"
    title: str  # drawn on the figure and stored in the PNG's Title chunk
    figure: Any  # matplotlib.figure.Figure

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.png"
        self.figure.savefig(path, format="png", metadata={"Title": self.title, "Software": "searcher"})
        return path


def new_figure(width: float, height: float, columns: int = 1, **margins: float) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    inches = MARGIN_INCHES
    layout = {
        "left": inches["left"] / width,
        "right": 1 - inches["right"] / width,
        "bottom": inches["bottom"] / height,
        "top": 1 - inches["top"] / height,
        "wspace": 0.25,
    }
    figure.subplots_adjust(**(layout | margins))
    axes = figure.subplots(1, columns, squeeze=False)[0]
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
    return figure, list(axes)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_") or "run"


def stop_reason(trial: TrialRecord) -> str:
    epochs = trial.epochs
    best = trial.best_epoch
    detail = f", best {trial.val_acc:.4f} at epoch {int(best)}" if best is not None and math.isfinite(trial.val_acc) else ""
    if trial.decision == "pruned":
        return f"pruned after {epochs} epochs{detail}"
    return f"{trial.behavior or trial.status.lower()} after {epochs} epochs{detail}"


# per trial


class TrialFigures:
    """Learning curves of many trials on ONE reused figure: only the lines, limits and titles change between
    trials, which makes each PNG about 3x cheaper than a fresh figure (the axes, ticks and legend are kept)."""

    def __init__(self) -> None:
        self.figure, (self.loss_ax, self.acc_ax) = new_figure(7, 2.8, 2, top=0.74)
        (self.train_loss,) = self.loss_ax.plot([], [], "-", label="train loss")
        (self.val_loss,) = self.loss_ax.plot([], [], "--", label="val loss")
        (self.val_acc,) = self.acc_ax.plot([], [], color=DECISION_COLORS["selected"])
        self.best_line = self.acc_ax.axvline(0, ls=":", color="grey")
        (self.best_point,) = self.acc_ax.plot([], [], "o", color=DECISION_COLORS["selected"], ms=5)
        self.loss_ax.legend(fontsize=7, loc="upper right")
        self.loss_ax.set_title("loss", fontsize=8)
        self.acc_ax.set_title("validation accuracy (dotted: best epoch)", fontsize=8)
        for ax in (self.loss_ax, self.acc_ax):
            ax.set_xlabel("epoch", fontsize=8)
        self.title = self.figure.suptitle("", fontsize=9)

    def draw(self, trial: TrialRecord) -> Plot:
        """The trial's figure (valid until the next `draw`): save it before drawing another."""
        title = f"learning curves: {trial.name} ({trial.stage})"
        for line, key in ((self.train_loss, "train_loss"), (self.val_loss, "val_loss"), (self.val_acc, "val_acc")):
            curve = trial.curves.get(key)
            line.set_data(curve.steps if curve else [], curve.values if curve else [])
        best = trial.best_epoch
        visible = best is not None and math.isfinite(trial.val_acc)
        self.best_line.set_visible(visible)
        self.best_point.set_visible(visible)
        if visible:
            self.best_line.set_xdata([best, best])
            self.best_point.set_data([best], [trial.val_acc])
        for ax in (self.loss_ax, self.acc_ax):
            ax.relim(visible_only=True)
            ax.autoscale_view()
        self.title.set_text(f"{title}\nstopped: {stop_reason(trial)}")
        return Plot(f"trial-{slug(trial.name)}", title, self.figure)


# per stage


def _points(ax: Any, trials: list[TrialRecord], x_of: Callable[[TrialRecord], float], annotate: bool = True) -> None:
    for trial in trials:
        if not math.isfinite(trial.val_acc):
            continue
        ax.scatter([x_of(trial)], [trial.val_acc], color=DECISION_COLORS.get(trial.decision, "#8d99ae"), s=28, zorder=3)
        if annotate:
            ax.annotate(trial.name, (x_of(trial), trial.val_acc), fontsize=6, xytext=(3, 3), textcoords="offset points")


def _legend(ax: Any, decisions: list[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=DECISION_COLORS[d], label=d) for d in decisions]
    ax.legend(handles=handles, fontsize=7, loc="lower right")


def baseline_plot(stage: StageRecord) -> Plot:
    title = "baseline: the small network trained until stable"
    figure, (ax,) = new_figure(5, 2.8)
    for trial in stage.trials:
        if "val_acc" in trial.curves:
            curve = trial.curves["val_acc"]
            ax.plot(curve.steps, curve.values, label=f"{trial.name}: {stop_reason(trial)}")
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("validation accuracy", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    return Plot("stage-baseline", title, figure)


def width_plot(stage: StageRecord) -> Plot:
    """Validation accuracy vs width: every candidate, the kept one and the tolerance band."""
    title = "width: validation accuracy vs width"
    figure, (ax,) = new_figure(5, 2.8)
    points = [d["numbers"] for d in stage.decisions if d["decision"] in ("kept", "rejected") and "width" in d["numbers"]]
    chosen = next((d["numbers"] for d in stage.decisions if d["decision"] == "selected"), None)
    finite = [p for p in points if isinstance(p.get("val_acc"), (int, float)) and math.isfinite(p["val_acc"])]
    if finite:
        ax.plot([p["width"] for p in finite], [p["val_acc"] for p in finite], "-", color="#8d99ae", zorder=1)
        ax.scatter([p["width"] for p in finite], [p["val_acc"] for p in finite], color=DECISION_COLORS["rejected"], s=28, zorder=2)
    if chosen:
        ax.scatter([chosen["width"]], [chosen["val_acc"]], color=DECISION_COLORS["selected"], s=60, zorder=3, label=f"kept: width {chosen['width']}")
        if "best_val_acc" in chosen:
            ax.axhline(chosen["best_val_acc"], ls=":", color="grey", label="best")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xscale("log", base=2)
    widths = sorted({p["width"] for p in points})
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    ax.set_xlabel("width (channels per layer)", fontsize=8)
    ax.set_ylabel("validation accuracy", fontsize=8)
    ax.set_title(title, fontsize=9)
    return Plot("stage-width", title, figure)


def depth_plot(stage: StageRecord) -> Plot:
    """Validation accuracy vs depth: each child network; accepted layers joined, rejected ones marked."""
    title = "depth: validation accuracy vs depth (accepted and rejected layers)"
    figure, (ax,) = new_figure(5.5, 3)
    ax.margins(x=0.15, y=0.1)
    _points(ax, list(stage.trials), lambda t: t.depth)
    path: list[tuple[float, float]] = []
    for entry in stage.decisions:
        n = entry["numbers"]
        if entry["decision"] in ("accepted", "rejected") and "depth" in n:
            if not path and math.isfinite(n["parent_val_acc"]):
                path.append((n["depth"] - 1, n["parent_val_acc"]))
            if entry["decision"] == "accepted":
                path.append((n["depth"], n["child_val_acc"]))
            elif math.isfinite(n["child_val_acc"]):
                ax.annotate("rejected", (n["depth"], n["child_val_acc"]), fontsize=7, color=DECISION_COLORS["rejected"], xytext=(0, -12), textcoords="offset points")
    if path:
        ax.plot([d for d, _ in path], [v for _, v in path], "-", color=DECISION_COLORS["selected"], zorder=2)
        ax.scatter([path[0][0]], [path[0][1]], color="#8d99ae", s=28, zorder=3)
        ax.annotate("start (stage 1 winner)", path[0], fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("depth (layers)", fontsize=8)
    ax.set_ylabel("validation accuracy", fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _legend(ax, ["selected", "rejected"])
    ax.set_title(title, fontsize=9)
    return Plot("stage-depth", title, figure)


def importances(trials: list[TrialRecord]) -> tuple[dict[str, float], str]:
    """fANOVA importances of the regularizers from finished trials, or {} and why not (too few trials)."""
    names = sorted({k.removeprefix("stage.") for t in trials for k in t.params if k.startswith("stage.")})
    done = [t for t in trials if t.decision in ("selected", "rejected") and math.isfinite(t.val_acc)]
    varied = [n for n in names if len({t.params.get(f"stage.{n}") for t in done}) > 1]
    if len(done) < 3 or not varied:
        return {}, f"too few finished trials for importances ({len(done)}; needs 3 that vary a parameter)"
    import optuna

    study = optuna.create_study(direction="maximize", storage=optuna.storages.InMemoryStorage())
    for trial in done:
        values = {n: float(trial.params[f"stage.{n}"]) for n in varied}
        distributions: dict[str, optuna.distributions.BaseDistribution] = {
            n: optuna.distributions.FloatDistribution(min(float(t.params[f"stage.{n}"]) for t in done), max(float(t.params[f"stage.{n}"]) for t in done))
            for n in varied
        }
        study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions, value=trial.val_acc))
    try:
        found = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as error:  # fANOVA can fail on degenerate data: say so instead of failing the report
        return {}, f"importances unavailable ({type(error).__name__})"
    return dict(found), f"fANOVA over {len(done)} finished trials"


def regularization_plot(stage: StageRecord) -> Plot:
    """The Optuna trials in the order they ran (pruned ones marked) and the regularizers' importances."""
    title = "regularization: trials over time and parameter importances"
    figure, (ax, imp_ax) = new_figure(8, 2.9, 2, top=0.8)
    trials = list(stage.trials)
    for number, trial in enumerate(trials, 1):
        value = trial.val_acc if math.isfinite(trial.val_acc) else None
        if value is not None:
            marker = "x" if trial.decision == "pruned" else "o"
            ax.scatter([number], [value], marker=marker, color=DECISION_COLORS.get(trial.decision, "#8d99ae"), s=30, zorder=3)
    unregularized = next((d["numbers"].get("unregularized_val_acc") for d in stage.decisions if d["decision"] == "selected"), None)
    if isinstance(unregularized, (int, float)) and math.isfinite(unregularized):
        ax.axhline(unregularized, ls=":", color="grey", label="unregularized")
        ax.legend(fontsize=7, loc="lower right")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial (in the order run)", fontsize=8)
    ax.set_ylabel("validation accuracy", fontsize=8)
    ax.set_title("trials (x: pruned)", fontsize=8)
    found, why = importances(trials)
    if found:
        names = list(found)[::-1]
        imp_ax.barh(names, [found[n] for n in names], color=STAGE_COLORS["regularization"])
        imp_ax.tick_params(labelsize=7)
        imp_ax.set_title(f"importance ({why})", fontsize=8)
    else:
        imp_ax.set_axis_off()
        imp_ax.text(0.5, 0.5, "\n".join(textwrap.wrap(why, 40)), ha="center", va="center", fontsize=8, transform=imp_ax.transAxes)
    figure.suptitle(title, fontsize=9)
    return Plot("stage-regularization", title, figure)


def final_plot(stage: StageRecord) -> Plot:
    """Validation and test accuracy of each retraining, with the means."""
    title = "final: validation and test accuracy per seed"
    figure, (ax,) = new_figure(5, 2.8)
    trials = [t for t in stage.trials if math.isfinite(t.val_acc)]
    xs = range(len(trials))
    ax.bar([x - 0.2 for x in xs], [t.val_acc for t in trials], width=0.4, label="validation", color=STAGE_COLORS["width"])
    ax.bar([x + 0.2 for x in xs], [t.test_acc for t in trials], width=0.4, label="test", color=STAGE_COLORS["final"])
    ax.set_xticks(list(xs), [t.name for t in trials], fontsize=7)
    values = [t.val_acc for t in trials] + [t.test_acc for t in trials]
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.02))
    ax.legend(fontsize=7, loc="lower right")
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_title(title, fontsize=9)
    return Plot("stage-final", title, figure)


def transfer_plot(stage: StageRecord) -> Plot:
    """Validation accuracy (source) vs transfer accuracy (target) of every probed candidate."""
    title = "transfer: validation accuracy vs transfer accuracy"
    figure, (ax,) = new_figure(5.5, 3)
    rows = [d["numbers"] for d in stage.decisions if d["decision"] == "probed"]
    labels: dict[tuple[float, float], list[str]] = {}
    for row in rows:
        if not (math.isfinite(row["val_acc"]) and math.isfinite(row["transfer_acc"])):
            continue
        best = row["transfer_rank"] == 1
        color = DECISION_COLORS["selected"] if best else STAGE_COLORS["transfer"]
        ax.scatter([row["val_acc"]], [row["transfer_acc"]], color=color, s=50 if best else 28, zorder=3)
        label = f"{row['source']} ({row['epochs']} ep)" + (", best in validation" if row["val_rank"] == 1 else "")
        labels.setdefault((row["val_acc"], row["transfer_acc"]), []).append(label)
    middle = (min(x for x, _ in labels) + max(x for x, _ in labels)) / 2 if labels else 0
    for (x, y), names in labels.items():  # candidates at the same point share one label
        right = x > middle
        ax.annotate("\n".join(names), (x, y), fontsize=6, ha="right" if right else "left", xytext=(-4 if right else 4, 3), textcoords="offset points")
    ax.margins(x=0.1, y=0.2)  # room for the labels
    ax.set_xlabel("validation accuracy (searched data)", fontsize=8)
    ax.set_ylabel("transfer accuracy (target, linear probe)", fontsize=8)
    ax.set_title(title, fontsize=9)
    return Plot("stage-transfer", title, figure)


STAGE_PLOTS: dict[str, Callable[[StageRecord], Plot]] = {
    "baseline": baseline_plot,
    "width": width_plot,
    "depth": depth_plot,
    "regularization": regularization_plot,
    "final": final_plot,
    "transfer": transfer_plot,
}


def stage_plot(stage: StageRecord) -> Plot | None:
    make = STAGE_PLOTS.get(stage.stage)
    return make(stage) if make and stage.trials else None


# the whole search


def overview_plot(search: SearchRecord) -> Plot:
    """Every trial's validation accuracy against the training compute spent so far, stage by stage."""
    title = f"search {search.name}: validation accuracy vs compute spent"
    figure, (ax,) = new_figure(8, 3.2)
    spent, best = 0.0, -math.inf
    best_x, best_y = [], []
    for stage in search.stages:
        start = spent
        xs, ys = [], []
        for trial in sorted(stage.trials, key=lambda t: t.started_ms):
            spent += trial.seconds
            if math.isfinite(trial.val_acc):
                xs.append(spent)
                ys.append(trial.val_acc)
                if stage.stage != "transfer" and trial.val_acc > best:  # probes score on the target: not comparable
                    best = trial.val_acc
                    best_x.append(spent)
                    best_y.append(best)
        label = f"{stage.stage} (target val)" if stage.stage == "transfer" else stage.stage
        ax.scatter(xs, ys, s=18, color=STAGE_COLORS.get(stage.stage, "#8d99ae"), label=label, zorder=3)
        ax.axvspan(start, spent, color=STAGE_COLORS.get(stage.stage, "#8d99ae"), alpha=0.07)
    if best_x:
        ax.step(best_x + [spent], best_y + [best_y[-1]], where="post", color="black", lw=1, label="best so far")
    ax.set_xlabel("training compute spent (seconds, cumulative)", fontsize=8)
    ax.set_ylabel("validation accuracy", fontsize=8)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.set_title(title, fontsize=9)
    return Plot("overview", title, figure)
