"""The command line: `python -m searcher [overrides]`, Hydra 1.3 single runs and multiruns.

Hydra reports its own composition errors (an unknown group option such as
`+dataset=nope`, an override of a key that does not exist) and exits 1; those
happen before our task starts, so they are bad input and leave with exit 2.

In a multirun a job that fails raises instead of exiting, so Hydra records it as
failed and the other jobs run on (Hydra then ends the multirun with an error).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
_task_started = False


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def task(composed: DictConfig) -> None:
    global _task_started
    _task_started = True
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console

    from searcher.app import EXIT_BAD_INPUT, run
    from searcher.config import ConfigError, validate
    from searcher.multirun import job_tags

    console = Console()
    dataset_chosen = "dataset" in composed
    tags = job_tags()
    try:
        config = validate(OmegaConf.to_container(composed, resolve=False))  # type: ignore[arg-type]
    except ConfigError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        leave(EXIT_BAD_INPUT, tags)
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    outcome = run(config, dataset_chosen, output_dir, console, tags)
    if outcome.exit_code != 0:
        leave(outcome.exit_code, tags, outcome.search_name)


class SearchJobFailed(Exception):
    """A multirun job's search did not complete (Hydra marks the job failed; the other jobs go on)."""


def leave(exit_code: int, tags: dict[str, str], search_name: str | None = None) -> None:
    if tags:  # a multirun job: exiting would end the whole multirun (or leave a launcher without a result)
        raise SearchJobFailed(f"job {tags['searcher.multirun_job']}: search {search_name or ''} ended with exit code {exit_code}") from None
    sys.exit(exit_code)


SUBCOMMANDS = {"ui": "searcher.ui", "report": "searcher.report.__main__"}  # `searcher ui ...` = `python -m searcher.ui ...`


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        import importlib

        sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))
    try:
        task()
    except SystemExit as exit_:
        if exit_.code == 1 and not _task_started:
            exit_now(2)  # Hydra rejected the command line before the search began
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
