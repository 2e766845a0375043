"""Wires one search together: validated config -> data, plan, store -> controller -> record -> summary.

Exit codes (docs/design.md §4): 0 done, 2 bad configuration or input (nothing
trained, no run left RUNNING), 75 a store stopped working mid-search (what finished
is recorded; re-running the same command resumes), 130/143 interrupted (open runs
marked KILLED).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf
from rich.console import Console

from searcher.config import AUTO, ConfigError, DatasetConfig, SearcherConfig, data_dir
from searcher.data import DatasetError, DatasetOptions, DeviceData, ImageDataset, load_dataset
from searcher.execution import Backend, Progress, Runner, TrialRecorder, interrupts
from searcher.execution.interrupts import Interrupted
from searcher.execution.threads import torch_threads, trial_threads
from searcher.model.spec import LayoutPolicy
from searcher.search.evidence import cross_validation_folds
from searcher.search.plan import RegularizerRange, SearchPlan, TransferPlan
from searcher.train.auto import TrainingChoice, choose_training
from searcher.train.stability import StabilityRule
from searcher.train.trainer import TrainSettings, resolve_device
from searcher.uris import redact, unreachable_database, unwritable_store, with_driver

if TYPE_CHECKING:
    from searcher.tracking.lease import Lease

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# sysexits.h's EX_TEMPFAIL, "a temporary failure: the user is invited to retry": a store stopped working mid-search,
# nothing is wrong with the command, and the same command resumes once the store is back (not 2: training happened).
EXIT_STORE_LOST = 75


@dataclass(frozen=True)
class Chosen:
    """What this search's `auto` settings became, said in its first lines."""

    training: str  # e.g. "training: batch 256, lr 0.2 (auto for cuda: 157 steps/epoch)"
    execution: str | None  # e.g. "execution: auto → serial (cpu)"; None when execution was set


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    search_name: str | None = None
    search_run_id: str | None = None
    test_acc: float | None = None
    result: Any = field(default=None, repr=False, compare=False)  # the SearchResult, for in-process callers (benchmarks)
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
        return f"search {self.search_name} done (exit 0){found}" + (f"; model {self.model_uri}" if self.model_uri else "")


def dataset_options(section: DatasetConfig, folder: Path) -> DatasetOptions:
    """DatasetOptions from a dataset config section (the searched one or the transfer target): every shared field."""
    import dataclasses

    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(DatasetOptions) if hasattr(section, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if values.get("path"):
        values["path"] = Path(values["path"]).expanduser()
    return DatasetOptions(**values, data_dir=folder)


def check_device(name: str) -> None:
    """`device` names a device torch can use here, checked before anything is created."""
    if not name.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.split(":", 1)[1]) if ":" in name else 0
    if index >= count:
        found = f"{count} CUDA device(s)" if count else "no CUDA device torch can use"
        raise ConfigError(f"device={name} but this machine has {found}; use device=auto (a GPU when there is one) or device=cpu.")


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


def with_auto_training(config: SearcherConfig, train_images: int) -> tuple[SearcherConfig, TrainingChoice]:
    """`train.batch_size` and `train.lr` made concrete for the device (`auto`: searcher/train/auto.py; set values kept),
    so that trial keys, records and the search's name hold the numbers trials train with."""
    choice = choose_training(resolve_device(config.device).type, train_images, config.train.batch_size, config.train.lr)
    return replace(config, train=replace(config.train, batch_size=choice.batch_size, lr=choice.lr)), choice


def with_auto_execution(config: SearcherConfig, dataset: ImageDataset) -> tuple[SearcherConfig, str | None]:
    """`execution=auto` made concrete, with the line that says what it became (None when execution was set).

    On a CPU it is serial (exactly execution=serial). On CUDA it is worker processes sharing each GPU, as many per
    GPU as fit in the memory one trial of the largest network the search can build was measured to take
    (searcher/execution/sizing.py); serial where that leaves a single worker."""
    e = config.execution
    if e.kind != AUTO:
        return config, None
    device = str(resolve_device(config.device))
    if not device.startswith("cuda"):
        return replace(config, execution=replace(e, kind="serial")), f"execution: auto → serial ({device})"
    from searcher.execution.processes import default_workers
    from searcher.execution.sizing import Probe, share_gpu

    plan = make_plan(config, dataset)
    largest = plan.layout.baseline(plan.depth_cap, plan.width_cap, plan.block)
    share = share_gpu(Probe(device, largest, dataset.channels, dataset.size, dataset.num_classes, plan.train, dataset.nbytes * plan.folds), e.max_trials_per_gpu)
    workers = e.workers or default_workers(device, share.trials_per_gpu, e.threads_per_trial)
    if workers == 1:
        return replace(config, execution=replace(e, kind="serial")), f"execution: auto → serial on {device} (a single worker: {share.trials_per_gpu} per GPU, {share.describe()})"
    chosen = replace(e, kind="processes", workers=workers, trials_per_gpu=share.trials_per_gpu)
    return replace(config, execution=chosen), f"execution: auto → {workers} worker processes on {device} ({share.trials_per_gpu} per GPU, {share.describe()})"


def make_plan(config: SearcherConfig, dataset: ImageDataset, target: ImageDataset | None = None) -> SearchPlan:
    config = with_auto_training(config, len(dataset.train))[0]  # (a no-op once run() has made them concrete)
    s, t, m = config.search, config.train, config.model
    train = TrainSettings(
        optimizer=t.optimizer,  # type: ignore[arg-type]
        lr=t.lr,
        momentum=t.momentum,
        batch_size=t.batch_size,
        plateau_factor=t.plateau_factor,
        plateau_patience=t.plateau_patience,
        stability=StabilityRule(**vars(t.stability)),
        compile=t.compile,
        cuda_graphs=t.cuda_graphs,
        warm_lr_factor=t.warm_lr_factor,
        warm_up_epochs=t.warm_up_epochs,
    )
    layout = LayoutPolicy(
        input_size=dataset.size,
        kernel_policy=m.kernel_policy,  # type: ignore[arg-type]
        large_kernel=m.large_kernel,
        large_layers=m.large_layers,
        min_resolution=m.min_resolution,
    )
    return SearchPlan(
        seed=config.seed,
        data_identity=dataset.identity,
        layout=layout,
        train=train,
        block=m.block,  # type: ignore[arg-type]
        repeats=s.repeats,
        max_repeats=s.max_repeats,
        folds=cross_validation_folds(s.folds, len(dataset.train), len(dataset.val), s.warm_start),
        significance=s.significance,
        width_ties=s.width.ties,
        depth_ties=s.depth.ties,
        depth_select=s.depth.select,
        baseline_depth=s.baseline.depth,
        baseline_width=s.baseline.width,
        width_factor=s.width.factor,
        width_cap=s.width.cap,
        width_tolerance=s.width.tolerance,
        width_patience=s.width.patience,
        depth_cap=s.depth.cap,
        depth_min_improvement=s.depth.min_improvement,
        new_layer_factors=tuple(s.depth.new_layer_factors),
        regularization_min_improvement=s.regularization.min_improvement,
        regularization_trials=s.regularization.trials,
        regularization_in_flight=s.regularization.trials_in_flight,
        regularizers=tuple(RegularizerRange(name, r.low, r.high, r.log) for name, r in s.regularization.space.items()),
        pruner_warmup_epochs=s.regularization.pruner_warmup_epochs,
        final_seeds=s.final.seeds,
        max_consecutive_failures=s.max_consecutive_failures,
        transfer=TransferPlan(target.identity, s.transfer.top_k, s.transfer.longest) if target is not None else None,
        warm_start=s.warm_start,
    )


def optuna_storage(config: SearcherConfig) -> str:
    """The Optuna storage URL, with an absolute path: worker processes and jobs open it too."""
    from searcher.search.studies import absolute_storage

    if config.tracking.optuna_storage:
        return absolute_storage(config.tracking.optuna_storage)
    if config.tracking.uri.startswith("postgresql"):
        # MLflow and Optuna both keep an `alembic_version` table: they cannot share one database.
        raise ConfigError(
            f"tracking.optuna_storage is not set and tracking.uri={redact(config.tracking.uri)} is PostgreSQL: MLflow and Optuna "
            "cannot share one database; create a second one and set tracking.optuna_storage=postgresql://user@host/optuna."
        )
    return absolute_storage(f"sqlite:///{beside_tracking_store(config, 'optuna.db')}")


def beside_tracking_store(config: SearcherConfig, file_name: str) -> Path:
    """A path next to a SQLite tracking database (or in the working directory for a server store)."""
    uri = config.tracking.uri
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path(".")
    return folder / file_name


def checkpoint_dir(config: SearcherConfig, name: str) -> Path:
    return Path(config.tracking.checkpoint_dir or beside_tracking_store(config, "checkpoints")) / name


def search_settings(config: SearcherConfig, flatten: Any) -> dict[str, str]:
    """Every setting as an MLflow param (search.name is the run's name, not a setting); passwords in URIs masked."""
    settings = flatten("", OmegaConf.to_container(OmegaConf.structured(config)))
    return {k: redact(v) if k.startswith("tracking.") else v for k, v in settings.items() if k != "search.name"}


def shown_config(config: SearcherConfig) -> str:
    """The resolved config as YAML for the record, with passwords in URIs masked."""
    tracking = replace(
        config.tracking,
        uri=redact(config.tracking.uri),
        optuna_storage=redact(config.tracking.optuna_storage) if config.tracking.optuna_storage else None,
    )
    return OmegaConf.to_yaml(OmegaConf.structured(replace(config, tracking=tracking)))


def start_workers(config: SearcherConfig, dataset: ImageDataset) -> Any:
    """execution=processes: the worker pool, started as early as possible (None for other executions)."""
    e = config.execution
    if e.kind != "processes":
        return None
    from searcher.execution.processes import ProcessBackend, default_workers
    from searcher.execution.worker import DataSpec

    device = str(resolve_device(config.device))
    workers = e.workers or default_workers(device, e.trials_per_gpu, e.threads_per_trial)
    return ProcessBackend(DataSpec(dataset_options(config.dataset, data_dir(config)), dataset.identity, device), workers, e.threads_per_trial)


def make_runner(
    config: SearcherConfig,
    dataset: ImageDataset,
    device: torch.device,
    recorder: TrialRecorder,
    progress: Progress,
    name: str,
    storage: str,
    workers: Backend | None = None,
) -> Runner:
    """The Runner `execution.kind` asks for; every one records the same way, only where trials train differs."""
    e = config.execution
    checkpoints = checkpoint_dir(config, name)
    if e.kind == "serial":
        from searcher.execution import serial_runner

        return serial_runner(DeviceData(dataset, device), recorder, progress, checkpoints, config.train.checkpoint_seconds)
    from searcher.execution.worker import DataSpec

    backend: Backend
    if e.kind == "processes":
        backend = workers or start_workers(config, dataset)
    else:
        from searcher.execution.submitit import SubmititBackend

        folder = Path(e.folder) if e.folder else beside_tracking_store(config, "submitit") / name
        backend = SubmititBackend(
            DataSpec(dataset_options(config.dataset, data_dir(config)), dataset.identity, config.device),  # resolved on the job's node
            folder.resolve() / "%j",
            e.workers or 4,
            cluster=e.cluster,
            timeout_min=e.timeout_min,
            gpus_per_node=e.gpus_per_node,
            cpus_per_task=e.cpus_per_task,
            mem_gb=e.mem_gb,
            partition=e.partition,
            slurm_additional=dict(e.slurm_additional),
        )
    from searcher.execution.warm import WarmStarts

    warm = WarmStarts(DeviceData(dataset, torch.device("cpu"))) if config.search.warm_start else None  # grown here, trained there
    return Runner(backend, recorder, progress, checkpoints, config.train.checkpoint_seconds, storage, warm, speculates(config, backend.capacity))


def speculates(config: SearcherConfig, slots: int) -> bool:
    """`execution.speculate`, made concrete. auto: guesses where each slot computes on its own (CPU worker processes,
    one trial per GPU, submitit jobs); not where several trials share a GPU, which runs one process's kernels at a
    time (no MPS): a guess there is not free, it takes GPU time from the trials the search asked for (docs/BENCHMARKS.md
    §5: 4 graphed trials on one H200 gave 0.98x one trial's throughput, and a quarter of the slot time went to
    guesses never used)."""
    e = config.execution
    if e.speculate != AUTO:
        return bool(e.speculate)
    device = str(resolve_device(config.device))
    if e.kind != "processes" or not device.startswith("cuda"):
        return True
    gpus = 1 if ":" in device else max(1, torch.cuda.device_count())
    return slots <= gpus


def describe_execution(config: SearcherConfig, runner: Any) -> str:
    if config.execution.kind == "serial":
        return "serial"
    backend = runner.backend
    if config.execution.kind == "processes":
        threads = f"{backend.threads} thread{'s' if backend.threads > 1 else ''} each"
        return f"{backend.capacity} worker processes ({', '.join(sorted(set(backend.devices)))}, {threads})"
    from searcher.execution.submitit import NO_ACCOUNTING

    note = f"; note: {NO_ACCOUNTING}" if backend.without_accounting else ""
    return f"up to {backend.capacity} submitit jobs ({backend.cluster}){note}"


def default_name(config: SearcherConfig, settings: dict[str, str]) -> str:
    """<dataset>-<preset>-seed<N>-<hash of what the search computes>: the same command resumes, other settings start anew."""
    from searcher.tracking.history import NEUTRAL_SETTINGS

    defining = {k: v for k, v in settings.items() if not k.startswith(NEUTRAL_SETTINGS)}
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.dataset.name}-{config.search.preset}-seed{config.seed}-{digest}"


def ui_command(uri: str) -> str:
    return f"python -m searcher.ui --tracking-uri {redact(with_driver(uri))}"


@dataclass(frozen=True)
class LostStore:
    """A store that stopped working mid-search: its setting, its URI (password masked) and its last error."""

    setting: str
    uri: str
    cause: str

    def sentence(self) -> str:
        return (
            f"{self.setting}={self.uri!r} stopped working ({self.cause}), so the search stopped; the trials that finished are "
            "recorded: make the store reachable and writable again, then re-run the same command to resume."
        )


def lost_store(error: BaseException, config: SearcherConfig, storage: str) -> LostStore | None:
    """The store `error` says stopped working (tracking/faults.py), or None when it is not a store's failure (a bug)."""
    from searcher.tracking.faults import TrackingLost, failed_store, store_fault
    from searcher.uris import redact_text

    which = failed_store(error)
    if which is None:
        return None
    if which == "optuna":
        setting = "tracking.optuna_storage" if config.tracking.optuna_storage else "tracking.optuna_storage (default)"
        return LostStore(setting, redact(storage), redact_text(store_fault(error) or "", storage))
    cause = error.cause if isinstance(error, TrackingLost) else store_fault(error) or ""
    return LostStore("tracking.uri", redact(config.tracking.uri), redact_text(cause, config.tracking.uri))


def report_missing(config: SearcherConfig, finished_search: Any) -> bool:
    """A finished search whose report was never completed (its building stopped by a signal or kill -9): the report
    logs its time last, so a search run without it has no whole report."""
    from searcher.tracking.schema import Metrics

    return config.report.enabled and Metrics.REPORT_SECONDS not in finished_search.data.metrics


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


log = logging.getLogger(__name__)  # to cli.log only (conf/hydra/job_logging): where a slow start spent its time


@contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log.info("%s: %.1f s", what, time.perf_counter() - started)


def run(
    config: SearcherConfig,
    dataset_chosen: bool,
    output_dir: Path | None = None,
    console: Console | None = None,
    tags: dict[str, str] | None = None,
) -> Outcome:
    """One search. `tags` go on the search run (a multirun job says which one it is)."""
    console = console or Console()
    if not dataset_chosen:
        console.print("No dataset chosen: searching on the built-in [bold]digits[/bold] (scikit-learn, offline). Pick one with +dataset=NAME.")
    workers = None
    try:
        check_device(config.device)
        from searcher.tracking import import_in_background

        with timed("dataset loaded"):
            importing = import_in_background()  # MLflow's store modules load while the data does
            try:
                dataset = load_dataset(dataset_options(config.dataset, data_dir(config)))
                target = load_target(config, dataset)
            finally:
                importing.join()
        storage = optuna_storage(config)
        if error := unreachable_database("tracking.optuna_storage", storage) or unwritable_store("tracking.optuna_storage", storage):
            raise ConfigError(error)
        config, training = with_auto_training(config, len(dataset.train))
        with timed(f"execution chosen ({config.execution.kind})"):
            config, execution_note = with_auto_execution(config, dataset)
        workers = start_workers(config, dataset)  # they import and load the data while the store opens
        from searcher.tracking import TrackingError, open_recorder

        try:
            with timed("tracking store open"):
                recorder = open_recorder(config.tracking.uri, config.tracking.experiment)
        except TrackingError as error:
            raise ConfigError(str(error)) from None
    except (ConfigError, DatasetError) as error:
        if workers is not None:
            workers.close()
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return Outcome(EXIT_BAD_INPUT, error=str(error))
    try:
        chosen = Chosen(training.describe(), execution_note)
        return search(config, dataset, target, recorder, storage, workers, output_dir, console, tags, chosen)
    finally:
        if workers is not None:
            workers.close()


def search(
    config: SearcherConfig,
    dataset: ImageDataset,
    target: ImageDataset | None,
    recorder: Any,
    storage: str,
    workers: Any,
    output_dir: Path | None,
    console: Console,
    tags: dict[str, str] | None,
    chosen: Chosen | None = None,
) -> Outcome:
    """The search, held by its lease (tracking/lease.py) from before it reads its runs until it ends:
    a second process on the same name exits 2 naming the owner; a dead owner's search is taken over."""
    from searcher.tracking.lease import LeaseError, LeaseTaken, acquire
    from searcher.tracking.recorder import flatten

    name = config.search.name or default_name(config, search_settings(config, flatten))
    try:
        lease = acquire(storage, name, config.tracking.lease_seconds)
    except (LeaseTaken, LeaseError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        return Outcome(EXIT_BAD_INPUT, name, error=str(error))
    try:
        if lease.previous is not None:
            console.print(f"search {name} was held by {lease.previous.owner.describe()}; {lease.previous.why}: taken over", highlight=False, soft_wrap=True)
        recorder.owner = lease.owner.tag()
        return owned_search(config, dataset, target, recorder, storage, workers, output_dir, console, tags, chosen, name, lease)
    finally:
        lease.release()


def owned_search(
    config: SearcherConfig,
    dataset: ImageDataset,
    target: ImageDataset | None,
    recorder: Any,
    storage: str,
    workers: Any,
    output_dir: Path | None,
    console: Console,
    tags: dict[str, str] | None,
    chosen: Chosen | None,
    name: str,
    lease: Lease,
) -> Outcome:
    """The search itself, once its data and stores are open and its lease is held: new, resumed, or already complete."""
    import optuna

    from searcher.report.decisions import decisions_json, decisions_markdown
    from searcher.report.terminal import RichProgress, print_summary
    from searcher.search import SearchFailed, StudyBook, run_search
    from searcher.tracking.recorder import flatten

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = search_settings(config, flatten)
    plan = make_plan(config, dataset, target)
    device = resolve_device(config.device)
    console.print(
        f"search [bold]{name}[/bold] on {dataset.name} ({len(dataset.train)} train / {len(dataset.val)} val images, "
        f"{dataset.num_classes} classes, {dataset.channels}x{dataset.size}x{dataset.size}) · preset {config.search.preset} · "
        f"device {device} · tracking {redact(config.tracking.uri)}"
    )
    from searcher.search.evidence import validation_note

    pool = len(dataset.train) + len(dataset.val)
    note = validation_note(round(pool / plan.folds) if plan.folds > 1 else len(dataset.val), plan.significance, plan.repeats, plan.max_repeats, plan.folds, pool)
    console.print(note, highlight=False)
    for line in (chosen.training, chosen.execution) if chosen else ():
        if line:
            console.print(line, highlight=False)
    from searcher.tracking.history import differing_settings, load_prior
    from searcher.tracking.queries import find_search

    earlier = find_search(recorder.client, [recorder.experiment_id], name)
    if earlier is not None:
        differences = differing_settings(earlier.data.params, settings)
        if differences:
            message = (
                f"search.name={name} already exists in {redact(config.tracking.uri)} with other settings: "
                f"{'; '.join(differences)}. Re-run with the same settings to resume it, or choose a new search.name."
            )
            console.print(f"[red]error:[/red] {message}", highlight=False)
            return Outcome(EXIT_BAD_INPUT, name, error=message)
        prior = load_prior(recorder.client, recorder.experiment_id, earlier, lease)
        if prior.finished:
            from searcher.report.terminal import print_stored_summary
            from searcher.tracking.reader import read_search

            stored = read_search(recorder.client, earlier.info.run_id)
            print_stored_summary(console, stored, ui_command(config.tracking.uri), recorder.runs_url("http://127.0.0.1:5000"))
            test_acc = earlier.data.metrics.get("test_acc")
            if report_missing(config, earlier):
                console.print(f"the report of search {name} is missing (its building was stopped): rebuilding it", highlight=False)
                if stopped := publish_report(console, config, name, earlier.info.run_id, output_dir):
                    return Outcome(stopped, name, earlier.info.run_id, test_acc, error="interrupted while reporting")
            return Outcome(EXIT_OK, name, earlier.info.run_id, test_acc)
        console.print(
            f"resuming search {name}: {len(prior.completed)} completed trials are reused, "
            f"{prior.orphans} runs left RUNNING by a dead owner marked FAILED"
        )
        recorder.attach_search(prior)
        if tags:
            recorder.tag_search(tags)  # the job resuming it now (a requeued or re-launched multirun job)
    else:
        from searcher.tracking.schema import Tags

        run_tags = {Tags.DATASET: dataset.name, Tags.PRESET: config.search.preset, Tags.DEVICE: str(device)}
        recorder.start_search(name, params=settings, tags=run_tags | (tags or {}))
    interrupts.install()
    runner = warming_up = None
    try:
        recorder.log_artifact_text(shown_config(config), "config.yaml")
        # Trials here (serial), and warm starts grown here, compute with the threads a trial gets anywhere: same sums, same decisions.
        threads = trial_threads(str(device), 1, config.execution.threads_per_trial)
        with torch_threads(threads), RichProgress(console) as progress:
            runner = make_runner(config, dataset, device, recorder, progress, name, storage, workers)
            if config.execution.kind != "serial":
                if not (chosen and chosen.execution):  # (execution=auto said what it chose in the first lines)
                    console.print(f"execution: {describe_execution(config, runner)}")
                warming_up = prepare_finish_in_background()  # this process idles while trials train elsewhere
            plan = replace(plan, concurrency=runner.concurrency)
            transfer_runner = None
            if target is not None:
                from searcher.execution import serial_runner
                from searcher.execution.work import probe_request

                transfer_runner = serial_runner(DeviceData(target, device), recorder, progress, work=probe_request())
            result = run_search(plan, StudyBook(storage, name, plan), runner, transfer_runner)
            runner.end_search()
        files = {"decisions.json": decisions_json(result), "decisions.md": decisions_markdown(result, name)}
        for file_name, text in files.items():
            recorder.log_artifact_text(text, file_name)
            if output_dir is not None:
                (output_dir / file_name).write_text(text)
        model, example = final_model(result, dataset, config.dataset.classes)
        if warming_up is not None:
            warming_up.join()
        model_uri = recorder.finish_search(
            dict(result.final.metrics) | {"search_seconds": result.seconds, "trials": len(result.outcomes)},
            {
                "searcher.final_arch": result.final.winner.arch.describe(),
                "searcher.input": json.dumps(
                    {"channels": dataset.channels, "size": dataset.size, "mean": dataset.mean, "std": dataset.std, "classes": dataset.num_classes}
                ),
            },
            model,
            example,
            registered_name=f"searcher-{dataset.name}",
        )
    except SearchFailed as failure:
        recorder.abort("FAILED")
        console.print(f"[red]search failed:[/red] {failure}", highlight=False)
        return Outcome(EXIT_FAILED, name, recorder.search_run_id, error=str(failure))
    except Interrupted as interrupt:
        if lease.lost.is_set():  # another process took the search over: its runs are that process's now, left alone
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
        lost = lost_store(error, config, storage)
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
        if runner is not None:
            runner.close()

    def summary() -> None:
        print_summary(console, result, ui_command(config.tracking.uri), recorder.stage_view_url("http://127.0.0.1:5000"))
        console.print(f"model:      {model_uri}  (searcher.load_model: uint8 images in, logits out)", highlight=False, soft_wrap=True)

    if stopped := publish_report(console, config, name, recorder.search_run_id, output_dir, first=summary):
        return Outcome(stopped, name, recorder.search_run_id, result.final.metrics["test_acc"], result, model_uri, "interrupted while reporting")
    return Outcome(EXIT_OK, name, recorder.search_run_id, result.final.metrics["test_acc"], result, model_uri)


def close_runs(recorder: Any) -> bool:
    """Mark the open runs KILLED if the tracking store still takes writes (True); when it does not, the re-run marks
    the runs left RUNNING as a dead process's, so nothing is lost by leaving them (False)."""
    try:
        recorder.abort("KILLED")
    except Exception as error:
        from searcher.tracking.faults import store_fault

        if store_fault(error) is None:
            raise  # a bug
        return False
    return True


def prepare_finish_in_background() -> threading.Thread:
    """Warm up what the end of the search needs (the model's export, the report's imports) in a thread;
    join it before logging the model."""

    def prepare() -> None:
        from searcher.tracking.recorder import warm_up_model_logging

        warm_up_model_logging()
        import searcher.report.build  # noqa: F401  (matplotlib's Agg canvas and the report's modules)

    thread = threading.Thread(target=prepare, name="prepare-finish", daemon=True)
    thread.start()
    return thread


def final_model(result: Any, dataset: ImageDataset, classes: list[int] | None) -> tuple[Any, Any]:
    """The final stage's best-validation model as users get it (uint8 images in, model/classifier.py), with two
    validation images as the input example from which MLflow infers the signature."""
    from searcher.model.classifier import Classifier

    (best,) = result.final.winner_outcomes
    labels = classes or range(dataset.num_classes)
    model = Classifier(best.request.arch, dataset.channels, dataset.size, dataset.mean, dataset.std, labels)
    model.network.load_state_dict(best.result.state)
    return model.eval(), dataset.val.images[:2].numpy()
