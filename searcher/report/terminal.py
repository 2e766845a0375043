"""What the user sees in the terminal: a live status line while the search runs, a summary at the end."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from searcher.search.controller import SearchResult
from searcher.search.stages import Stage
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.tracking.records import SearchRecord
from searcher.tracking.schema import Metrics
from searcher.train.trainer import EpochRecord


class RichProgress:
    """Stage, trial, epoch and best-so-far on one live line; one printed line per finished trial."""

    def __init__(self, console: Console):
        self.console = console
        self.status = console.status("starting")
        self.stage_name = ""
        self.best = -math.inf

    def __enter__(self) -> RichProgress:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def stage(self, stage: Stage) -> None:
        self.stage_name = f"{stage.index} {stage.name}"
        self.console.rule(f"[bold]stage {self.stage_name}")

    def trial(self, request: TrialRequest) -> None:
        self.status.update(f"{self.stage_name} · {request.label} · starting")

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None:
        best = f"{self.best:.4f}" if math.isfinite(self.best) else "-"
        self.status.update(
            f"{self.stage_name} · {request.label} · epoch {record.epoch} · val_acc {record.val_acc:.4f} · best so far {best}"
        )

    def trial_done(self, outcome: TrialOutcome, reused: bool = False) -> None:
        result = outcome.result
        if outcome.status == "ok" and result is not None:
            self.best = max(self.best, result.best_val_acc)
        detail = (
            f"val_acc {result.best_val_acc:.4f} at epoch {result.best_epoch}/{len(result.history)}, {result.behavior}, "
            f"{result.train_seconds:.1f}s"
            if result
            else ""
        )
        reason = f" [red]{outcome.error}[/red]" if outcome.error else ""
        reason += " [dim](reused from an earlier attempt)[/dim]" if reused else ""
        self.console.print(f"  {outcome.request.label:<28} {outcome.status:<7} {detail}{reason}", highlight=False)


def summary_table(result: SearchResult) -> Table:
    table = Table(title="searcher: staged search summary")
    for column in ("stage", "winner", "val_acc", "decision"):
        table.add_column(column)
    for stage in result.stages:
        last = stage.decisions[-1]
        table.add_row(stage.stage, stage.winner.name + f" ({stage.winner.arch.describe()})", f"{stage.score:.4f}", last.reason)
    return table


def print_summary(console: Console, result: SearchResult, ui_command: str, runs_url: str) -> None:
    console.print(summary_table(result))
    m = result.final.metrics
    console.print(
        f"[bold]final[/bold]: val_acc {m['val_acc_mean']:.4f} ± {m['val_acc_std']:.4f} · "
        f"test_acc {m['test_acc']:.4f} ± {m['test_acc_std']:.4f} · {len(result.outcomes)} trials · {result.seconds:.1f}s"
    )
    console.print(f"MLflow UI:  {ui_command}", soft_wrap=True, highlight=False)  # soft_wrap: commands and URLs stay copyable
    console.print(f"then open:  {runs_url}", soft_wrap=True, highlight=False)


def print_stored_summary(console: Console, search: SearchRecord, ui_command: str, runs_url: str) -> None:
    """A finished search re-run: its summary from the store, nothing trained."""
    console.print(f"search [bold]{search.name}[/bold] is already complete: nothing to train. Its recorded summary:")
    table = Table(title="searcher: staged search summary (from the tracking store)")
    for column in ("stage", "winner", "val_acc", "decision"):
        table.add_column(column)
    for stage in search.stages:
        decision = stage.decisions[-1]["reason"] if stage.decisions else ""
        table.add_row(stage.stage, stage.winner, f"{stage.metrics.get(Metrics.BEST_VAL_ACC, math.nan):.4f}", decision)
    console.print(table)
    m = search.metrics
    console.print(
        f"[bold]final[/bold]: val_acc {m.get('val_acc_mean', math.nan):.4f} ± {m.get('val_acc_std', math.nan):.4f} · "
        f"test_acc {m.get(Metrics.TEST_ACC, math.nan):.4f} ± {m.get('test_acc_std', math.nan):.4f}"
    )
    console.print(f"MLflow UI:  {ui_command}", soft_wrap=True, highlight=False)
    console.print(f"then open:  {runs_url}", soft_wrap=True, highlight=False)
