"""What the user sees in the terminal: a live status line while the search runs, a summary at the end."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import replace

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from searcher.report.eta import Position, seconds_left, span, units
from searcher.search.controller import SearchResult
from searcher.search.plan import SearchPlan
from searcher.search.stages import Stage, StageResult
from searcher.search.trials import TrialOutcome, TrialRequest, result_score
from searcher.tracking.records import SearchRecord
from searcher.train.metrics import Metric
from searcher.train.trainer import EpochRecord

log = logging.getLogger(__name__)  # to cli.log only (conf/hydra/job_logging): the estimates, to compare with the real end


def search_console() -> Console:
    """The console a search prints to. Without a terminal (a pipe, a file, a job's log) lines are not wrapped at 80
    columns, so each finished trial stays one line a script can read; a terminal and a notebook wrap as usual."""
    console = Console()
    return console if console.is_terminal or console.is_jupyter else Console(soft_wrap=True)


LEGEND = (
    "legend: score = best 3-epoch mean of validation accuracy · at 7/17 = best epoch 7 of 17 trained · "
    "stable/overfitting/unstable/capped/pruned = why it stopped · w16 d2 = width 16, depth 2 · d3 +w32 = a third layer, 32 wide · "
    "r1 = a candidate's extra seed 1 (its comparison needed more evidence)"
)


def legend(metric: Metric) -> str:
    """The legend for a search of `metric`: a score other than accuracy says what it is made of."""
    if metric.name == "accuracy":
        return LEGEND
    units = ", in the target's units" if metric.task == "regression" and not metric.score_words.endswith(metric.label) else ""
    shown = f"val_{metric.short} = the score as the validation {metric.label} itself{units}"  # (what the trial lines show)
    return LEGEND.replace("validation accuracy", f"validation {metric.score_words} (higher is better)").replace(" · at 7/17", f" · {shown} · at 7/17")


def final_words(metrics: dict[str, float], metric: Metric) -> str:
    """The final stage's numbers: "best-epoch val_acc 0.9712 ± 0.0021 · test_acc 0.9688 ± 0.0030" (the metric's own units)."""
    short, nan = metric.short, math.nan
    return (
        f"best-epoch val_{short} {metrics.get(f'val_{short}_mean', nan):.4f} ± {metrics.get(f'val_{short}_std', nan):.4f} · "
        f"test_{short} {metrics.get(f'test_{short}', nan):.4f} ± {metrics.get(f'test_{short}_std', nan):.4f}"
    )


class RichProgress:
    """A live status line (where the search is, overall and in each running trial); one printed line per finished trial.

    Finished-trial lines put the fixed-width columns first and the trial's name last, so long
    regularization names cannot push the columns out of line; a legend says once what they mean.
    How long is left is a range from the plan's caps and the trials' measured pace (report/eta.py):
    the chain stages end when the evidence says so, and the line does not pretend otherwise. Several
    trials at once get a line each under it; trials in threads report their epochs from their own
    threads (hence the lock), trials in other processes show no epochs.
    """

    def __init__(self, console: Console):
        self.console = console
        self.status = console.status("starting")
        self.started = time.monotonic()
        self.best = -math.inf
        self.trials = 0  # finished in the whole search (reused ones too)
        self.stage_name = ""
        self.stage_trials = 0
        self.stage_expected: int | None = None  # trials this stage trains, where that is fixed
        self.running: dict[str, tuple[str, str]] = {}  # trial key -> (label, where it is), in the order they started
        self.lock = threading.Lock()
        self.plan: SearchPlan | None = None
        self.position: Position | None = None  # the running stage, for the estimate of what is left
        self.carried: set[str] = set()  # the previous stage's winner: the running stage may train more of its seeds
        self.carried_from = ""  # ...and that stage's name
        self.stages_seen: list[str] = []
        self.paced_since: float | None = None  # when the first trial this process trains started
        self.paced_units = 0  # width units of the trials this process finished (report/eta.py)
        self.paced_until = 0.0  # when the last of them finished
        self.finish: tuple[float, float] | None = None  # (earliest, latest) end of the search, monotonic seconds

    def __enter__(self) -> RichProgress:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def phase(self, what: str) -> None:
        """What the search does before its first stage (opening its studies, starting its trial threads or workers)."""
        self.status.update(f"starting: {what}")

    def stage(self, stage: Stage) -> None:
        if not self.stages_seen:
            self.console.print(f"[dim]{legend(stage.plan.metric)}[/dim]", highlight=False)
        plan = stage.plan
        count = 6 if plan.transfer is not None else 5  # stages 0-4, and 5 (transfer) when it is on
        self.stage_name = f"stage {stage.index} {stage.name} ({stage.index + 1} of {count})"
        self.stage_trials = 0
        self.stage_expected = {"regularization": plan.regularization_trials, "final": plan.final_seeds}.get(stage.name)
        self.carried = {outcome.request.candidate for outcome in stage.inherited}
        self.carried_from = self.stages_seen[-1] if self.stages_seen else ""
        self.stages_seen.append(stage.name)
        self.plan, self.position = plan, Position(stage.index, start_widths(stage, self.position), 0)
        self.console.rule(f"[bold]stage {stage.index} {stage.name}")
        with self.lock:
            self.show()

    def stage_ended(self, result: StageResult, outcomes: list[TrialOutcome]) -> None:
        """A stage that trained none of its own candidates (skipped by search.budget, or its decision known without
        them) says why."""
        if result.decisions and all(outcome.request.candidate in self.carried for outcome in outcomes):
            self.console.print(f"  [dim]{escape(result.decisions[-1].reason)}[/dim]", highlight=False)

    def label(self, request: TrialRequest) -> str:
        """The trial's name; a seed of the previous stage's winner says so (this stage compares its candidates with it)."""
        if request.candidate not in self.carried:
            return request.label
        winner = "baseline" if self.carried_from == "baseline" else f"{self.carried_from} winner"
        return f"{request.label} (the {winner}'s extra seed, for the comparison)"

    def overall(self) -> str:
        """Where the whole search is: stage, trials finished, time so far, and how long is left."""
        now = time.monotonic()
        parts = [self.stage_name, f"{self.trials} trial{'' if self.trials == 1 else 's'}", f"{clock(now - self.started)} elapsed"]
        if self.stage_expected:
            parts.append(f"trial {min(self.stage_trials + 1, self.stage_expected)}/{self.stage_expected}")
        if self.finish is not None:
            parts.append(span(self.finish[0] - now, self.finish[1] - now))
        elif self.stage_name:
            parts.append("time left: known once the first trial is timed")
        return " · ".join(parts)

    def trial(self, request: TrialRequest, speculative: bool = False) -> None:
        with self.lock:
            if self.paced_since is None:
                self.paced_since = time.monotonic()
            self.running[request.key] = (self.label(request) + (" (guess)" if speculative else ""), "training")
            self.show()

    def epoch(self, request: TrialRequest, record: EpochRecord) -> None:
        with self.lock:
            if request.key in self.running:
                self.running[request.key] = (self.running[request.key][0], f"epoch {record.epoch} val_{request.metric.short} {request.metric.format(record.val_acc)}")
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

    def estimate(self, outcome: TrialOutcome, reused: bool) -> None:
        """After a trial: the stage's done work, the pace of this process's trials, and the range of the search's end."""
        now, cost = time.monotonic(), units(outcome.request.arch.widths)
        if self.position is not None and self.stages_seen and outcome.request.stage == self.stages_seen[-1]:  # (not an ended stage's guess)
            self.position = replace(self.position, done=self.position.done + cost)
        if not reused and self.paced_since is not None:
            self.paced_units += cost
            self.paced_until = now
        if self.plan is None or self.position is None or not self.paced_units:
            return
        pace = (self.paced_until - self.paced_since) / self.paced_units if self.paced_since is not None else 0.0
        low, high = seconds_left(self.plan, self.position, pace)
        self.finish = (now + low, now + high)
        log.info("after %d trials (%s, stage %d): %.1f-%.1f s left at %.4f s per width unit", self.trials, outcome.request.label, self.position.stage, low, high, pace)

    def trial_done(self, outcome: TrialOutcome, reused: bool = False, speculative: bool = False) -> None:
        result = outcome.result
        with self.lock:
            self.running.pop(outcome.request.key, None)
            self.trials += 1
            self.stage_trials += 1
            if outcome.status == "ok" and result is not None:
                self.best = max(self.best, outcome.score)  # the best score so far: the number the decisions compare
            self.estimate(outcome, reused)
            self.show()
        metric = outcome.request.metric  # (another metric than accuracy: its value in the target's units, as the user reads it)
        shown = metric.format(result_score(result)) if result else ""
        # (an error's 4 digits vary in width, "6.2" to "17.31": padded, so the labels start in one column)
        measure = f"score {shown}" if metric.name == "accuracy" else f"val_{metric.short} {shown:<7}"
        detail = (
            f"{measure} at {result.best_epoch:>2}/{len(result.history):<2} {result.behavior:<11} {result.train_seconds:5.1f}s"
            if result
            else ""
        )
        note = f" [red]{escape(outcome.error)}[/red]" if outcome.error else ""
        note += " [dim](reused from an earlier attempt)[/dim]" if reused else ""
        if speculative and self.stages_seen and outcome.request.stage != self.stages_seen[-1]:  # finished after its stage ended
            note += f" [dim](a guess of the {outcome.request.stage} stage, which has ended: not used)[/dim]"
        elif speculative:
            note += " [dim](speculative: used if the search asks for it)[/dim]"
        self.console.print(f"  {outcome.status:<7} {detail:<{42 if metric.name == 'accuracy' else 48}} {escape(self.label(outcome.request))}{note}", highlight=False)


def start_widths(stage: Stage, before: Position | None) -> tuple[int, ...]:
    """The layer widths of the network a stage starts from: the previous stage's winner, the baseline's own for stage
    0, the last one known for a stage that keeps no winner of its own (transfer)."""
    start = getattr(stage, "start", None)  # (width, depth, regularization and final keep the previous stage's result)
    if isinstance(start, StageResult):
        return start.winner.arch.widths
    if before is not None:
        return before.widths
    return (stage.plan.baseline_width,) * stage.plan.baseline_depth


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


def print_summary(console: Console, result: SearchResult, ui_command: str, view_url: str, model_uri: str | None, inputs: str = "uint8 images in, logits out") -> None:
    console.print(summary_table(result))
    metric = result.final.winner_outcomes[0].request.metric
    console.print(f"[bold]final[/bold]: {final_words(result.final.metrics, metric)} · {len(result.outcomes)} trials · {result.seconds:.1f}s")
    print_links(console, ui_command, view_url, model_uri, inputs)


def print_links(console: Console, ui_command: str, view_url: str, model_uri: str | None, inputs: str = "uint8 images in, logits out") -> None:
    """Where to look next, the same after a search and after a finished search's re-run: the MLflow UI command, the
    search's stage-by-stage view and the final model's URI (`inputs`: what it takes and gives, report/content.py
    model_words, e.g. "float32 one-hot sequences (N, 24, 9) in, logits out"). Commands and URLs are not wrapped, so
    they stay copyable."""
    console.print(f"MLflow UI:  {ui_command}", soft_wrap=True, highlight=False)
    console.print(f"then open:  {view_url}", soft_wrap=True, highlight=False)
    if model_uri:
        console.print(f"model:      {model_uri}  (searcher.load_model: {inputs})", highlight=False, soft_wrap=True)


def print_stored_summary(
    console: Console, search: SearchRecord, ui_command: str, view_url: str, model_uri: str | None, inputs: str = "uint8 images in, logits out"
) -> None:
    """A finished search re-run: its summary from the store, nothing trained."""
    console.print(f"search [bold]{search.name}[/bold] is already complete: nothing to train. Its recorded summary:")
    table = Table(title="searcher: staged search summary (from the tracking store)")
    for column in ("stage", "winner", "score", "decision"):
        table.add_column(column)
    for stage in search.stages:
        decision = stage.decisions[-1]["reason"] if stage.decisions else ""
        table.add_row(stage.stage, stage.winner, f"{stage.score:.4f}", decision)
    console.print(table)
    console.print(f"[bold]final[/bold]: {final_words(search.metrics, search.metric)}")
    print_links(console, ui_command, view_url, model_uri, inputs)
