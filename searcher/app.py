"""The lifecycle of one search: open its data and stores, hold its lease, start or resume it, run it, record what it
found, report. Each package builds its own part from its config section (search/setup.py the plan,
execution/setup.py the runners, tracking/setup.py the stores' locations and the recorded settings); this module only
calls them in order and decides how the command ends.

Longer than the ~300 lines a module is held to: the lifecycle is one story with six ways to end (done, already
done, bad input or a held lease, a failed search, a signal or scheduler, a lost store), each handled where it
arises; every step is a function of its own, and nothing that is not the lifecycle stays here.

Exit codes (docs/design.md §4): 0 done, 2 bad configuration or input (nothing
trained, no run left RUNNING), 75 a store stopped working mid-search (what finished
is recorded; re-running the same command resumes), 130/143 interrupted (open runs
marked KILLED).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console

from searcher.clock import SearchClock
from searcher.config import SECONDS, ConfigError, SearcherConfig, data_dir
from searcher.data import DatasetError, DeviceData, ImageDataset, load_dataset
from searcher.execution import Runner, interrupts
from searcher.execution.interrupts import Interrupted
from searcher.execution.setup import (
    check_device,
    dataset_options,
    describe_execution,
    make_runner,
    start_workers,
    with_auto_execution,
)
from searcher.execution.threads import torch_threads, trial_threads
from searcher.report.errors import print_error
from searcher.search.plan import SearchPlan
from searcher.search.setup import check_family, make_plan, model_family, search_metric, with_auto_training
from searcher.tracking.setup import (
    default_name,
    lost_store,
    optuna_storage,
    report_missing,
    search_settings,
    shown_config,
    ui_command,
)
from searcher.train.trainer import resolve_device
from searcher.uris import redact, unreachable_database, unwritable_store

if TYPE_CHECKING:
    from searcher.execution.processes import ProcessBackend
    from searcher.search import SearchResult
    from searcher.tracking.history import Run  # (MLflow's run: only tracking imports mlflow)
    from searcher.tracking.lease import Lease
    from searcher.tracking.recorder import Recorder


EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# sysexits.h's EX_TEMPFAIL, "a temporary failure: the user is invited to retry": a store stopped working mid-search,
# nothing is wrong with the command, and the same command resumes once the store is back (not 2: training happened).
EXIT_STORE_LOST = 75


@dataclass(frozen=True)
class Chosen:
    """What this search's `auto` settings became, said in its first lines."""

    training: str  # e.g. "training: batch 256, lr 0.2 (auto for cuda: 157 steps/epoch)"
    execution: str | None  # e.g. "execution: auto → 2 trial threads (cpu, 2 cores, ...)"; None when execution was set


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    search_name: str | None = None
    search_run_id: str | None = None
    test_acc: float | None = None
    result: SearchResult | None = field(default=None, repr=False, compare=False)  # for in-process callers (benchmarks)
    model_uri: str | None = None
    error: str | None = None  # why a search did not start or did not finish

    def story(self) -> str:
        """One line for the run's log (cli.log): how the command ended."""
        why = f": {self.error}" if self.error else ""
        if self.search_name is None:
            return f"no search started (exit {self.exit_code}){why}"
        if self.exit_code != EXIT_OK:
            return f"search {self.search_name} ended with exit {self.exit_code}{why}"
        found = f": test_acc {self.test_acc:.4f}" if self.test_acc is not None else ""
        metrics = self.result.final.metrics if self.result else {}
        shown = [k for k in metrics if k.startswith("test_") and k != "test_acc" and not k.endswith("_std")]  # another metric's, in its units
        if shown:
            found = f": {shown[0]} {metrics[shown[0]]:.4g}"
        return f"search {self.search_name} done (exit 0){found}" + (f"; model {self.model_uri}" if self.model_uri else "")


@dataclass
class Opened:
    """What a search has open once its data and stores are: what each step of its lifecycle works with."""

    config: SearcherConfig  # its `auto` settings made concrete
    dataset: ImageDataset
    target: ImageDataset | None  # the transfer stage's (None when stage 5 is off)
    recorder: Recorder
    storage: str  # the Optuna storage URL
    workers: ProcessBackend | None  # execution=processes: started while the store opened
    output_dir: Path | None
    console: Console
    tags: dict[str, str] | None  # for the search run (a multirun job says which one it is)
    chosen: Chosen | None = None
    started: float = field(default_factory=time.monotonic)  # when the command started (search.budget counts from it)
    runners: list[Runner] = field(default_factory=list)  # what the search's end closes


@dataclass(frozen=True)
class Finished:
    """A search that ran to its end and is recorded."""

    result: SearchResult
    model_uri: str | None


log = logging.getLogger(__name__)  # to cli.log only (conf/hydra/job_logging): where a slow start spent its time


@contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log.info("%s: %.1f s", what, time.perf_counter() - started)


def load_target(config: SearcherConfig, dataset: ImageDataset) -> ImageDataset | None:
    """The transfer stage's target dataset (None when stage 5 is off); checked before anything trains."""
    if not config.search.transfer.enabled or config.search.transfer.dataset is None:
        return None
    target = load_dataset(dataset_options(config.search.transfer.dataset, data_dir(config)))
    if target.channels != dataset.channels:
        raise ConfigError(
            f"search.transfer.dataset ({target.name}) has {target.channels}-channel images but the searched dataset "
            f"({dataset.name}) has {dataset.channels}; pick a target with {dataset.channels} channel(s)."
        )
    return target


def run(
    config: SearcherConfig,
    dataset_chosen: bool,
    output_dir: Path | None = None,
    console: Console | None = None,
    tags: dict[str, str] | None = None,
    started: float | None = None,
) -> Outcome:
    """One search. `tags` go on the search run (a multirun job says which one it is). `started`: when the command
    started, a time.monotonic() reading (default: now); a wall-time search.budget counts from it."""
    started = time.monotonic() if started is None else started
    console = console or Console()
    if not dataset_chosen:
        console.print("No dataset chosen: searching on the built-in [bold]digits[/bold] (scikit-learn, offline). Pick one with +dataset=NAME.")
    workers = None
    try:
        check_device(config.device)
        from searcher.tracking import import_in_background

        importing = import_in_background()  # MLflow's store modules load while the data does
        try:
            with timed("dataset loaded"):  # (no status line here: a download shows its own progress bar)
                dataset = load_dataset(dataset_options(config.dataset, data_dir(config)))
                target = load_target(config, dataset)
        finally:
            waited = time.perf_counter()
            with console.status("starting: importing MLflow"):  # seconds on a busy machine: the user sees why
                importing.join()
        log.info("MLflow imported (beside the data), waited: %.1f s", time.perf_counter() - waited)
        check_family(model_family(config), config, dataset.input_shape)  # e.g. the cnn on a table: refused before anything opens
        search_metric(config, dataset)  # e.g. search.metric=accuracy on a regression table: refused as early
        with console.status("starting: checking the stores") as starting:
            storage = optuna_storage(config)
            if error := unreachable_database("tracking.optuna_storage", storage) or unwritable_store("tracking.optuna_storage", storage):
                raise ConfigError(error)
            config, training = with_auto_training(config, len(dataset.train))
            starting.update(f"starting: choosing where trials run (execution={config.execution.kind})")
            with timed(f"execution chosen ({config.execution.kind})"):
                config, execution_note = with_auto_execution(config, dataset)
            workers = start_workers(config, dataset)  # they import and load the data while the store opens
            starting.update(f"starting: opening the tracking store {redact(config.tracking.uri)}")
            recorder = open_tracking_store(config)
    except (ConfigError, DatasetError) as error:
        if workers is not None:
            workers.close()
        print_error(console, str(error))
        return Outcome(EXIT_BAD_INPUT, error=str(error))
    try:
        chosen = Chosen(training.describe(), execution_note)
        return search(Opened(config, dataset, target, recorder, storage, workers, output_dir, console, tags, chosen, started=started))
    finally:
        if workers is not None:
            workers.close()


def open_tracking_store(config: SearcherConfig) -> Recorder:
    """The Recorder on `tracking.uri`; a store that cannot be used is a bad setting (exit 2)."""
    from searcher.tracking import TrackingError, open_recorder

    try:
        with timed("tracking store open"):
            return open_recorder(config.tracking.uri, config.tracking.experiment)
    except TrackingError as error:
        raise ConfigError(str(error)) from None


def search(s: Opened) -> Outcome:
    """The search, held by its lease (tracking/lease.py) from before it reads its runs until it ends:
    a second process on the same name exits 2 naming the owner; a dead owner's search is taken over."""
    from searcher.tracking.lease import LeaseError, LeaseTaken, acquire

    name = s.config.search.name or default_name(s.config, search_settings(s.config))
    try:
        lease = acquire(s.storage, name, s.config.tracking.lease_seconds)
    except (LeaseTaken, LeaseError) as error:
        print_error(s.console, str(error))
        return Outcome(EXIT_BAD_INPUT, name, error=str(error))
    try:
        if lease.previous is not None:
            s.console.print(f"search {name} was held by {lease.previous.owner.describe()}; {lease.previous.why}: taken over", highlight=False, soft_wrap=True)
        s.recorder.owner = lease.owner.tag()
        return owned_search(s, name, lease)
    finally:
        lease.release()


def owned_search(s: Opened, name: str, lease: Lease) -> Outcome:
    """The search itself, once its data and stores are open and its lease is held: new, resumed, or already complete."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = make_plan(s.config, s.dataset, s.target)
    device = resolve_device(s.config.device)
    announce(s, name, plan, device)
    ended = open_or_resume(s, name, lease, device)
    if ended is not None:
        return ended
    finished = run_and_record(s, name, lease, plan, device)
    if isinstance(finished, Outcome):
        return finished
    return report(s, name, finished)


def announce(s: Opened, name: str, plan: SearchPlan, device: torch.device) -> None:
    """The search's first lines: what it searches, how it compares candidates, what its `auto` settings became."""
    from searcher.search.evidence import validation_note

    dataset = s.dataset
    task = f"{dataset.num_classes} classes" if dataset.task == "classification" else f"regression, {plan.metric.label} (target std {plan.metric.scale:.4g})"
    s.console.print(
        f"search [bold]{name}[/bold] on {dataset.name} ({len(dataset.train)} train / {len(dataset.val)} val {plan.unit}s, "
        f"{task}, {dataset.describe_input()}) · "
        f"model {plan.family.label} · preset {s.config.search.preset} · "
        f"device {device} · tracking {redact(s.config.tracking.uri)}"
    )
    pool = len(dataset.train) + len(dataset.val)
    note = validation_note(round(pool / plan.folds) if plan.folds > 1 else len(dataset.val), plan.significance, plan.repeats, plan.max_repeats, plan.folds, pool, plan.unit, plan.metric)
    s.console.print(note, highlight=False)
    if s.config.search.warm_start and not plan.warm_start:
        s.console.print(f"search.warm_start=true is ignored: {plan.family.label} cannot grow a network's weights (no grow()); every candidate trains from scratch", highlight=False)
    for line in (s.chosen.training, s.chosen.execution) if s.chosen else ():
        if line:
            s.console.print(line, highlight=False)
    if plan.budget is not None:
        what = "wall time, the whole command" if plan.budget.unit == SECONDS else "epochs summed over every trial"
        s.console.print(
            f"budget: {plan.budget.describe()} ({what}): a stage stops where its next trials and the final retraining would not fit; "
            "the final stage always runs",
            highlight=False,
            soft_wrap=True,
        )


def open_or_resume(s: Opened, name: str, lease: Lease, device: torch.device) -> Outcome | None:
    """Starts the search run, or reopens the one of an earlier process on the same name and settings; an Outcome
    when there is nothing to run (other settings under that name, or the search already finished)."""
    from searcher.tracking.history import differing_settings, load_prior
    from searcher.tracking.queries import find_search

    settings = search_settings(s.config)
    recorder = s.recorder
    earlier = find_search(recorder.client, [recorder.experiment_id], name)
    if earlier is None:
        from searcher.tracking.schema import Tags

        run_tags = {Tags.DATASET: s.dataset.name, Tags.PRESET: s.config.search.preset, Tags.DEVICE: str(device)}
        recorder.start_search(name, params=settings, tags=run_tags | (s.tags or {}))
        return None
    differences = differing_settings(earlier.data.params, settings)
    if differences:
        message = (
            f"search.name={name} already exists in {redact(s.config.tracking.uri)} with other settings: "
            f"{'; '.join(differences)}. Re-run with the same settings to resume it, or choose a new search.name."
        )
        print_error(s.console, message)
        return Outcome(EXIT_BAD_INPUT, name, error=message)
    prior = load_prior(recorder.client, recorder.experiment_id, earlier, lease)
    if prior.finished:
        return already_finished(s, name, earlier)
    s.console.print(
        f"resuming search {name}: {len(prior.completed)} completed trials are reused, "
        f"{prior.orphans} run{'s' if prior.orphans != 1 else ''} left RUNNING by a dead owner marked FAILED"
    )
    recorder.attach_search(prior)
    if s.tags:
        recorder.tag_search(s.tags)  # the job resuming it now (a requeued or re-launched multirun job)
    return None


def already_finished(s: Opened, name: str, earlier: Run) -> Outcome:
    """A search that an earlier process finished: its summary again, and its report if that was never completed."""
    from searcher.report.terminal import print_stored_summary
    from searcher.tracking.reader import read_search
    from searcher.tracking.schema import Metrics

    stored = read_search(s.recorder.client, earlier.info.run_id)
    model_uri = stored.model.uri if stored.model else None
    view = s.recorder.stage_view_url_of(name, "http://127.0.0.1:5000")
    print_stored_summary(s.console, stored, ui_command(s.config.tracking.uri), view, model_uri, model_inputs(s.dataset))
    if Metrics.REPORT_SECONDS in earlier.data.metrics:  # (logged last: the whole report is there)
        report_html = redact(f"{earlier.info.artifact_uri}/report.html")
        s.console.print(f"report:     {report_html} (recorded with the search)", highlight=False, soft_wrap=True)
    test_acc = earlier.data.metrics.get("test_acc")
    if report_missing(s.config, earlier):
        s.console.print(f"the report of search {name} is missing (its building was stopped): rebuilding it", highlight=False)
        if stopped := publish_report(s.console, s.config, name, earlier.info.run_id, s.output_dir):
            return Outcome(stopped, name, earlier.info.run_id, test_acc, model_uri=model_uri, error="interrupted while reporting")
    return Outcome(EXIT_OK, name, earlier.info.run_id, test_acc, model_uri=model_uri)


def run_and_record(s: Opened, name: str, lease: Lease, plan: SearchPlan, device: torch.device) -> Finished | Outcome:
    """The search's trials, trained and recorded, and its result with the final model; an Outcome when it stopped
    (a failed search, a signal, a lost lease or store), its open runs closed as each case needs."""
    from searcher.search import SearchFailed

    recorder, console = s.recorder, s.console
    interrupts.install()
    try:
        return train_and_record(s, name, plan, device)
    except SearchFailed as failure:
        recorder.abort("FAILED")
        console.print(f"[red]search failed:[/red] {failure}", highlight=False)
        return Outcome(EXIT_FAILED, name, recorder.search_run_id, error=str(failure))
    except Interrupted as interrupt:
        if lease.lost.is_set():  # another process took the search over: its runs are that process's now, left alone
            close_trials_left_behind(recorder, lease)  # (but for trials opened after the takeover, which it cannot see)
            console.print(f"[red]stopped:[/red] {lease.lost_message()}", highlight=False, soft_wrap=True)
            return Outcome(EXIT_FAILED, name, recorder.search_run_id, error=lease.lost_message())
        closed = close_runs(recorder)  # (best effort: the store may be why the search was waiting)
        runs = "open runs marked KILLED" if closed else "open runs left RUNNING (the tracking store is failing; a re-run resumes)"
        console.print(f"[yellow]interrupted[/yellow]: {runs}; exit {interrupt.exit_code}")
        return Outcome(interrupt.exit_code, name, recorder.search_run_id, error="interrupted; open runs marked KILLED")
    except SystemExit:
        # A job scheduler's signal handler exits this process (submitit at a SLURM time limit or preemption,
        # after requeueing the job): runs are KILLED, and the requeued job's re-run resumes the search.
        interrupts.ignore_sigterm()  # SLURM's SIGTERM for the requeue must not cut this short
        recorder.abort("KILLED")
        console.print("[yellow]stopped by the job scheduler[/yellow]: open runs marked KILLED; a re-run (or the requeued job) resumes")
        raise
    except Exception as error:
        lost = lost_store(error, s.config, s.storage)
        if lost is None:  # a bug: its traceback is what to report
            recorder.abort("FAILED")
            raise
        if lost.setting != "tracking.uri":
            close_runs(recorder)  # the tracking store still works: the runs end KILLED, as after a signal
        # (a lost tracking store leaves them RUNNING: the re-run marks them as a dead process's and resumes)
        console.print(f"[red]stopped:[/red] {lost.sentence()} (exit {EXIT_STORE_LOST})", highlight=False, soft_wrap=True)
        return Outcome(EXIT_STORE_LOST, name, recorder.search_run_id, error=lost.sentence())
    except BaseException:
        recorder.abort("FAILED")
        raise
    finally:
        interrupts.restore()  # (keeps SIGTERM ignored after ignore_sigterm: the process is on its way out)
        for runner in s.runners:
            runner.close()


def train_and_record(s: Opened, name: str, plan: SearchPlan, device: torch.device) -> Finished:
    """The stages, run by the Runner `execution` asks for (and a serial one for the transfer stage), then recorded."""
    from searcher.report.terminal import RichProgress
    from searcher.search import StudyBook, run_search

    config, recorder = s.config, s.recorder
    recorder.log_artifact_text(shown_config(config), "config.yaml")
    warming_up = None
    # Trials here (serial), and warm starts grown here, compute with the threads a trial gets anywhere: same sums, same decisions.
    threads = trial_threads(str(device), 1, config.execution.threads_per_trial)
    with torch_threads(threads), RichProgress(s.console) as progress:
        progress.phase(f"preparing the trials' execution ({config.execution.kind}) and the stages' Optuna studies")
        runner = make_runner(config, s.dataset, device, recorder, progress, name, s.storage, s.workers, warm_start=plan.warm_start)
        s.runners.append(runner)
        runner.clock = SearchClock(s.started, before=recorder.prior.clock_seconds if recorder.prior else 0.0)
        if config.execution.kind != "serial":
            if not (s.chosen and s.chosen.execution):  # (execution=auto said what it chose in the first lines)
                s.console.print(f"execution: {describe_execution(config, runner)}")
            if config.execution.kind != "threads":  # (threads train in this process: imports would take the GIL from them)
                warming_up = prepare_finish_in_background()  # this process idles while trials train elsewhere
        plan = replace(plan, concurrency=runner.concurrency)
        transfer_runner = None
        if s.target is not None:
            from searcher.execution import serial_runner
            from searcher.execution.work import probe_request

            transfer_runner = serial_runner(DeviceData(s.target, device), recorder, progress, work=probe_request())
        result = run_search(plan, StudyBook(s.storage, name, plan), runner, transfer_runner)
        runner.end_search()
    interrupts.check()  # a stop that waited for the last record comes before the decision log and the model are
    with s.console.status("the search is decided: logging the decision log and the final model to MLflow"):
        return Finished(result, record_result(s, name, result, warming_up))


def record_result(s: Opened, name: str, result: SearchResult, warming_up: threading.Thread | None) -> str | None:
    """The decision log (to the search run and the output folder), the final metrics and the final model; its URI."""
    from searcher.report.decisions import decisions_json, decisions_markdown
    from searcher.tracking.model import final_model
    from searcher.tracking.schema import Tags

    dataset = s.dataset
    files = {"decisions.json": decisions_json(result), "decisions.md": decisions_markdown(result, name)}
    for file_name, text in files.items():
        s.recorder.log_artifact_text(text, file_name)
        if s.output_dir is not None:
            (s.output_dir / file_name).write_text(text)
    model, example = final_model(result, dataset, s.config.dataset.classes)
    family = result.final.winner_outcomes[0].request.family
    if warming_up is not None:
        warming_up.join()
    return s.recorder.finish_search(
        dict(result.final.metrics) | {"search_seconds": result.seconds, "trials": len(result.outcomes)},
        {
            Tags.FINAL_ARCH: result.final.winner.arch.describe(),
            Tags.INPUT: json.dumps(
                {"channels": dataset.channels, "size": dataset.size, "input_shape": dataset.input_shape, "mean": dataset.mean, "std": dataset.std,
                 "classes": dataset.num_classes, "family": family.identity(), "width_unit": family.width_unit}
            ),
            Tags.METRIC: json.dumps(result.final.winner_outcomes[0].request.metric.describe()),
        },
        model,
        example,
        registered_name=registered_name(dataset.name, s.config.dataset.path),
    )


def registered_name(dataset: str, path: str | None) -> str:
    """The registry's name for the final model: `searcher-<dataset>`, and for a file of yours `searcher-<dataset>-<file
    name>` (`searcher-table-customers`), so models of two tables are not versions of one."""
    if path is None:
        return f"searcher-{dataset}"
    stem = Path(str(path).removeprefix("sklearn:")).name.split(".")[0]
    return f"searcher-{dataset}-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)


def report(s: Opened, name: str, finished: Finished) -> Outcome:
    """The summary, then the report; how the command ends."""
    from searcher.report.terminal import print_summary

    result, model_uri, run_id = finished.result, finished.model_uri, s.recorder.search_run_id

    def summary() -> None:
        print_summary(s.console, result, ui_command(s.config.tracking.uri), s.recorder.stage_view_url("http://127.0.0.1:5000"), model_uri, model_inputs(s.dataset))

    stopped = publish_report(s.console, s.config, name, run_id, s.output_dir, first=summary)
    test_acc = result.final.metrics["test_acc"]
    if stopped:
        return Outcome(stopped, name, run_id, test_acc, result, model_uri, "interrupted while reporting")
    return Outcome(EXIT_OK, name, run_id, test_acc, result, model_uri)



def publish_report(
    console: Console,
    config: SearcherConfig,
    name: str,
    search_run_id: str | None,
    output_dir: Path | None,
    first: Callable[[], None] = lambda: None,
) -> int | None:
    """Figures and report.html/.md, built from the tracking store (as `python -m searcher.report` does), after `first`
    (what the finished search prints before it).

    Never fails the finished search; returns the exit code (130/143) when a signal stopped it, with the command that
    rebuilds it (a re-run of the search does too), else None."""
    from searcher.report.build import publish

    out = f" --out {output_dir}" if output_dir is not None else ""
    rebuild = f"python -m searcher.report --search-name {name} --tracking-uri {redact(config.tracking.uri)}{out} --log"
    interrupts.install()  # before `first`: from the search's last line on, a signal stops the report, not the process
    try:
        first()
        if not config.report.enabled:
            return None
        try:
            published = publish(config.tracking.uri, search_run_id, output_dir, trial_plots=config.report.trial_plots)
        except Exception as error:  # the search is recorded; the report can be rebuilt from the store
            console.print(f"[yellow]report failed[/yellow] ({type(error).__name__}: {error}); rebuild it with {rebuild}", highlight=False, soft_wrap=True)
            return None
    except Interrupted as interrupt:
        console.print(
            f"[yellow]report interrupted[/yellow] (exit {interrupt.exit_code}); the search is recorded, rebuild the report with {rebuild} "
            "(or re-run the same command)",
            highlight=False,
            soft_wrap=True,
        )
        return interrupt.exit_code
    finally:
        interrupts.restore()
    console.print(f"report:     {redact(str(published.location))} ({sum(published.seconds.values()):.1f}s)", highlight=False, soft_wrap=True)
    return None


def close_trials_left_behind(recorder: Recorder, lease: Lease) -> None:
    """After a lost lease: the trial runs this process opened once the new owner had looked (best effort)."""
    note = f"opened by {lease.owner.describe()} after another process took the search over; closed by it on its way out, at {time.ctime()}"
    written_unless_the_store_is_lost(lambda: recorder.close_trials_left_behind(note))


def close_runs(recorder: Recorder) -> bool:
    """Mark the open runs KILLED if the tracking store still takes writes (True); when it does not, the re-run marks
    the runs left RUNNING as a dead process's, so nothing is lost by leaving them (False)."""
    return written_unless_the_store_is_lost(lambda: recorder.abort("KILLED"))


def written_unless_the_store_is_lost(write: Callable[[], object]) -> bool:
    """Run a record's last write on the way out: False if the store is gone (nothing more can be done), a bug raises."""
    from searcher.tracking.faults import store_fault

    try:
        write()
    except Exception as error:
        if store_fault(error) is None:
            raise  # a bug
        return False
    return True


def prepare_finish_in_background() -> threading.Thread:
    """Warm up what the end of the search needs (the model's export, the report's imports) in a thread; join it
    before logging the model. Only where trials train in other processes: while it runs, torch.export turns cuDNN and
    oneDNN off for the whole process (torch.backends.cudnn/mkldnn.enabled), so trials in this process's threads would
    compute their convolutions another way, and its imports hold the GIL those threads launch their steps with."""

    def prepare() -> None:
        from searcher.tracking.recorder import warm_up_model_logging

        warm_up_model_logging()
        import searcher.report.build  # noqa: F401  (matplotlib's Agg canvas and the report's modules)

    thread = threading.Thread(target=prepare, name="prepare-finish", daemon=True)
    thread.start()
    return thread


def model_inputs(dataset: ImageDataset) -> str:
    """What the final model takes and gives, in the words the summary prints (the report's reload example says the same)."""
    from searcher.report.content import input_kind, model_words

    return model_words(input_kind(dataset.input_shape, bool(dataset.columns)), dataset.input_shape, dataset.task == "regression")
