"""Where a search's wall time goes: training/evaluation steps vs everything else.

    python scripts/bench_overhead.py --out overhead.json [--preset quick|default] [override ...]

Runs one search in this process (as `python -m searcher` would, same config
composition) and times, by wrapping the real objects, the calls into each
part: training and evaluation (`train_trial`, minus the per-epoch callbacks it
makes), MLflow (every Recorder method), Optuna (study and trial methods, the
pruner included), the terminal display, the end-of-search report (figures and
report.html/.md read back from the store; `report.trial_plots=true` adds the
per-trial figures), and the rest (controller, config,
data loading, model logging bookkeeping). Overhead = 1 - training share.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchlib import cpu_model  # scripts/benchlib.py, beside this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

totals: dict[str, float] = defaultdict(float)
depth = {"n": 0}  # nested timed calls count once, in the outermost bucket


def timed(bucket: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if depth["n"]:
            return function(*args, **kwargs)
        depth["n"] += 1
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[bucket] += time.perf_counter() - started
            depth["n"] -= 1

    return wrapper


def instrument() -> None:
    import optuna

    import searcher.execution.work as work
    import searcher.report.build as report_build
    from searcher.report.terminal import RichProgress
    from searcher.tracking.recorder import Recorder

    for name in ("start_search", "start_stage", "start_trial", "finish_trial", "finish_stage", "finish_search", "log_artifact_text", "abort"):
        setattr(Recorder, name, timed("tracking (MLflow)", getattr(Recorder, name)))
    for name in ("ask", "tell", "add_trial", "enqueue_trial"):
        setattr(optuna.Study, name, timed("optuna", getattr(optuna.Study, name)))
    for name in ("report", "should_prune"):
        setattr(optuna.trial.Trial, name, timed("optuna", getattr(optuna.trial.Trial, name)))
    optuna.create_study = timed("optuna", optuna.create_study)
    for name in ("stage", "trial", "epoch", "trial_done"):
        setattr(RichProgress, name, timed("terminal display", getattr(RichProgress, name)))

    report_build.publish = timed("report (figures, report.html/.md)", report_build.publish)

    original = work.train_trial

    def train_trial(*args, on_epoch=None, **kwargs):
        callback_seconds = [0.0]

        def timed_callback(record):
            started = time.perf_counter()
            try:
                depth["n"] -= 1  # let the callback's Optuna/display calls land in their own buckets
                return on_epoch(record)
            finally:
                depth["n"] += 1
                callback_seconds[0] += time.perf_counter() - started

        started = time.perf_counter()
        depth["n"] += 1
        try:
            return original(*args, on_epoch=timed_callback if on_epoch else None, **kwargs)
        finally:
            depth["n"] -= 1
            totals["training and evaluation"] += time.perf_counter() - started - callback_seconds[0]

    work.train_trial = train_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="quick", choices=["quick", "default"])
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. seed=1")
    args = parser.parse_args()

    process_started = time.perf_counter()
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from rich.console import Console

    from searcher.app import run
    from searcher.config import validate

    instrument()
    with tempfile.TemporaryDirectory() as folder:
        overrides = [f"search={args.preset}", f"tracking.uri=sqlite:///{folder}/mlflow.db", "search.name=bench", *args.overrides]
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            config = validate(OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=False))
        imports_seconds = time.perf_counter() - process_started
        started = time.perf_counter()
        outcome = run(config, dataset_chosen=False, console=Console(quiet=True))
        wall = time.perf_counter() - started
    assert outcome.exit_code == 0, outcome
    known = sum(totals.values())
    parts = dict(totals) | {"controller, data, config and the rest": wall - known}
    report = {
        "preset": args.preset,
        "overrides": args.overrides,
        "cpu": cpu_model(),
        "search_wall_seconds": wall,
        "imports_and_config_seconds": imports_seconds,
        "test_acc": outcome.test_acc,
        "seconds": parts,
        "share": {k: v / wall for k, v in parts.items()},
        "overhead_share": 1 - totals["training and evaluation"] / wall,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
