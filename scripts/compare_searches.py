"""Do two checkouts of searcher search alike? Runs the same quick searches with each and compares what they decided and recorded.

A refactor must not change a search: this runs `python -m searcher search=quick` on the built-in
digits for a few seeds (serial) and one seed in worker processes, once with each code tree
(PYTHONPATH), and compares decisions.json byte for byte, decisions.md and report.md with their
timestamps and durations masked, and the MLflow record (every run's name, status, tags, params,
metrics, per-epoch curves and artifact names; run ids, times and seconds-based numbers left out).

    git worktree add /tmp/base <commit>          # the code before the change
    python scripts/compare_searches.py /tmp/base . --out /tmp/compare
    python scripts/compare_searches.py /tmp/base . --out /tmp/compare --run head   # rerun the head only
    python scripts/compare_searches.py /tmp/base . --out /tmp/compare --hard-seeds 0   # and the hard synthetic

Exit code 0: every case alike; 1: a difference (printed).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Record fields that differ between two runs of the same code: ids, clocks, durations, the code's own commit.
VOLATILE_TAGS = ("mlflow.parentRunId", "mlflow.user", "mlflow.source.", "mlflow.log-model.history", "searcher.search_run_id", "searcher.multirun_", "searcher.owner")
VOLATILE_METRICS = ("train_seconds", "images_per_second", "search_seconds", "report_seconds")
CURVES = ("train_loss", "val_loss", "val_acc", "lr")
MASKS = (
    (r"\d+(\.\d+)? s\b", "<seconds> s"),  # durations
    (r"started \d{4}-\d\d-\d\d \d\d:\d\d", "started <time>"),
    (r"models:/m-[0-9a-f]+", "models:/<logged model id>"),
)


def cases(seeds: list[int], parallel_seeds: list[int], workers: int, hard_seeds: list[int] | None = None) -> dict[str, list[str]]:
    found = {f"serial-seed{s}": [f"seed={s}", "execution=serial"] for s in seeds}
    found |= {f"hard-seed{s}": ["+dataset=synthetic_hard", f"seed={s}", "execution=serial"] for s in hard_seeds or []}
    found |= {f"processes-seed{s}": [f"seed={s}", "execution=processes", f"execution.workers={workers}"] for s in parallel_seeds}
    return found


def run_search(tree: Path, folder: Path, overrides: list[str]) -> None:
    """One quick search with `tree`'s searcher, its store and output files in `folder` (relative paths: same params)."""
    shutil.rmtree(folder, ignore_errors=True)  # a store that holds the search already would only print its summary
    folder.mkdir(parents=True)
    # report.trial_plots fixed: its default (auto) draws per-trial figures only when trials average >= 3 s, which varies with load
    command = [sys.executable, "-m", "searcher", "search=quick", "search.name=cmp", "tracking.uri=sqlite:///m.db", "hydra.run.dir=out", "report.trial_plots=false"]
    command += overrides
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), COLUMNS="120")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    (folder / "stdout.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{folder}: the search failed (exit {done.returncode}); see {folder / 'stdout.txt'}")
    print(f"  {folder}: {time.perf_counter() - started:.0f} s", flush=True)


def masked(text: str) -> str:
    for pattern, replacement in MASKS:
        text = re.sub(pattern, replacement, text)
    return text


def run_record(client: Any, run: Any) -> dict[str, Any]:
    """What a run records, without ids, clocks and durations."""
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith(VOLATILE_TAGS)}
    metrics = {k: v for k, v in run.data.metrics.items() if k not in VOLATILE_METRICS}
    record: dict[str, Any] = {"name": run.info.run_name, "status": run.info.status, "tags": tags, "params": dict(run.data.params), "metrics": metrics}
    record["artifacts"] = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    if tags.get("searcher.role") == "trial":
        record["curves"] = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] for key in CURVES}
    return record


def store_record(folder: Path) -> list[dict[str, Any]]:
    """Every run of the store, in the order they started."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'm.db'}")
    experiment = client.get_experiment_by_name("searcher")
    runs = client.search_runs([experiment.experiment_id], "", max_results=5000, order_by=["attributes.start_time ASC"])
    return [run_record(client, run) for run in runs]


def differences(name: str, before: str, after: str) -> list[str]:
    if before == after:
        return []
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"base/{name}", f"head/{name}", lineterm="", n=1)
    return [f"{name} differs:", *list(lines)[:60]]


def compare(base: Path, head: Path) -> list[str]:
    found = []
    found += differences("decisions.json", (base / "out" / "decisions.json").read_text(), (head / "out" / "decisions.json").read_text())
    for name in ("decisions.md", "report.md"):  # they say how long the search took
        found += differences(f"{name} (masked)", masked((base / "out" / name).read_text()), masked((head / "out" / name).read_text()))
    records = [json.dumps(store_record(folder), indent=1, sort_keys=True, default=str) for folder in (base, head)]
    found += differences("MLflow record", *records)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="the code tree before the change (a git worktree)")
    parser.add_argument("head", type=Path, help="the code tree after the change")
    parser.add_argument("--out", type=Path, default=Path("compare-searches"), help="where the runs' stores and outputs go")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="seeds searched serially (default 0 1 2)")
    parser.add_argument("--parallel-seeds", type=int, nargs="*", default=[0], help="seeds searched in worker processes (default 0)")
    parser.add_argument("--hard-seeds", type=int, nargs="*", default=[], help="seeds searched serially on +dataset=synthetic_hard (default none)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the parallel cases (default 2)")
    parser.add_argument("--overrides", nargs="*", default=[], help="more settings for every case, e.g. search.warm_start=true")
    parser.add_argument("--run", choices=("both", "base", "head", "none"), default="both", help="which trees to run (the others' runs are reused)")
    args = parser.parse_args(argv)
    failed = False
    for case, overrides in cases(args.seeds, args.parallel_seeds, args.workers, args.hard_seeds).items():
        folders = {label: args.out / label / case for label in ("base", "head")}
        for label, tree in (("base", args.base), ("head", args.head)):
            if args.run in ("both", label):
                run_search(tree, folders[label], overrides + args.overrides)
        found = compare(folders["base"], folders["head"])
        print(f"{case}: {'alike' if not found else 'DIFFERENT'}", flush=True)
        for line in found:
            print(f"  {line}")
        failed |= bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
