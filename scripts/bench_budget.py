"""Does a search with `search.budget=T` end within T + 5% with a final model, and what does the budget cost it?

Runs the command unbudgeted in a new folder, timing it as a user would (the whole command, start-up and report
included), then again with `search.budget` set to each fraction of that time, each in a folder of its own (a new
store: nothing reused). Prints a Markdown table (docs/BENCHMARKS.md §8) and, with --out, writes the rows as JSON.
Time it on a quiet machine: the budget is wall time.

    python scripts/bench_budget.py --out budget.json [--fractions 0.5,0.25] [-- OVERRIDES...]   (default: the default digits search)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # (before MLflow reads it)

from mlflow.tracking import MlflowClient  # noqa: E402


def run(overrides: list[str], folder: Path) -> dict:
    """One command in `folder`, timed; its test accuracy, trials and the budget's account, read from its store."""
    folder.mkdir(parents=True)
    uri = f"sqlite:///{folder / 'm.db'}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "searcher", *overrides, f"tracking.uri={uri}"], cwd=folder, capture_output=True, text=True, env=dict(os.environ, COLUMNS="120")
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(overrides)}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=5000)
    (search,) = [r for r in runs if r.data.tags.get("searcher.role") == "search"]
    trials = [r for r in runs if r.data.tags.get("searcher.role") == "trial"]
    log = json.loads(Path(client.download_artifacts(search.info.run_id, "decisions.json")).read_text())
    final = next(entry for entry in log if entry["decision"] == "final")
    return {
        "overrides": overrides,
        "wall_seconds": round(wall, 1),
        "test_acc": search.data.metrics["test_acc"],
        "winner": final["reason"].split(" over ")[0],
        "trials": len(trials),
        "epochs": int(sum(r.data.metrics.get("epochs", 0) for r in trials)),
        "budget": [entry["reason"] for entry in log if entry["decision"] == "budget"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--fractions", default="0.5,0.25", help="budgets as fractions of the unbudgeted command's wall time")
    parser.add_argument("overrides", nargs="*", help="the search's settings (after --)")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_budget."))
    reference = run(options.overrides, root / "unbudgeted")
    rows = [reference | {"budget_seconds": None}]
    for fraction in (float(f) for f in options.fractions.split(",")):
        budget = round(reference["wall_seconds"] * fraction)
        row = run([*options.overrides, f"search.budget={budget}s"], root / f"budget-{budget}s")
        rows.append(row | {"budget_seconds": budget, "fraction": fraction, "over_budget": round(row["wall_seconds"] / budget - 1, 3)})
    print("| budget | wall (s) | over the budget | test acc | winner | trials | epochs |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        shown = "none" if row["budget_seconds"] is None else f"{row['budget_seconds']} s ({row['fraction']:g} of the unbudgeted)"
        over = "" if row["budget_seconds"] is None else f"{row['over_budget']:+.1%}"
        print(f"| {shown} | {row['wall_seconds']} | {over} | {row['test_acc']:.4f} | {row['winner']} | {row['trials']} | {row['epochs']} |")
    for row in rows[1:]:
        print(f"\n{row['budget_seconds']} s: " + " / ".join(row["budget"]))
    if options.out:
        options.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
