"""Parallel trials: wall time of a search with worker processes vs serial, and GPU sharing throughput.

    python scripts/bench_parallel.py --out parallel.json [--pairs 3] [--workers 2] [--preset quick] [--quick] [override ...]
    python scripts/bench_parallel.py --device cuda --out gpu_sharing.json [--concurrent 4] [--trial-seconds 10] [--quick]

Search mode (default, CPU): runs `python -m searcher search=quick` (--preset) serially and with
`execution=processes execution.workers=N` (`--backend threads`: `execution=threads`), alternating which goes first, each in a fresh
process against its own SQLite store, and reports the process wall times, the search's own
`search_seconds`, their ratios (parallel / serial; median over pairs), and whether the two
made the same decisions (decisions.json equal) and the same trials (trial keys equal).
A process's wall time includes what parallel trials cannot shorten (imports, opening the
store, logging the model, the report: `fixed_seconds`); `search_seconds` is the search alone,
`stage_seconds` its stages. `median_ideal_wall_ratio` is Amdahl's bound: the wall ratio a
perfect N-fold speed-up of the whole serial search would give with the measured fixed cost.

Sharing mode (`--device cuda`, or `--sharing` on any device): trains the same small plain
CNN (depth 4, width 64) on synthetic CIFAR-shaped data resident on the device, first one
trial alone, then `--concurrent` trials at once in worker processes that share the device
(execution=processes with trials_per_gpu; `--backend threads`: in threads of this process, a
CUDA stream each, as execution=threads), and reports the aggregate training images/s of
each (total images trained / wall time of the batch; also the sum of per-trial rates).
A trial trains `--epochs` epochs of `--images` images, or, with `--trial-seconds S`, as many
epochs as make one trial alone last at least S seconds (timed from a 1- and a 2-epoch trial:
a sub-second trial is mostly start-up and measures little).
Target on a GPU (issue 13): aggregate of 4 concurrent >= 1.8x one trial's, on trials of >= 10 s
each (docs/design.md §5: 1.83x on an H100).

`--quick` shrinks either mode to show the JSON in seconds (not a measurement).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from benchlib import search_slots  # noqa: E402  (scripts/benchlib.py, beside this script)

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # this script reads decisions.json back

from searcher.data.registry import DatasetOptions, register  # noqa: E402

SYNTHETIC = "synthetic-cifar"


@register(SYNTHETIC)  # module level: spawned workers re-import this script and find the loader too
def synthetic_cifar(options: DatasetOptions):
    """Random CIFAR-shaped uint8 images (N from SEARCHER_BENCH_IMAGES); the speed of training, not its accuracy."""
    count = int(os.environ.get("SEARCHER_BENCH_IMAGES", "20000"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count + 1000, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count + 1000).astype(np.int64)
    return (images[:count], labels[:count], images[count:], labels[count:]), True


def hardware() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), platform.processor())
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    import torch

    info["torch"] = torch.__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


# ----------------------------------------------------------------------------- search mode


def run_search(label: str, folder: Path, args: list[str]) -> dict:
    uri = f"sqlite:///{folder / label / 'm.db'}"
    (folder / label).mkdir(parents=True)
    command = [sys.executable, "-m", "searcher", *args, f"tracking.uri={uri}", f"search.name=bench-{label}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder / label, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("searcher")
    (search,) = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'search'")
    trials = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'trial'", max_results=5000)
    stages = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'stage'", order_by=["attributes.start_time ASC"])
    asked = [run for run in trials if run.data.tags.get("searcher.decision") != "discarded"]  # (guesses never used: execution.speculate)
    decisions = json.loads(Path(client.download_artifacts(search.info.run_id, "decisions.json", str(folder / label))).read_text())
    search_seconds = search.data.metrics["search_seconds"]
    return {
        "wall_seconds": wall,
        "search_seconds": search_seconds,
        "fixed_seconds": wall - search_seconds,  # start-up, store, model logging, report, exit: no worker shortens them
        "stage_seconds": {run.info.run_name: (run.info.end_time - run.info.start_time) / 1000 for run in stages},
        "trial_seconds_sum": sum((run.info.end_time - run.info.start_time) / 1000 for run in trials),
        "trials": len(asked),
        "slots": search_slots(search, stages, trials),
        "test_acc": search.data.metrics.get("test_acc"),
        "decisions": decisions,
        "trial_keys": sorted(t.data.tags["searcher.trial_key"] for t in asked),
        "command": " ".join(command[1:]),
    }


def search_mode(options: argparse.Namespace) -> dict:
    base = [f"search={options.preset}", f"seed={options.seed}", *options.overrides]
    if options.quick:
        base += ["search.width.cap=16", "search.depth.cap=3", "search.final.seeds=2"]
    parallel_args = [*base, f"execution={options.backend}", f"execution.workers={options.workers}"]
    base = [*base, "execution=serial"]  # (not auto: on a multi-core CPU auto runs trials in threads)
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(options.pairs):
            order = ("serial", "parallel") if pair % 2 == 0 else ("parallel", "serial")
            runs = {label: run_search(f"{label}{pair}", Path(tmp), base if label == "serial" else parallel_args) for label in order}
            pairs.append(runs)
            s, p = runs["serial"], runs["parallel"]
            print(f"pair {pair}: serial {s['wall_seconds']:.1f}s (search {s['search_seconds']:.1f}s) · parallel {p['wall_seconds']:.1f}s "
                  f"(search {p['search_seconds']:.1f}s) · same decisions {s['decisions'] == p['decisions']}", flush=True)
            for label in ("serial", "parallel"):
                print(f"  {label} stages: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in runs[label]["stage_seconds"].items()), flush=True)
    same_decisions = all(r["serial"]["decisions"] == r["parallel"]["decisions"] for r in pairs)
    same_trials = all(r["serial"]["trial_keys"] == r["parallel"]["trial_keys"] for r in pairs)
    wall_ratio = statistics.median(r["parallel"]["wall_seconds"] / r["serial"]["wall_seconds"] for r in pairs)
    search_ratio = statistics.median(r["parallel"]["search_seconds"] / r["serial"]["search_seconds"] for r in pairs)
    # Amdahl: the ratio even a perfect N-fold speed-up of the whole serial search would give, with this run's fixed cost
    ideal_ratio = statistics.median(
        (r["parallel"]["fixed_seconds"] + r["serial"]["search_seconds"] / options.workers) / r["serial"]["wall_seconds"] for r in pairs
    )
    return {
        "mode": "search",
        "quick": options.quick,
        "workers": options.workers,
        "backend": options.backend,
        "preset": options.preset,
        "serial_command": pairs[0]["serial"]["command"],
        "parallel_command": pairs[0]["parallel"]["command"],
        "pairs": [{label: {k: v for k, v in run.items() if k not in ("decisions", "trial_keys", "command")} for label, run in pair.items()} for pair in pairs],
        "median_wall_ratio": wall_ratio,
        "median_search_ratio": search_ratio,
        "median_ideal_wall_ratio": ideal_ratio,
        "same_decisions": same_decisions,
        "same_trials": same_trials,
        "target": "median_wall_ratio <= 0.65 with same_decisions (2 workers on 2 cores)",
        "met": wall_ratio <= 0.65 and same_decisions,
    }


# ----------------------------------------------------------------------------- sharing mode


def sharing_mode(options: argparse.Namespace) -> dict:

    from searcher.data import load_dataset
    from searcher.execution.in_threads import ThreadBackend
    from searcher.execution.processes import ProcessBackend
    from searcher.execution.work import TrialTask
    from searcher.execution.worker import DataSpec
    from searcher.model.spec import LayoutPolicy
    from searcher.search.trials import TrialRequest
    from searcher.train.stability import StabilityRule
    from searcher.train.trainer import TrainSettings, resolve_device

    images = 2000 if options.quick else options.images
    os.environ["SEARCHER_BENCH_IMAGES"] = str(images)  # inherited by the spawned workers
    epochs = 2 if options.quick else options.epochs
    width = 16 if options.quick else 64
    device = str(resolve_device(options.device))
    dataset_options = DatasetOptions(SYNTHETIC, val_fraction=0.05)
    dataset = load_dataset(dataset_options)
    spec = DataSpec(dataset_options, dataset.identity, device)
    arch = LayoutPolicy(input_size=32).baseline(4, width)

    def request(seed: int, epochs: int) -> TrialRequest:
        rule = StabilityRule(min_epochs=epochs, max_epochs=epochs)
        settings = TrainSettings(optimizer="sgd", lr=0.05, batch_size=options.batch_size, stability=rule, cuda_graphs=options.cuda_graphs)
        return TrialRequest("bench", f"d4 w{width} s{seed}", arch, settings, seed, dataset.identity)

    def batch(backend: ProcessBackend | ThreadBackend, count: int, epochs: int) -> dict:
        started = time.perf_counter()
        futures = [backend.submit(TrialTask(request(seed, epochs))) for seed in range(count)]
        results = [backend.result(future) for future in futures]
        wall = time.perf_counter() - started
        failed = [outcome.error for outcome, _ in results if outcome.status == "failed"]
        if failed:
            raise SystemExit(f"a trial failed: {failed[0]}")
        return {
            "trials": count,
            "epochs": epochs,
            "wall_seconds": wall,
            "aggregate_images_per_second": count * len(dataset.train) * epochs / wall,
            "sum_of_trial_images_per_second": sum(outcome.result.images_per_second for outcome, _ in results),
            "per_trial_images_per_second": [outcome.result.images_per_second for outcome, _ in results],
        }

    threads = max(1, (os.cpu_count() or 1) // options.concurrent)
    backend: ProcessBackend | ThreadBackend
    if options.backend == "threads":  # execution=threads: one process, a CUDA stream per trial
        backend = ThreadBackend(dataset, [device] * options.concurrent)
    else:
        backend = ProcessBackend(spec, options.concurrent, threads)
    calibration = None
    try:
        batch(backend, options.concurrent, 1)  # warm-up: every worker's CUDA context, cuDNN autotuning, allocator
        if options.trial_seconds and not options.quick:
            # a trial alone lasts about fixed + epochs x per_epoch: both from a 1- and a 2-epoch trial
            one_epoch, two_epochs = (batch(backend, 1, n)["wall_seconds"] for n in (1, 2))
            per_epoch = max(two_epochs - one_epoch, 1e-3)
            target = 1.15 * options.trial_seconds  # (short runs underestimate a long one's epoch a little: 8.4 s for 10 once)
            epochs = max(1, math.ceil((target - (one_epoch - per_epoch)) / per_epoch))
            calibration = {"one_epoch_trial_seconds": one_epoch, "two_epoch_trial_seconds": two_epochs, "epochs": epochs}
            print(f"calibrated: {epochs} epochs for a trial of >= {options.trial_seconds:g} s alone ({per_epoch:.2f} s an epoch)", flush=True)
        one = batch(backend, 1, epochs)
        many = batch(backend, options.concurrent, epochs)
    finally:
        backend.close()
    speedup = many["aggregate_images_per_second"] / one["aggregate_images_per_second"]
    print(f"one trial: {one['aggregate_images_per_second']:.0f} img/s ({one['wall_seconds']:.1f} s) · {options.concurrent} concurrent: "
          f"{many['aggregate_images_per_second']:.0f} img/s aggregate · {speedup:.2f}x", flush=True)
    return {
        "mode": "sharing",
        "quick": options.quick,
        "device": device,
        "model": f"plain CNN depth 4 width {width}",
        "cuda_graphs": options.cuda_graphs,
        "backend": options.backend,
        "data": f"synthetic 3x32x32 uint8, {len(dataset.train)} train images resident on the device, batch {options.batch_size}",
        "epochs_per_trial": epochs,
        "calibration": calibration,
        "one_trial_seconds": one["wall_seconds"],
        "worker_devices": backend.devices,
        "threads_per_worker": threads if options.backend == "processes" else None,
        "one": one,
        "concurrent": many,
        "speedup": speedup,
        "target": f"speedup >= 1.8 with {options.concurrent} concurrent trials on one GPU, a trial alone lasting >= 10 s",
        "met": speedup >= 1.8 and one["wall_seconds"] >= 10 if device.startswith("cuda") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="a tiny run that shows the JSON (not a measurement)")
    parser.add_argument("--device", default="cpu", help="cuda: measure GPU sharing (the search mode runs on the CPU)")
    parser.add_argument("--sharing", action="store_true", help="measure device sharing on --device (implied by --device cuda)")
    parser.add_argument("--pairs", type=int, default=3, help="search mode: serial/parallel pairs (median ratio)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="quick", help="search mode: search preset (quick: fixed start-up costs weigh more)")
    parser.add_argument("--concurrent", type=int, default=4, help="sharing mode: trials at once on the device")
    parser.add_argument("--images", type=int, default=20000, help="sharing mode: training images (synthetic)")
    parser.add_argument("--epochs", type=int, default=5, help="sharing mode: epochs per trial (unless --trial-seconds)")
    parser.add_argument("--trial-seconds", type=float, default=0, help="sharing mode: epochs enough for a trial alone to last this long (e.g. 10)")
    parser.add_argument("--batch-size", type=int, default=256, help="sharing mode (256: train.batch_size=auto's choice on CUDA for 40k images)")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True, help="sharing mode: train.cuda_graphs of the trials")
    parser.add_argument("--backend", choices=["processes", "threads"], default="processes", help="where the parallel trials run: worker processes (execution=processes) or threads of one process (execution=threads)")
    parser.add_argument("overrides", nargs="*", help="search mode: extra Hydra overrides for both runs")
    options = parser.parse_args()
    if options.quick and options.pairs == 3:
        options.pairs = 1
    report = {"hardware": hardware(), "argv": sys.argv[1:]}
    sharing = options.sharing or options.device.startswith("cuda")
    report |= sharing_mode(options) if sharing else search_mode(options)
    options.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
