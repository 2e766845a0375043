"""The search's figures, drawn from its records (matplotlib's Agg canvas: no display, no pyplot state).

One story per stage and one overview of all stages on a shared axis of compute spent
(learning curves per trial: curves.py; the look shared by all: canvas.py). A stage is
drawn as the candidates it compared, each the mean over its seeds (the number its
decision quotes) with the seeds beside it; only the chosen ones are named on the figure,
the report's tables name the rest. Each PNG carries its title in the PNG `Title` text
chunk, so a test (or a person with `identify -verbose`) can tell which figure a file holds.
Over 300 lines because each stage's figure is its own short function here, beside the helpers they share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from searcher.report.candidates import Candidate, candidates, trial_score
from searcher.report.canvas import (
    DECISIONS,
    GREY,
    OKABE_ITO,
    STAGE_COLORS,
    Label,
    Plot,
    decision_handle,
    legend_outside,
    new_figure,
    note,
    offset,
    place_labels,
    styled,
    titles,
)
from searcher.report.curves import stop_reason
from searcher.report.importance import importances
from searcher.tracking.records import SearchRecord, StageRecord
from searcher.train.metrics import ACCURACY

SEED_STEP = 7  # points between the hollow markers of one candidate's seeds, right of its mean


def _seed_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", ls="", markerfacecolor="none", color=GREY, markersize=6, label="one seed (hollow, to the right)")


def _draw_candidates(ax: Any, found: Sequence[tuple[float, Candidate]], decision: str | None = None) -> list[tuple[float, float, float]]:
    """Each candidate at its x: its mean filled (coloured by its decision, or `decision`), its seeds hollow in a
    row to the right; returns the markers drawn as (x, y, shift in points), for label placement."""
    drawn = []
    for x, candidate in found:
        color, marker = DECISIONS.get(candidate.decision if decision is None else decision, DECISIONS[""])
        if math.isfinite(candidate.score):
            ax.plot([x], [candidate.score], ls="", marker=marker, ms=9, color=color, mec="white", mew=0.8, zorder=4)
            drawn.append((x, candidate.score, 0.0))
        seeds = [s for s in candidate.scores if math.isfinite(s)]
        for index, seed in enumerate(seeds if len(seeds) > 1 else []):
            shift = SEED_STEP * (index + 1.5)
            ax.plot([x], [seed], ls="", marker=marker, ms=5.5, mfc="none", mec=color, mew=1, zorder=3, transform=offset(ax, shift))
            ax.update_datalim([(x, seed)])  # a shifted line is left out of the data limits
            drawn.append((x, seed, shift))
    return drawn


def _decision_handles(found: list[Candidate], names: dict[str, str]) -> list[Any]:
    present = {c.decision for c in found}
    return [decision_handle(d, names.get(d, d)) for d in DECISIONS if d in present]


def _verdict(stage: StageRecord) -> str:
    """The stage's own words for what it chose (its `selected` decision), shown under the title."""
    return next((d["reason"] for d in stage.decisions if d["decision"] == "selected"), "")


def _score_axis(ax: Any, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation score\n(filled: mean over seeds)")


@styled
def baseline_plot(stage: StageRecord, search: SearchRecord | None = None) -> Plot:
    title = "baseline: the small network trained until stable"
    figure, (ax,) = new_figure(3.6)
    handles, labels = [], []
    colors = [OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["bluish green"], OKABE_ITO["orange"]]
    for index, trial in enumerate(stage.trials):
        curve = trial.curves.get("val_acc")
        if curve is None:
            continue
        (line,) = ax.plot(curve.steps, curve.values, color=colors[index % len(colors)], label=trial.name)
        handles.append(line)
        best = trial.metrics.get("best_epoch")
        if best is not None and math.isfinite(trial.val_acc):
            ax.plot([best], [trial.val_acc], "o", color=line.get_color(), ms=7, zorder=3)
        labels.append(f"{trial.name}: {stop_reason(trial)}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {(search.metric if search else ACCURACY).score_words}".replace(" in standard", "\nin standard"))
    ax.xaxis.get_major_locator().set_params(integer=True)
    legend_outside(figure, handles + ([decision_handle("", "best epoch (kept weights)", 7)] if handles else []))
    titles(figure, title, ax, "; ".join(labels))
    return Plot("stage-baseline", title, figure)


@styled
def width_plot(stage: StageRecord, search: SearchRecord | None = None) -> Plot:
    """Validation score vs width: every candidate compared (the baseline's first seed included), the kept one named."""
    title = "width: validation score vs width"
    figure, (ax,) = new_figure(3.8)
    found = candidates(search.trials if search else stage.trials, "width")
    by_width = sorted(((c.first.widths[0] if c.first.widths else 0, c) for c in found), key=lambda p: p[0])
    finite = [(w, c.score) for w, c in by_width if math.isfinite(c.score)]
    if finite:
        ax.plot([w for w, _ in finite], [s for _, s in finite], "-", color=GREY, lw=1, zorder=1)
    drawn = _draw_candidates(ax, by_width)
    ax.set_xscale("log", base=2)
    widths = sorted({w for w, _ in by_width if w > 0})
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    if len(widths) == 1:
        ax.set_xlim(widths[0] / 2, widths[0] * 2)
    else:
        ax.margins(x=0.12)
    ax.margins(y=0.25)
    unit = search.input.get("width_unit", "channels") if search else "channels"  # (records before families: the cnn's)
    _score_axis(ax, f"width ({unit} per layer, log scale)")
    legend_outside(figure, _decision_handles(found, {"selected": "kept"}) + [_seed_handle()])
    titles(figure, title, ax, _verdict(stage))
    chosen = [(w, c) for w, c in by_width if c.decision == "selected" and math.isfinite(c.score)]
    place_labels(figure, ax, [Label(w, c.score, f"kept: {c.name} ({c.score:.4f})") for w, c in chosen], drawn)
    return Plot("stage-width", title, figure)


def _depth_positions(found: list[Candidate]) -> list[tuple[float, Candidate]]:
    """Candidates at their depth; children of one round side by side around it, so none hides another."""
    by_depth: dict[int, list[Candidate]] = {}
    for candidate in found:
        by_depth.setdefault(candidate.first.depth, []).append(candidate)
    placed = []
    for depth, group in sorted(by_depth.items()):
        for index, candidate in enumerate(group):
            placed.append((depth + (index - (len(group) - 1) / 2) * 0.12, candidate))
    return placed


@styled
def depth_plot(stage: StageRecord, search: SearchRecord | None = None) -> Plot:
    """Validation score vs depth: the stage-1 winner it started from, each child, the accepted layers joined."""
    title = "depth: validation score vs depth (accepted and rejected layers)"
    figure, (ax,) = new_figure(3.8)
    trials = search.trials if search else list(stage.trials)
    found = candidates(trials, "depth")
    width_stage = search.stage("width") if search else None
    start = next((c for c in candidates(trials) if width_stage and c.name == width_stage.winner), None)
    found = [c for c in found if start is None or c.name != start.name]
    placed = _depth_positions(found)
    drawn = _draw_candidates(ax, placed)
    path = [(float(start.first.depth), start)] if start and math.isfinite(start.score) else []
    path += sorted(((x, c) for x, c in placed if c.decision == "selected"), key=lambda p: p[0])
    if start is not None:
        drawn += _draw_candidates(ax, [(float(start.first.depth), start)], decision="")
    if path:
        ax.plot([x for x, _ in path], [c.score for _, c in path], "-", color=DECISIONS["selected"][0], lw=1.5, zorder=2)
    depths = sorted({round(x) for x, _ in placed} | {round(x) for x, _ in path})
    if depths:
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.set_xlim(depths[0] - 0.6, depths[-1] + 0.6)
    ax.margins(y=0.3)
    _score_axis(ax, "depth (layers)")
    handles = _decision_handles(found, {"selected": "accepted layer", "rejected": "rejected layer"})
    if start is not None:
        handles.insert(0, decision_handle("", "start: stage 1 winner"))
    legend_outside(figure, handles + [_seed_handle()])
    titles(figure, title, ax, _verdict(stage))
    labels = [Label(x, c.score, f"start: {c.name} ({c.score:.4f})" if c is start else f"accepted: {c.name} ({c.score:.4f})") for x, c in path]
    place_labels(figure, ax, labels, drawn)
    return Plot("stage-depth", title, figure)


@styled
def regularization_plot(stage: StageRecord, search: SearchRecord | None = None) -> Plot:
    """The Optuna trials in the order they ran (pruned ones marked), and the regularizers' importances where
    there are enough trials for them to mean anything."""
    title = "regularization: trials over time and parameter importances"
    found, why = importances(list(stage.trials))
    figure, axes = new_figure(3.8, 2 if found else 1, (3, 2) if found else None)
    ax = axes[0]
    tried = [c for c in candidates(search.trials if search else stage.trials, "regularization")]
    placed = [(float(number), c) for number, c in enumerate(tried, 1)]
    drawn = _draw_candidates(ax, placed)
    handles = _decision_handles(tried, {"selected": "selected", "rejected": "not better", "pruned": "pruned (median pruner)"})
    # (unregularized_val_acc: the same number, as a search recorded before the decision log said `score` named it)
    selected = [d["numbers"] for d in stage.decisions if d["decision"] == "selected"]
    unregularized = next((n.get("unregularized_score", n.get("unregularized_val_acc")) for n in selected), None)
    if isinstance(unregularized, (int, float)) and math.isfinite(unregularized):
        handles.insert(0, ax.axhline(unregularized, ls="--", color=GREY, label="unregularized (stage 2 winner)"))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.margins(x=0.08, y=0.3)
    _score_axis(ax, "trial (in the order run)")
    if found:
        imp_ax = axes[1]
        names = list(found)[::-1]
        imp_ax.barh(range(len(names)), [found[n] for n in names], color=STAGE_COLORS["regularization"])
        imp_ax.set_yticks(range(len(names)), names)
        imp_ax.set_xlabel("importance (fANOVA, share of variance)")
        imp_ax.grid(axis="y", visible=False)
        note(imp_ax, why, 40)
        titles(figure, title)
    else:
        titles(figure, title, ax, f"parameter importances: {why}")
    legend_outside(figure, handles + [_seed_handle()])
    chosen = [(x, c) for x, c in placed if c.decision == "selected" and math.isfinite(c.score)]
    place_labels(figure, ax, [Label(x, c.score, f"selected: {c.name}") for x, c in chosen], drawn)
    return Plot("stage-regularization", title, figure)


@styled
def final_plot(stage: StageRecord, search: SearchRecord | None = None) -> Plot:
    """Validation and test metric of each retraining, and their means (the numbers the result quotes)."""
    metric = search.metric if search else ACCURACY
    title = f"final: validation and test {metric.label} per seed"
    figure, (ax,) = new_figure(3.6)
    trials = list(stage.trials)
    handles = []
    short = metric.short
    for key, name, color, marker, shift in (
        (f"best_val_{short}", "validation (best epoch)", OKABE_ITO["blue"], "o", -0.08), (f"test_{short}", "test", OKABE_ITO["orange"], "s", 0.08)
    ):
        values = [t.metrics.get(key, math.nan) for t in trials]
        finite = [v for v in values if math.isfinite(v)]
        (points,) = ax.plot([i + shift for i in range(len(trials))], values, ls="", marker=marker, ms=9, color=color, label=name, zorder=3)
        handles.append(points)
        if finite:
            mean = sum(finite) / len(finite)
            handles.append(ax.axhline(mean, ls="--", lw=1, color=color, zorder=2, label=f"{name} mean {mean:.4f}"))
    ax.set_xticks(range(len(trials)), [t.name for t in trials])
    ax.set_xlim(-0.6, len(trials) - 0.4)
    ax.margins(y=0.25)
    ax.grid(axis="x", visible=False)
    ax.set_ylabel(metric.label)
    legend_outside(figure, handles)
    titles(figure, title)
    return Plot("stage-final", title, figure)


@styled
def transfer_plot(stage: StageRecord, search: SearchRecord | None = None) -> Plot:
    """Validation accuracy (source) vs transfer accuracy (target) of every probed candidate; the two bests named."""
    title = "transfer: validation score vs transfer accuracy"
    figure, (ax,) = new_figure(3.8)
    rows = [
        d["numbers"] for d in stage.decisions
        if d["decision"] == "probed" and math.isfinite(d["numbers"]["val_acc"]) and math.isfinite(d["numbers"]["transfer_acc"])
    ]
    color = STAGE_COLORS["transfer"]
    ax.scatter([r["val_acc"] for r in rows], [r["transfer_acc"] for r in rows], color=color, s=45, zorder=3)
    labels = []
    for row in rows:
        if row["transfer_rank"] == 1:
            ax.scatter([row["val_acc"]], [row["transfer_acc"]], s=200, facecolors="none", edgecolors=DECISIONS["selected"][0], linewidths=2, zorder=4)
            labels.append(Label(row["val_acc"], row["transfer_acc"], f"best for transfer: {row['source']}"))
        if row["val_rank"] == 1:
            ax.scatter([row["val_acc"]], [row["transfer_acc"]], s=90, marker="D", facecolors="none", edgecolors=OKABE_ITO["black"], linewidths=1.5, zorder=4)
            labels.append(Label(row["val_acc"], row["transfer_acc"], f"best in validation: {row['source']}"))
    ax.margins(x=0.25, y=0.25)
    ax.set_xlabel("validation score (searched data)")
    ax.set_ylabel("transfer accuracy\n(target, linear probe)")
    from matplotlib.lines import Line2D

    legend_outside(
        figure,
        [
            Line2D([], [], marker="o", ls="", color=color, label="probed candidate"),
            Line2D([], [], marker="o", ls="", markersize=13, markerfacecolor="none", markeredgewidth=2, color=DECISIONS["selected"][0], label="best for transfer"),
            Line2D([], [], marker="D", ls="", markersize=9, markerfacecolor="none", markeredgewidth=1.5, color=OKABE_ITO["black"], label="best in validation"),
        ],
    )
    titles(figure, title)
    place_labels(figure, ax, labels, [(r["val_acc"], r["transfer_acc"], 0.0) for r in rows])
    return Plot("stage-transfer", title, figure)


STAGE_PLOTS: dict[str, Callable[[StageRecord, SearchRecord | None], Plot]] = {
    "baseline": baseline_plot,
    "width": width_plot,
    "depth": depth_plot,
    "regularization": regularization_plot,
    "final": final_plot,
    "transfer": transfer_plot,
}


def stage_plot(stage: StageRecord, search: SearchRecord | None = None) -> Plot | None:
    """The stage's story; `search` lets a stage count seeds its candidates trained in earlier stages."""
    make = STAGE_PLOTS.get(stage.stage)
    return make(stage, search) if make and stage.trials else None


# the whole search


@styled
def overview_plot(search: SearchRecord) -> Plot:
    """Every trial's validation score against the training compute spent so far, stage by stage."""
    title = f"search {search.name}: validation score vs compute spent"
    figure, (ax,) = new_figure(4.2)
    spent, best = 0.0, -math.inf
    best_x, best_y = [], []
    handles = []
    for stage in search.stages:
        start = spent
        xs, ys = [], []
        for trial in sorted(stage.trials, key=lambda t: t.started_ms):
            spent += trial.seconds
            value = trial.val_acc if stage.stage == "transfer" else trial_score(trial)
            if math.isfinite(value):
                xs.append(spent)
                ys.append(value)
                if stage.stage != "transfer" and value > best:  # probes score on the target: not comparable
                    best = value
                    best_x.append(spent)
                    best_y.append(best)
        color = STAGE_COLORS.get(stage.stage, GREY)
        label = f"{stage.stage} (target)" if stage.stage == "transfer" else stage.stage
        handles.append(ax.scatter(xs, ys, s=30, color=color, label=label, zorder=3, edgecolors="white", linewidths=0.5))
        ax.axvspan(start, spent, color=color, alpha=0.06, lw=0)
    if best_x:
        (line,) = ax.step(best_x + [spent], best_y + [best_y[-1]], where="post", color="#444444", lw=1.2, ls="--", label="best so far")
        handles.append(line)
    ax.set_xlim(0, spent * 1.01 if spent > 0 else 1)
    ax.set_xlabel("training compute spent (seconds, cumulative; shaded: one stage)")
    ax.set_ylabel("validation score")
    legend_outside(figure, handles)
    titles(figure, title)
    return Plot("overview", title, figure)

