"""The command line: `python -m searcher [overrides]`, Hydra 1.3 single runs and multiruns.

Hydra reports its own composition errors (an unknown group option such as
`+dataset=nope`, an override of a key that does not exist) and exits 1; those
happen before our task starts, so they are bad input and leave with exit 2. Two
mistakes Hydra explains badly are caught before it sees them: a dataset chosen
without the `+`, and a dataset setting given with no dataset chosen.

A single run's settings are checked in `CheckSettings`, before Hydra creates the
output folder; what only the search can check (its data, a store's server, its
lease) refuses the command later, and the folder is removed then: a rejected
command leaves no folder behind. In a run that started, cli.log records what
happened: the command and how it ended (the terminal shows the rest; the
decision log and report sit beside it).

In a multirun a job that fails raises instead of exiting, so Hydra records it as
failed and the other jobs run on (Hydra then ends the multirun with an error).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from searcher.clock import process_started

EXIT_BAD_INPUT = 2  # docs/design.md §4 (searcher.app has the others; importing it costs torch's 2 s)
log = logging.getLogger(__name__)  # to cli.log only (conf/config.yaml, hydra.job_logging)


def find_conf_dir() -> str:
    """conf/ as an installed wheel ships it (inside the package), else at the top of a source checkout."""
    package = Path(__file__).resolve().parent
    checkout = package.parent
    if not (package / "conf" / "config.yaml").is_file() and (checkout / "pyproject.toml").is_file():
        return str(checkout / "conf")
    return str(package / "conf")


CONF_DIR = find_conf_dir()
# conf/config.yaml's output folders end with the process id: each command gets its own, even two started in the same
# second. Cached, as Hydra's ${now:}: a launcher's jobs (another process, SLURM's included) get the sweep folder it made.
OmegaConf.register_new_resolver("searcher.pid", os.getpid, use_cache=True)
_task_started = False
_folder_existed = True  # whether the output folder was there before Hydra made it for this single run (CheckSettings)
_masked_uris: set[str] = set()  # store URIs whose passwords every log record masks (MaskSecrets)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def task(composed: DictConfig) -> None:
    global _task_started
    # The first search of this process counts from the process's start (a wall-time search.budget covers the whole
    # command); a multirun's next jobs in the same process from their own start.
    started = time.monotonic() if _task_started else process_started()
    _task_started = True
    from hydra.core.hydra_config import HydraConfig

    from searcher.app import run
    from searcher.config import ConfigError, validate
    from searcher.multirun import job_tags, shown_override
    from searcher.report.terminal import search_console

    console = search_console()
    dataset_chosen = "dataset" in composed
    tags = job_tags()
    hydra_config = HydraConfig.get()
    log.info("command: searcher %s", " ".join(shown_override(o) for o in hydra_config.overrides.task))
    try:
        config = validate(OmegaConf.to_container(composed, resolve=False))  # type: ignore[arg-type]
    except ConfigError as error:  # a multirun job (a single run was checked by CheckSettings)
        show_error(console, str(error))
        log.info("not started: %s", error)
        leave(EXIT_BAD_INPUT, tags)
    try:
        outcome = run(config, dataset_chosen, Path(hydra_config.runtime.output_dir), console, tags, started)
    except BaseException as error:
        log.error("stopped: %s: %s", type(error).__name__, error)
        raise
    log.info("%s", outcome.story())
    if outcome.exit_code == EXIT_BAD_INPUT and not tags:
        remove_refused_folder(Path(hydra_config.runtime.output_dir), {hydra_config.output_subdir, f"{hydra_config.job.name}.log"})
    if outcome.exit_code != 0:
        leave(outcome.exit_code, tags, outcome.search_name)


def remove_refused_folder(folder: Path, written: set[str | None]) -> None:
    """A refused command (exit 2: its data, a store or the search's lease) leaves no output folder: the one Hydra made
    for it goes, if it was made by this command and holds only what Hydra and the log wrote there (`written`), and so
    do the folders above it up to the working directory (outputs/DATE/) that are left empty."""
    if _folder_existed or {path.name for path in folder.iterdir()} - written:
        return
    import shutil

    shutil.rmtree(folder)  # (cli.log stays open, unlinked: a late record goes nowhere rather than recreating it)
    cwd = Path.cwd()
    for parent in folder.parents:
        if cwd not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:  # not empty: another command's folder is in it
            break


class CheckSettings(Callback):
    """Checks a single run's settings, that a CUDA device it names exists and that its SQLite or journal stores can be
    written, before Hydra creates its output folder: a rejected command leaves nothing behind."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.console import Console

        from searcher.config import ConfigError, validate
        from searcher.uris import unwritable_store

        try:
            checked = validate(OmegaConf.to_container(config, resolve=False))  # type: ignore[arg-type]
            from searcher.search.setup import model_family

            model_family(checked)  # the family's class can be had and takes its settings
            if checked.device.startswith("cuda"):  # only then is torch (2 s) imported here; the search imports it anyway
                from searcher.execution.setup import check_device

                check_device(checked.device)
            for setting, uri in (("tracking.uri", checked.tracking.uri), ("tracking.optuna_storage", checked.tracking.optuna_storage)):
                if uri and (error := unwritable_store(setting, uri)):
                    raise ConfigError(error)
        except ConfigError as error:
            show_error(Console(), str(error))
            sys.exit(EXIT_BAD_INPUT)
        global _folder_existed
        _folder_existed = Path(str(config.hydra.run.dir)).exists()  # (a refused command removes only a folder it made)


class MaskSecrets(Callback):
    """Keeps store passwords out of the output folder and the log: Hydra saves every override as given.

    Hydra writes .hydra/config.yaml, hydra.yaml and overrides.yaml (and a multirun's
    multirun.yaml) before a job starts, passwords included; they are rewritten masked here.
    Every log record is made masked (a launcher logs each job's overrides), and so are the
    overrides Hydra prints for a failed job. Better still, keep passwords out of URIs
    (PGPASSWORD or ~/.pgpass: docs/cluster.md).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.mask_log_records(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.mask_log_records(config)  # before the launcher logs every job's overrides ("#0 : ...")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from searcher.uris import redact_text

        uris = self.secret_uris(config)
        if not uris:
            return
        runtime = config.hydra.runtime.output_dir
        saved = [Path(runtime) / str(config.hydra.output_subdir or ".hydra") / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
        saved.append(Path(str(config.hydra.sweep.dir)) / "multirun.yaml")
        for path in saved:
            if path.is_file():
                path.write_text(redact_text(path.read_text(), *uris))
        self.mask_log_records(config)  # (a job of a remote launcher starts here)

    @staticmethod
    def mask_log_records(config: DictConfig) -> None:
        """Every log record is made with the passwords masked: launchers reconfigure logging's handlers, a record factory stays."""
        global _masked_uris
        uris = [uri for uri in MaskSecrets.secret_uris(config) if uri not in _masked_uris]
        if not uris:
            return
        _masked_uris |= set(uris)
        from searcher.uris import redact_text

        make_record = logging.getLogRecordFactory()

        def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            try:
                record.msg, record.args = redact_text(record.getMessage(), *uris), None
            except (TypeError, ValueError):  # a record whose arguments do not fit its format: logging reports it as usual
                pass
            return record

        logging.setLogRecordFactory(masked_record)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """A failed job's overrides are printed by Hydra ("Error executing job with overrides: [...]"): masked first."""
        from searcher.uris import redact_text

        uris = self.secret_uris(config)
        if uris and job_return.overrides:
            job_return.overrides = [redact_text(override, *uris) for override in job_return.overrides]

    @staticmethod
    def secret_uris(config: DictConfig) -> list[str]:
        """The store URIs that hold a password."""
        from searcher.uris import password_of

        tracking = config.get("tracking") or {}
        return [uri for uri in (tracking.get("uri"), tracking.get("optuna_storage")) if isinstance(uri, str) and password_of(uri)]


class MaskedStream:
    """stdout or stderr with store passwords masked in everything written: those of the command line's URIs (as written,
    wherever they show) and of any URI in the text. Hydra prints settings itself (`--cfg`, `--info`, `--help`'s
    current values, its errors), as given."""

    def __init__(self, stream: Any, uris: list[str]) -> None:
        self.stream, self.uris = stream, uris

    def write(self, text: str) -> int:
        from searcher.uris import redact_text, redact_uris

        self.stream.write(redact_uris(redact_text(text, *self.uris)))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def secret_uris(args: list[str]) -> list[str]:
    """The URIs with a password among the command line's arguments (an override's value, or an argument itself)."""
    from searcher.uris import password_of

    values = (arg.split("=", 1)[1].strip("'\"") if "=" in arg.split("://", 1)[0] else arg for arg in args)
    return [value for value in values if password_of(value)]


PRINTING = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--resolve")  # Hydra prints the settings


def show_error(console: Any, message: str) -> None:
    from searcher.report.errors import print_error

    print_error(console, message)


def dataset_names() -> list[str]:
    return sorted(path.stem for path in (Path(CONF_DIR) / "dataset").glob("*.yaml"))


def misplaced_dataset(args: list[str]) -> str | None:
    """What to do instead, for a dataset override Hydra would reject with a message about its defaults list."""
    overrides = [arg for arg in args if not arg.startswith("-")]
    chosen = any(arg.startswith(("+dataset=", "++dataset=")) for arg in overrides)
    names = ", ".join(dataset_names())
    for arg in overrides:
        if arg.startswith("dataset="):
            return f"{arg}: choose a dataset with a plus, +{arg} (no dataset is set by default, so one is added, not replaced); datasets: {names}."
        if arg.startswith("dataset.") and not chosen:
            return f"{arg} needs a dataset chosen first: add +dataset=NAME before it, e.g. +dataset=digits {arg} (datasets: {names})."
    return None


class SearchJobFailed(Exception):
    """A multirun job's search did not complete (Hydra marks the job failed; the other jobs go on)."""


def leave(exit_code: int, tags: dict[str, str], search_name: str | None = None) -> None:
    if tags:  # a multirun job: exiting would end the whole multirun (or leave a launcher without a result)
        raise SearchJobFailed(f"job {tags['searcher.multirun_job']}: search {search_name or ''} ended with exit code {exit_code}") from None
    sys.exit(exit_code)


SUBCOMMANDS = {"ui": "searcher.ui", "report": "searcher.report.__main__"}  # `searcher ui ...` = `python -m searcher.ui ...`


def main() -> None:
    args = sys.argv[1:]
    if "" not in sys.path and os.getcwd() not in sys.path:  # the console script: your modules here import, as under python -m
        sys.path.insert(0, os.getcwd())
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow's loggers follow conf/hydra/job_logging: its messages to cli.log
    if args and args[0] in SUBCOMMANDS:
        import importlib

        sys.exit(importlib.import_module(SUBCOMMANDS[args[0]]).main(args[1:]))
    from searcher import completion

    uris = secret_uris(args)
    if uris or any(arg.split("=")[0] in PRINTING for arg in args):
        sys.stdout, sys.stderr = MaskedStream(sys.stdout, uris), MaskedStream(sys.stderr, uris)
    completing = completion.request(args)
    hint = None if completing else misplaced_dataset(args)
    if hint:
        from rich.console import Console

        show_error(Console(), hint)
        exit_now(EXIT_BAD_INPUT)
    try:
        if completing:
            completion.answer(completing[0], task)
        else:
            task()
    except SystemExit as exit_:
        if exit_.code == 1 and not _task_started:
            exit_now(EXIT_BAD_INPUT)  # Hydra rejected the command line before the search began
        if isinstance(exit_.code, int):
            exit_now(exit_.code)
        raise
    exit_now(0)


def exit_now(code: int) -> None:
    """Exit without tearing the interpreter down: freeing the torch, MLflow and SQLAlchemy module graphs
    object by object takes 1-2 s and saves nothing. What a normal exit does first still happens here:
    threads are joined, atexit handlers run (logging, MLflow's flushes) and the output is flushed."""
    threading._shutdown()  # type: ignore[attr-defined]  # what Python runs first at exit: stops executors, joins threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to write to
            pass
    os._exit(code)
