"""Benchmark the data layer: input-pipeline throughput vs the trainer, and CIFAR-10 load time.

    python scripts/bench_data.py --out bench_data.json [--device auto|cpu|cuda] [--work DIR] [--rounds 2] [--threads N]

(a) Synthetic CIFAR-shaped data (50k train + 10k test, 32x32x3, seed 0; 10% validation):
    images/s of DeviceSplit.shuffled_batches alone (batch 512, crop padding 4 + flips), and the torch calls
    it makes per step at batch 256 (what a small network on a GPU waits on; counted with torch.profiler),
    against images/s of searcher.train.train_trial on the same data for the baseline network
    LayoutPolicy(32).baseline(2, 16) (batch 512, augment 1.0, one epoch, seed 0).
(b) A CIFAR-10-format archive the script writes itself (cifar-10-python.tar.gz with
    cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta: Python-2-style protocol-2
    pickles of dicts with b'data' (N, 3072) uint8 and b'labels'; 50k + 10k random images, written
    by tests/datafiles.py). Real CIFAR-10 cannot be
    downloaded here, so this is a same-format synthetic archive, and its checksum is its own
    MD5 (passed in through DatasetOptions.checksums), not the published one. Timed: load_dataset
    (verify MD5, extract on the first load, unpickle, split, statistics) + DeviceData.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import cpu_model  # scripts/benchlib.py, beside this script
from omegaconf import OmegaConf

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.model.spec import LayoutPolicy
from searcher.train.stability import StabilityRule
from searcher.train.trainer import TrainSettings, resolve_device, train_trial

REPO = Path(__file__).resolve().parent.parent
BATCH = 512


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_images_per_second(data: DeviceData, epochs: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    sync(data.device)
    started, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for _images, labels in data.train.shuffled_batches(BATCH, generator, crop_padding=4, flip=True):
            seen += labels.shape[0]
        sync(data.device)  # the batches are produced lazily; on CUDA, wait for the last kernels
    return seen / (time.perf_counter() - started)


def calls_per_step(data: DeviceData, batch: int = 256) -> float:
    """torch calls the pipeline makes per training step (top-level aten ops, torch.profiler): each is a dispatch from
    Python, and on CUDA most launch a kernel, which a small network's step waits on. Counted, not timed."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        steps = sum(1 for _ in data.train.shuffled_batches(batch, torch.Generator().manual_seed(0), crop_padding=4, flip=True))
    calls = [event for event in profiler.events() if event.name.startswith("aten::") and event.cpu_parent is None]
    return round(len(calls) / steps, 1)


def bench_pipeline(device: torch.device, rounds: int) -> dict:
    options = DatasetOptions(
        name="synthetic", image_size=32, channels=3, num_classes=10, train_size=50_000, test_size=10_000, val_fraction=0.1
    )
    started = time.perf_counter()
    dataset = load_dataset(options)
    generate_s = time.perf_counter() - started
    data = DeviceData(dataset, device)
    spec = LayoutPolicy(input_size=32).baseline(2, 16)
    settings = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=BATCH, augment=1.0, stability=StabilityRule(min_epochs=1, max_epochs=1))
    pipeline_images_per_second(data, 1, seed=1)  # warm-up (allocator, kernels)
    pipeline, trainer = [], []
    for round_ in range(rounds):  # interleaved, so both see the same competition for the cores
        pipeline.append(pipeline_images_per_second(data, 2, seed=round_))
        trainer.append(train_trial(spec, data, settings, seed=round_).images_per_second)
    ratios = [p / t for p, t in zip(pipeline, trainer, strict=True)]
    return {
        "data": "synthetic 32x32x3, 10 classes, 45k train / 5k val (data_seed 0, split_seed 0)",
        "generate_seconds": round(generate_s, 2),
        "pipeline_images_per_second": [round(x) for x in pipeline],
        "pipeline_settings": f"DeviceSplit.shuffled_batches batch {BATCH}, crop padding 4, flip, 2 epochs per round after 1 warm-up",
        "trainer_images_per_second": [round(x) for x in trainer],
        "trainer_settings": f"train_trial baseline {spec.describe()} kernels {spec.kernels}, batch {BATCH}, {settings.optimizer}, augment 1.0, 1 epoch per round, seed = round",
        "ratio_per_round": [round(x, 1) for x in ratios],
        "ratio_min": round(min(ratios), 1),
        "target_ratio": 10,
        "torch_calls_per_step_at_batch_256": calls_per_step(data),  # (gathered and augmented in chunks: batches.CHUNK_BYTES)
    }


def write_cifar10_archive(folder: Path, seed: int = 0) -> str:
    """A CIFAR-10-format archive of random images (the tests' writer: Python-2-style pickles); returns its MD5."""
    sys.path.insert(0, str(REPO / "tests"))
    from datafiles import md5, write_cifar10

    rng = np.random.default_rng(seed)
    train = (rng.integers(0, 256, (50_000, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 50_000))
    test = (rng.integers(0, 256, (10_000, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 10_000))
    return md5(write_cifar10(folder, train, test))


def bench_cifar_load(device: torch.device, work: Path) -> dict:
    conf = OmegaConf.load(REPO / "conf" / "dataset" / "cifar10.yaml")
    archive = work / "cifar10" / "cifar-10-python.tar.gz"
    md5 = write_cifar10_archive(archive.parent)
    options = DatasetOptions(
        name="cifar10",
        data_dir=work,
        val_fraction=conf.val_fraction,
        mean=tuple(conf.mean),
        std=tuple(conf.std),
        checksums=(("cifar-10-python.tar.gz", md5),),
        mirror="http://127.0.0.1:9/",  # unreachable: proves nothing is fetched
        progress=False,
    )
    timings = {}
    for label in ("first_load_seconds", "cached_load_seconds"):
        sync(device)
        started = time.perf_counter()
        data = DeviceData(load_dataset(options), device)
        sync(device)
        timings[label] = round(time.perf_counter() - started, 2)
    resident = data.train.images.nbytes + data.val.images.nbytes + data.train.labels.nbytes + data.val.labels.nbytes
    test = data.test()
    return {
        "data": "same-format synthetic CIFAR-10 archive (random pixels), 50k+10k images; checksum = its own MD5, not the published one",
        "archive_bytes": archive.stat().st_size,
        **timings,
        "first_load_includes": "MD5 of the archive, safe extraction, unpickling, validation split, DeviceData",
        "cached_load_includes": "MD5 of the archive, unpickling, validation split, DeviceData (already extracted)",
        "target_seconds": 3,
        "device_megabytes_train_val_uint8": round(resident / 1e6, 1),
        "device_megabytes_with_test": round((resident + test.images.nbytes + test.labels.nbytes) / 1e6, 1),
        "target_megabytes": 200,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for the archive (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved pipeline/trainer measurements")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    report = {
        "command": "python " + " ".join(sys.argv),
        "cpu": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],  # other processes competing for the cores
    }
    report["pipeline_vs_trainer"] = bench_pipeline(device, args.rounds)
    print(json.dumps(report["pipeline_vs_trainer"], indent=2), flush=True)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        report["cifar10_load"] = bench_cifar_load(device, Path(work))
    print(json.dumps(report["cifar10_load"], indent=2), flush=True)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
