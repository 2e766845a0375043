"""Learning curves of one trial: train/val loss and validation accuracy per epoch, the best epoch and why it stopped.

A search can have hundreds of trials, so all of them are drawn on ONE reused figure with
fixed margins: only the lines, limits and title change between trials, which makes each
PNG about 3x cheaper than a fresh figure. They are logged on the trial runs at 1x (1000 px
wide); the report's own copy (`trial_plot`) is drawn at 2x like its other figures.
"""

from __future__ import annotations

import math

from searcher.report.canvas import DISPLAY_DPI, DPI, OKABE_ITO, WIDTH, Plot, slug, style
from searcher.tracking.records import TrialRecord

HEIGHT = 3.6  # inches
MARGINS = {"left": 0.75, "right": 1.55, "bottom": 0.6, "top": 0.8, "between": 0.85}  # inches: the legend sits in the right one


def stop_reason(trial: TrialRecord) -> str:
    epochs = int(trial.metrics.get("epochs", 0))
    best = trial.metrics.get("best_epoch")
    score = f", score {trial.score:.4f}" if math.isfinite(trial.score) else ""
    detail = score + (f", best epoch {int(best)} (val_acc {trial.val_acc:.4f})" if best is not None and math.isfinite(trial.val_acc) else "")
    if trial.decision == "pruned":
        return f"pruned after {epochs} epochs{detail}"
    return f"{trial.behavior or trial.status.lower()} after {epochs} epochs{detail}"


class TrialFigures:
    """One figure, redrawn for each trial; `dpi`: DISPLAY_DPI for the trial runs, DPI for the report."""

    def __init__(self, dpi: int = DISPLAY_DPI) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        with style():
            self.figure = Figure(figsize=(WIDTH, HEIGHT), dpi=dpi)
            FigureCanvasAgg(self.figure)
            m = MARGINS
            plot_width = WIDTH - m["left"] - m["right"]
            self.figure.subplots_adjust(
                left=m["left"] / WIDTH, right=1 - m["right"] / WIDTH, bottom=m["bottom"] / HEIGHT, top=1 - m["top"] / HEIGHT,
                wspace=m["between"] / ((plot_width - m["between"]) / 2),
            )
            self.loss_ax, self.acc_ax = self.figure.subplots(1, 2)
            (self.train_loss,) = self.loss_ax.plot([], [], "-", color=OKABE_ITO["blue"], label="train loss")
            (self.val_loss,) = self.loss_ax.plot([], [], "--", color=OKABE_ITO["vermillion"], label="val loss")
            (self.val_acc,) = self.acc_ax.plot([], [], color=OKABE_ITO["bluish green"], label="val accuracy")
            self.best_line = self.acc_ax.axvline(0, ls=":", color="grey", label="best epoch")
            (self.best_point,) = self.acc_ax.plot([], [], "o", color=OKABE_ITO["bluish green"], ms=6)
            self.loss_ax.set_title("loss")
            self.acc_ax.set_title("validation accuracy")
            for ax in (self.loss_ax, self.acc_ax):
                ax.set_xlabel("epoch")
            handles = [self.train_loss, self.val_loss, self.val_acc, self.best_line]
            self.figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(1 - (m["right"] - 0.1) / WIDTH, 1 - m["top"] / HEIGHT))
            self.title = self.figure.suptitle("", x=m["left"] / WIDTH, ha="left")

    def draw(self, trial: TrialRecord) -> Plot:
        """The trial's figure (valid until the next `draw`): save it before drawing another."""
        title = f"learning curves: {trial.name} ({trial.stage})"
        for line, key in ((self.train_loss, "train_loss"), (self.val_loss, "val_loss"), (self.val_acc, "val_acc")):
            curve = trial.curves.get(key)
            line.set_data(curve.steps if curve else [], curve.values if curve else [])
        best = trial.metrics.get("best_epoch")
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


def trial_plot(trial: TrialRecord, dpi: int = DPI) -> Plot:
    """One trial's learning curves on a figure of its own (the report's copy: 2x by default)."""
    return TrialFigures(dpi).draw(trial)
