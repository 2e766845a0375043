"""The report's figures, drawn from hand-made records of the awkward cases: labels never overlap or leave
the axes, legends stay off the data, only chosen points are named, and every figure is page-sized at 2x."""

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from searcher.report import canvas, plots
from searcher.report.curves import trial_plot
from searcher.report.importance import MIN_TRIALS
from searcher.tracking.records import Curve, SearchRecord, StageRecord, TrialRecord

CLOCK = itertools.count(1)


def trial(name: str, stage: str, score: float, decision: str = "rejected", widths: tuple = (16, 16), **params: float) -> TrialRecord:
    epochs = tuple(range(1, 11))
    return TrialRecord(
        run_id=f"{stage}-{name}",
        name=name,
        stage=stage,
        status="FINISHED",
        decision=decision,
        behavior="stable",
        started_ms=next(CLOCK),
        metrics={"best_val_acc": score, "score": score, "epochs": 10, "best_epoch": 7, "train_seconds": 1.0, "test_acc": score - 0.01},
        params={"arch.depth": str(len(widths)), "arch.widths": ",".join(map(str, widths))} | {f"stage.{k}": str(v) for k, v in params.items()},
        curves={"val_acc": Curve(epochs, tuple(score * e / 10 for e in epochs)), "train_loss": Curve(epochs, tuple(1 / e for e in epochs))},
    )


def stage(name: str, trials: list[TrialRecord], decisions: tuple = (), winner: str = "") -> StageRecord:
    return StageRecord(f"run-{name}", name, name, "FINISHED", next(CLOCK), winner, None, {}, decisions, tuple(trials))


def search(*stages: StageRecord) -> SearchRecord:
    return SearchRecord("run", "a-search-name-as-long-as-the-default-ones-digits-default-seed0-1a2b3c4d", "1", "sqlite://", "FINISHED", 0, 1, {}, {}, {}, stages)


SELECTED = ({"decision": "selected", "reason": "w32 d4 at 0.9900; stopped: adding layer 5 did not help beyond noise", "numbers": {}},)


def crowded_depth() -> SearchRecord:
    """Two children at exactly the same point, an accepted layer at the top edge, a rejected one at the right edge."""
    width = stage("width", [trial("w16 d2", "width", 0.95, "selected"), trial("w16 d2 r1", "width", 0.96, "selected")], winner="w16 d2")
    depth = stage(
        "depth",
        [
            trial("d3 +w8", "depth", 0.97, widths=(16, 16, 8)),
            trial("d3 +w16", "depth", 0.98, widths=(16, 16, 16)),
            trial("d3 +w32", "depth", 0.98, "selected", widths=(16, 16, 32)),
            trial("d3 +w32 r1", "depth", 0.98, "selected", widths=(16, 16, 32)),
            trial("d4 +w64 with a rather long name", "depth", 0.99, "selected", widths=(16, 16, 32, 64)),
            trial("d5 +w128", "depth", 0.995, widths=(16, 16, 32, 64, 128)),
        ],
        SELECTED,
    )
    return search(width, depth)


def regularization(settings: int) -> SearchRecord:
    trials = [trial(f"reg do={i / 40:.3f}", "regularization", 0.9 + i / 400, dropout=i / 40, weight_decay=(i % 3) / 1000) for i in range(settings)]
    trials[-1] = trial(trials[-1].name, "regularization", 0.99, "selected", dropout=0.5, weight_decay=0.002)
    trials.insert(2, trial("reg pruned", "regularization", 0.5, "pruned", dropout=0.2, weight_decay=0.0))
    return search(stage("regularization", trials, ({"decision": "selected", "reason": "", "numbers": {"unregularized_score": 0.95}},)))


def same_point_transfer() -> SearchRecord:
    rows = [("w16 d2", 0.99, 0.80, 1, 1), ("d3 +w32 with a long name", 0.98, 0.90, 2, 2), ("w32 d2", 0.97, 0.70, 3, 3)]
    decisions = tuple(
        {"decision": "probed", "numbers": {"source": s, "val_acc": v, "transfer_acc": t, "val_rank": vr, "transfer_rank": tr, "epochs": 7}}
        for s, v, t, vr, tr in rows
    )
    return search(stage("transfer", [trial("transfer w16 d2", "transfer", 0.8)], decisions))


def texts(figure) -> list:
    """Every piece of text a reader must see whole: titles, axis labels, point labels, legends."""
    found = [t for t in figure.texts if t.get_text()] + list(figure.legends)
    for ax in figure.axes:
        found += [ax.xaxis.label, ax.yaxis.label] + [c for c in ax.get_children() if hasattr(c, "get_text") and c.get_text() and c.get_visible()]
        found += [ax.get_legend()] if ax.get_legend() else []
    return found


def check_layout(plot: canvas.Plot, tmp_path: Path) -> list[str]:
    """The saved PNG is page-sized at 2x; no text overlaps another or leaves the figure; legends keep off the axes.
    Returns the point labels drawn."""
    path = plot.save(tmp_path)
    with Image.open(path) as image:
        assert image.size[0] == canvas.WIDTH * canvas.DPI == 2 * 1000
    renderer = plot.figure.canvas.get_renderer()
    boxes = [(item, item.get_window_extent(renderer)) for item in texts(plot.figure)]
    inside = plot.figure.bbox.padded(-1)
    for item, box in boxes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, f"{item} is cut off"
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"{a} overlaps {b}"
    for legend in plot.figure.legends:
        assert not any(legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer)) for ax in plot.figure.axes)
    return [c.get_text() for ax in plot.figure.axes for c in ax.texts]


def test_depth_names_only_the_start_and_accepted_layers_without_overlap(tmp_path):
    record = crowded_depth()
    labels = check_layout(plots.stage_plot(record.stage("depth"), record), tmp_path)
    assert labels == ["start: w16 d2 (0.9550)", "accepted: d3 +w32 (0.9800)", "accepted: d4 +w64 with a rather long name (0.9900)"]
    legend = [t.get_text() for t in plots.stage_plot(record.stage("depth"), record).figure.legends[0].get_texts()]
    assert legend == ["start: stage 1 winner", "accepted layer", "rejected layer", "one seed (hollow, to the right)"]


def test_a_depth_stage_that_accepted_nothing_has_no_selected_in_its_legend(tmp_path):
    record = crowded_depth()
    rejected = stage("depth", [trial("d3 +w16", "depth", 0.97, widths=(16, 16, 16))], SELECTED)
    plot = plots.stage_plot(rejected, search(record.stage("width"), rejected))
    assert check_layout(plot, tmp_path) == ["start: w16 d2 (0.9550)"]
    assert [t.get_text() for t in plot.figure.legends[0].get_texts()] == ["start: stage 1 winner", "rejected layer", "one seed (hollow, to the right)"]


def test_transfer_labels_of_one_point_merge_and_stay_inside(tmp_path):
    record = same_point_transfer()
    labels = check_layout(plots.stage_plot(record.stage("transfer"), record), tmp_path)
    assert labels == ["best for transfer: w16 d2\nbest in validation: w16 d2"]


@pytest.mark.parametrize("settings", [3, MIN_TRIALS])
def test_regularization_ranks_importances_only_with_enough_trials(settings, tmp_path):
    record = regularization(settings)
    plot = plots.stage_plot(record.stage("regularization"), record)
    assert check_layout(plot, tmp_path) == [f"selected: reg do={(settings - 1) / 40:.3f}"]
    titles = " ".join(ax.get_title(loc="left") for ax in plot.figure.axes)
    if settings < MIN_TRIALS:
        assert len(plot.figure.axes) == 1 and "too few trials for importances (3 finished settings" in titles
    else:
        assert len(plot.figure.axes) == 2 and f"fANOVA over {MIN_TRIALS} finished settings" in titles


def test_the_overview_and_the_curves_are_page_sized_with_outside_legends(tmp_path):
    record = crowded_depth()
    check_layout(plots.overview_plot(search(*record.stages, regularization(3).stages[0])), tmp_path)
    check_layout(trial_plot(record.stage("depth").trials[0]), tmp_path)


def test_the_stage_palette_is_okabe_ito():
    assert set(canvas.STAGE_COLORS.values()) <= set(canvas.OKABE_ITO.values())
    assert len(set(canvas.STAGE_COLORS.values())) == len(canvas.STAGE_COLORS)


def test_failed_trials_are_drawn_around_not_through(tmp_path):
    failed = {"best_val_acc": float("nan"), "score": float("-inf"), "train_seconds": 0.5}
    width = stage("width", [trial("w16 d2", "width", 0.95, "selected"), replace(trial("w32 d2", "width", 0.9, "failed"), metrics=failed)])
    depth = stage("depth", [replace(trial("d3 +w16", "depth", 0.9, "failed", widths=(16, 16, 16)), metrics=failed)])
    final = stage("final", [replace(trial("final seed 0", "final", 0.9, "selected"), metrics={"best_val_acc": 0.9})])
    record = search(width, depth, final, regularization(3).stages[0])
    for part in record.stages:
        check_layout(plots.stage_plot(part, record), tmp_path)
    check_layout(plots.overview_plot(record), tmp_path)


def test_trial_figures_by_default_only_where_the_search_took_seconds_a_trial():
    """The figures are drawn after the search, one by one: what counts is its wall per trial, not the trials' own."""
    from dataclasses import replace

    from searcher.report.build import wants_trial_plots

    trials = [replace(trial(f"w{n}", "width", 0.9), metrics={"best_val_acc": 0.9, "train_seconds": 4.0}) for n in range(8)]
    one_by_one = replace(search(stage("width", trials)), metrics={"search_seconds": 8 * 4.0})
    side_by_side = replace(one_by_one, metrics={"search_seconds": 8 * 4.0 / 4})  # four at once: 1 s of search a trial
    assert wants_trial_plots(one_by_one, None) and not wants_trial_plots(side_by_side, None)
    assert wants_trial_plots(side_by_side, True) and not wants_trial_plots(one_by_one, False)
