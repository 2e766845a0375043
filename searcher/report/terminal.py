"""What the user sees in the terminal: a live status line while the search runs, a summary at the end."""

from __future__ import annotations

import math
import threading
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from searcher.search.controller import SearchResult
from searcher.search.stages import Stage
from searcher.search.trials import TrialOutcome, TrialRequest, result_score
from searcher.tracking.records import SearchRecord
from searcher.tracking.schema import Metrics
from searcher.train.trainer import EpochRecord


def search_console() -> Console:
    """The console a search prints to. Without a terminal (a pipe, a file, a job's log) lines are not wrapped at 80
    columns, so each finished trial stays one line a script can read; a terminal and a notebook wrap as usual."""
    console = Console()
    return console if console.is_terminal or console.is_jupyter else Console(soft_wrap=True)


class RichProgress:
    """A live status line (where the search is, overall and in each running trial); one printed line per finished trial.

    Finished-trial lines put the fixed-width columns first and the trial's name last, so long
    regularization names cannot push the columns out of line. How much is left is only known
    where a stage's trial count is fixed (regularization, final); the chain stages end when the
    evidence says so, and the line does not pretend otherwise. Several trials at once get a
    line each under it; trials in threads report their epochs from their own threads (hence
    the lock), trials in other processes show no epochs.
    """

    def __init__(self, console: Console):
        self.console = console
        self.status = console.status("starting")
        self.started = time.monotonic()
        self.best = -math.inf
        self.trials = 0  # finished in the whole search (reused ones too)
        self.stage_name = ""
        self.stage_started = self.started
        self.stage_trials = 0
        self.stage_expected: int | None = None  # trials this stage trains, where that is fixed
        self.running: dict[str, tuple[str, str]] = {}  # trial key -> (label, where it is), in the order they started
        self.lock = threading.Lock()

    def __enter__(self) -> RichProgress:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def stage(self, stage: Stage) -> None:
        last = 5 if stage.plan.transfer is not None else 4
        self.stage_name = f"stage {stage.index}/{last} {stage.name}"
        self.stage_started, self.stage_trials = time.monotonic(), 0
        self.stage_expected = {"regularization": stage.plan.regularization_trials, "final": stage.plan.final_seeds}.get(stage.name)
        self.console.rule(f"[bold]stage {stage.index} {stage.name}")

    def overall(self) -> str:
        """Where the whole search is: stage, trials finished, time so far, and what is left where that is known."""
        now = time.monotonic()
        parts = [self.stage_name, f"{self.trials} trials", f"{clock(now - self.started)} elapsed"]
        if self.stage_expected:
            here = f"trial {min(self.stage_trials + 1, self.stage_expected)}/{self.stage_expected}"
            if self.stage_trials:
                left = (now - self.stage_started) / self.stage_trials * max(0, self.stage_expected - self.stage_trials)
                here += f", ~{clock(left)} left in the stage"
            parts.append(here)
        return " · ".join(parts)

    def trial(self, request: TrialRequest, speculative: bool = False) -> None:
        with self.lock:
            self.running[request.key] = (request.label + (" (guess)" if speculative else ""), "training")
            self.show()

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None:
        with self.lock:
            if request.key in self.running:
                self.running[request.key] = (self.running[request.key][0], f"epoch {record.epoch} val_acc {record.val_acc:.4f}")
                self.show()

    def show(self) -> None:
        """The status line: overall, then the running trial on it, or several trials a line each."""
        best = [f"best score {self.best:.4f}"] if math.isfinite(self.best) else []
        trials = [f"{label} {where}" for label, where in self.running.values()]
        if not trials:
            self.status.update(self.overall())
        elif len(trials) == 1:
            self.status.update(" · ".join([self.overall(), trials[0], *best]))
        else:
            header = " · ".join([self.overall(), f"{len(trials)} trials running", *best])
            self.status.update("\n".join([header, *(f"  {trial}" for trial in trials)]))

    def trial_done(self, outcome: TrialOutcome, reused: bool = False, speculative: bool = False) -> None:
        result = outcome.result
        with self.lock:
            self.running.pop(outcome.request.key, None)
            self.trials += 1
            self.stage_trials += 1
            if outcome.status == "ok" and result is not None:
                self.best = max(self.best, outcome.score)  # the best score so far: the number the decisions compare
            self.show()
        detail = (
            f"score {result_score(result):.4f} at {result.best_epoch:>2}/{len(result.history):<2} {result.behavior:<11} {result.train_seconds:5.1f}s"
            if result
            else ""
        )
        note = f" [red]{escape(outcome.error)}[/red]" if outcome.error else ""
        note += " [dim](reused from an earlier attempt)[/dim]" if reused else ""
        note += " [dim](speculative: used if the search asks for it)[/dim]" if speculative else ""
        self.console.print(f"  {outcome.status:<7} {detail:<42} {escape(outcome.request.label)}{note}", highlight=False)


def clock(seconds: float) -> str:
    """1:05, 12:40, 1:02:03: elapsed and left, as a user reads a timer."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def summary_table(result: SearchResult) -> Table:
    table = Table(title="searcher: staged search summary")
    for column in ("stage", "winner", "score", "decision"):
        table.add_column(column)
    for stage in result.stages:
        last = stage.decisions[-1]
        table.add_row(stage.stage, stage.winner.name + f" ({stage.winner.arch.describe()})", f"{stage.score:.4f}", last.reason)
    return table


def print_summary(console: Console, result: SearchResult, ui_command: str, runs_url: str) -> None:
    console.print(summary_table(result))
    m = result.final.metrics
    console.print(
        f"[bold]final[/bold]: best-epoch val_acc {m['val_acc_mean']:.4f} ± {m['val_acc_std']:.4f} · "
        f"test_acc {m['test_acc']:.4f} ± {m['test_acc_std']:.4f} · {len(result.outcomes)} trials · {result.seconds:.1f}s"
    )
    console.print(f"MLflow UI:  {ui_command}", soft_wrap=True, highlight=False)  # soft_wrap: commands and URLs stay copyable
    console.print(f"then open:  {runs_url}", soft_wrap=True, highlight=False)


def print_stored_summary(console: Console, search: SearchRecord, ui_command: str, runs_url: str) -> None:
    """A finished search re-run: its summary from the store, nothing trained."""
    console.print(f"search [bold]{search.name}[/bold] is already complete: nothing to train. Its recorded summary:")
    table = Table(title="searcher: staged search summary (from the tracking store)")
    for column in ("stage", "winner", "score", "decision"):
        table.add_column(column)
    for stage in search.stages:
        decision = stage.decisions[-1]["reason"] if stage.decisions else ""
        table.add_row(stage.stage, stage.winner, f"{stage.score:.4f}", decision)
    console.print(table)
    m = search.metrics
    console.print(
        f"[bold]final[/bold]: best-epoch val_acc {m.get('val_acc_mean', math.nan):.4f} ± {m.get('val_acc_std', math.nan):.4f} · "
        f"test_acc {m.get(Metrics.TEST_ACC, math.nan):.4f} ± {m.get('test_acc_std', math.nan):.4f}"
    )
    console.print(f"MLflow UI:  {ui_command}", soft_wrap=True, highlight=False)
    console.print(f"then open:  {runs_url}", soft_wrap=True, highlight=False)
