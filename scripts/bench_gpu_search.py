"""A whole search from the command line, with the GPU's utilization sampled beside it: what a user's command costs.

    python scripts/bench_gpu_search.py --out gpu_search.json [--label NAME] [override ...]
    python scripts/bench_gpu_search.py --out gpu_search.json [override ...] --run LABEL [override ...] --run LABEL [override ...]

Each run is `python -m searcher OVERRIDES` in a fresh process, in a temporary folder of its own (its own SQLite
MLflow and Optuna stores, Hydra's output folder), as a user would type it. Beside it `nvidia-smi` samples every GPU's
utilization and memory once a second (where there is no nvidia-smi, as on a CPU-only machine, those fields are
null and the rest is measured all the same). Overrides before the first `--run` apply to every run; several
`--run`s make one invocation measure several commands (GPU time is scarce), and the JSON is rewritten after each.

Per run the JSON holds: the command; its wall seconds; the search's own seconds and each stage's (from the MLflow
store it wrote: the search run's `search_seconds`, the stage runs' start and end); the number of trials; the final
model's test accuracy; what `auto` chose (batch size, learning rate, execution, workers, trials per GPU: the
resolved settings recorded as the search run's params, and the lines the command printed about them); the lines of
its output that warn (model logging's, say); the mean and median GPU utilization over the search (first stage's
start to last stage's end) and over the whole command; the most GPU memory in use; where the wall time went
(`phases`: start-up until the search's first line, then until the first stage, the search, logging the model,
the report, from when each line was printed and the stage runs' times); and how the trial slots were spent over the
search (`slots`: capacity x search seconds split into useful trial-seconds, speculative ones discarded, and idle). A failed run keeps its exit code and the end of its output, and the next run still runs.
The hardware is named: the GPU's name where torch sees one, the CPU's model always.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from benchlib import cpu_model, search_slots, stage_window  # noqa: E402

SAMPLE_COMMAND = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-l", "1"]
CHOICE_PARAMS = ("train.batch_size", "train.lr", "execution.kind", "execution.workers", "execution.trials_per_gpu", "device")


@dataclass
class Sampler:
    """nvidia-smi in the background: (time, mean utilization % over the GPUs, memory used MiB summed over them) per second."""

    samples: list[tuple[float, float, float]] = field(default_factory=list)
    process: subprocess.Popen | None = None
    gpus: int = 0

    def start(self) -> bool:
        try:
            self.process = subprocess.Popen(SAMPLE_COMMAND, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:  # no nvidia-smi: utilization is not measured here
            return False
        threading.Thread(target=self._read, daemon=True).start()
        return True

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        batch: dict[int, tuple[float, float]] = {}
        for line in self.process.stdout:
            try:
                index, utilization, memory = (float(part) for part in line.split(","))
            except ValueError:  # "[N/A]" on some GPUs, or a torn line
                continue
            if int(index) in batch:  # a new round of samples begins: the last one is complete
                self._keep(batch)
                batch = {}
            batch[int(index)] = (utilization, memory)
        if batch:
            self._keep(batch)

    def _keep(self, batch: dict[int, tuple[float, float]]) -> None:
        self.gpus = max(self.gpus, len(batch))
        self.samples.append((time.time(), statistics.fmean(u for u, _ in batch.values()), sum(m for _, m in batch.values())))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def summary(self, start: float, end: float) -> dict | None:
        """Mean and median utilization (%) of the samples taken between `start` and `end` (seconds since the epoch)."""
        if self.process is None:
            return None
        within = [u for t, u, _ in self.samples if start <= t <= end]
        if not within:
            return {"mean": None, "median": None, "samples": 0}
        return {"mean": statistics.fmean(within), "median": statistics.median(within), "samples": len(within)}

    def most_memory(self, start: float, end: float) -> float | None:
        within = [m for t, _, m in self.samples if start <= t <= end]
        return max(within) if within else None


def hardware() -> dict:
    info: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpus"] = torch.cuda.device_count()
    except ImportError:
        pass
    return info


def read_record(uri: str) -> dict:
    """What the search recorded: its seconds, stages, trials, test accuracy and the resolved settings."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("searcher")
    (search,) = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'search'")
    stages = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'stage'", order_by=["attributes.start_time ASC"])
    trials = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'trial'", max_results=5000)
    finished = [run for run in stages if run.info.end_time]
    return {
        "search_seconds": search.data.metrics.get("search_seconds"),
        "stage_seconds": {run.info.run_name: (run.info.end_time - run.info.start_time) / 1000 for run in finished},
        "trials": len(trials),
        "test_acc": search.data.metrics.get("test_acc"),
        "resolved": {key: search.data.params.get(key) for key in CHOICE_PARAMS} | {"device_used": search.data.tags.get("searcher.device")},
        "window": stage_window(stages),
        "slots": search_slots(search, stages, trials),
    }


def start_timeline(folder: Path, started: float) -> list[tuple[float, str]]:
    """The search's own account of its start (searcher.app's lines in cli.log): (seconds since the command began, line)."""
    from datetime import datetime

    timeline = []
    for log in folder.glob("outputs/*/*/cli.log"):
        for line in log.read_text().splitlines():
            if "][searcher.app][" in line:
                stamp, message = line[1:24], line.split(" - ", 1)[-1]
                at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                timeline.append((round(at - started, 2), message))
    return sorted(timeline)


def phases(lines: list[tuple[float, str]], started: float, ended: float, window: tuple[float, float] | None) -> dict:
    """Where the wall time went, from when lines were printed: start-up, to the first stage, search, model, report."""
    def first(prefix: str) -> float | None:
        return next((at for at, line in lines if line.startswith(prefix)), None)

    announced, model_logged = first("search "), first("model:")
    marks = {"start": started, "announced": announced, "first_stage": window[0] if window else None,
             "last_stage_end": window[1] if window else None, "model_logged": model_logged, "end": ended}
    names = list(marks)
    return {
        f"{a}->{b}": round(marks[b] - marks[a], 2)  # type: ignore[operator]
        for a, b in zip(names, names[1:], strict=False)
        if marks[a] is not None and marks[b] is not None
    }


def echo(process: subprocess.Popen, label: str, lines: list[tuple[float, str]]) -> None:
    """The command's output, shown as it comes (labelled) and kept, with when each line came."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append((time.time(), line.rstrip("\n")))
        print(f"[{label}] {line}", end="", flush=True)


def run_one(label: str, overrides: list[str], folder: Path, timeout: float | None) -> dict:
    """One command, in `folder`, with the GPU sampled beside it."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    command = [sys.executable, "-m", "searcher", *overrides, f"tracking.uri={uri}", f"search.name=bench-{label}"]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)  # (keeps a carried site-packages)
    env = dict(os.environ, PYTHONPATH=path, COLUMNS="120", PYTHONUNBUFFERED="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    sampler = Sampler()
    sampling = sampler.start()
    print(f"[{label}] {' '.join(command[1:])}", flush=True)
    timed: list[tuple[float, str]] = []
    started = time.time()
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = threading.Thread(target=echo, args=(process, label, timed), daemon=True)
    reader.start()
    try:
        exit_code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        exit_code = process.wait()
    reader.join(timeout=10)
    ended = time.time()
    sampler.stop()
    lines = [line for _, line in timed]
    run: dict = {"label": label, "command": " ".join(["python", *command[1:]]), "exit_code": exit_code, "wall_seconds": ended - started}
    run["auto_lines"] = [line for line in lines[:40] if line.startswith(("training:", "execution:"))]
    run["warning_lines"] = [line for line in lines if "warning" in line.lower() or "Failed to validate" in line][:20]  # e.g. model logging's
    if exit_code != 0:
        return run | {"error": "\n".join(lines[-40:]), "utilization_wall": sampler.summary(started, ended) if sampling else None}
    record = read_record(uri)
    stages = record.pop("window")
    window = stages or (started, ended)
    return run | record | {
        "phases": phases(timed, started, ended, stages),
        "start_timeline": start_timeline(folder, started),
        "utilization_search": sampler.summary(*window),
        "utilization_wall": sampler.summary(started, ended),
        "gpu_memory_used_mib_max": sampler.most_memory(started, ended),
        "gpus_sampled": sampler.gpus if sampling else None,
    }


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, list[str]]]]:
    """The options, and the runs: (label, overrides) each, the shared overrides (before any --run) first."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--label", default="search", help="the run's label (without --run)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one run may take before it is killed")
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's folder (stores, outputs) under this folder")
    parser.add_argument("--run", nargs="+", action="append", metavar=("LABEL", "OVERRIDE"), help="a labelled run and its own overrides")
    parser.add_argument("overrides", nargs="*", help="searcher overrides for every run")
    options = parser.parse_args(argv)
    shared = options.overrides
    runs = [(run[0], [*shared, *run[1:]]) for run in options.run] if options.run else [(options.label, shared)]
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        parser.error(f"each --run needs a label of its own; got {labels}")
    return options, runs


def main(argv: list[str] | None = None) -> None:
    options, runs = parse(sys.argv[1:] if argv is None else argv)
    machine = hardware()
    report: dict = {"device": machine.get("gpu", machine["cpu"]), "hardware": machine, "argv": sys.argv[1:] if argv is None else argv, "runs": []}
    for label, overrides in runs:
        with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as scratch:
            folder = options.keep / label if options.keep else Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            report["runs"].append(run_one(label, overrides, folder, options.timeout))
        options.out.write_text(json.dumps(report, indent=2))  # after every run: a later one that fails keeps the earlier
        last = report["runs"][-1]
        used = (last.get("utilization_search") or {}).get("mean")
        print(f"[{label}] exit {last['exit_code']} · wall {last['wall_seconds']:.1f}s · search {last.get('search_seconds') or 0:.1f}s · "
              f"{last.get('trials', 0)} trials · test_acc {last.get('test_acc')} · GPU {'n/a' if used is None else f'{used:.0f}% mean'}", flush=True)
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
