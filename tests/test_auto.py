"""`auto` settings: the batch, learning rate and execution chosen from the device (on a CPU: batch 64, lr 0.05, a trial thread a core)."""

from dataclasses import replace

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from searcher.config import validate
from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.execution.setup import speculates, with_auto_execution
from searcher.execution.sizing import (
    CONTEXT_BYTES,
    HEADROOM,
    Probe,
    generous_trial_bytes,
    measure_trial_bytes,
    peak_of_a_trial,
    share_gpu,
    trials_per_gpu,
)
from searcher.execution.threads import cpu_cores
from searcher.search.setup import make_plan, with_auto_training
from searcher.train.auto import auto_batch_size, auto_lr, choose_training, steps_per_epoch


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return validate(OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)), resolve=False))


def test_on_a_cpu_auto_is_todays_batch_64_at_lr_0_05_whatever_the_data():
    for images in (100, 1151, 40_000, 1_000_000):
        choice = choose_training("cpu", images, "auto", "auto")
        assert (choice.batch_size, choice.lr) == (64, 0.05)
    assert choose_training("cpu", 1151, "auto", "auto").describe() == "training: batch 64, lr 0.05 (auto for cpu: 18 steps/epoch)"


@pytest.mark.parametrize(
    "images,batch",
    [
        (40_000, 256),  # CIFAR-10's training split less validation: 157 steps (512 measured ~1 point worse)
        (16_384, 256),  # exactly 64 steps at 256
        (16_300, 256),  # 63.7 -> 64 steps: the short last batch is a step too
        (16_000, 128),  # 62.5 -> 63 steps at 256: too few
        (10_000, 128),
        (8_000, 64),  # 63 steps at 128
        (1_151, 64),  # digits: never below 64
        (10, 64),
    ],
)
def test_on_cuda_the_batch_is_the_largest_power_of_two_up_to_256_leaving_64_steps_an_epoch(images, batch):
    assert auto_batch_size("cuda", images) == batch
    assert steps_per_epoch(images, batch) >= 64 or batch == 64  # enough steps an epoch, or the floor
    assert batch == 256 or steps_per_epoch(images, 2 * batch) < 64  # and the largest such


def test_the_learning_rate_follows_the_batch_linearly():
    assert [auto_lr(b) for b in (64, 128, 256, 100)] == [0.05, 0.1, 0.2, 0.0781]
    choice = choose_training("cuda", 40_000, "auto", "auto")
    assert choice.describe() == "training: batch 256, lr 0.2 (auto for cuda: 157 steps/epoch)"


def test_set_values_win_and_an_auto_learning_rate_follows_a_set_batch():
    assert (choose_training("cuda", 40_000, 128, "auto").lr, choose_training("cuda", 40_000, "auto", 0.3).batch_size) == (0.1, 256)
    set_both = choose_training("cuda", 40_000, 100, 0.3)
    assert (set_both.batch_size, set_both.lr) == (100, 0.3) and "set" in set_both.describe()


def test_auto_training_is_resolved_before_the_plan_so_trial_keys_hold_numbers():
    digits = load_dataset(DatasetOptions("digits"))
    resolved, choice = with_auto_training(config("device=cpu"), len(digits.train))
    assert (resolved.train.batch_size, resolved.train.lr) == (64, 0.05) == (choice.batch_size, choice.lr)
    explicit = with_auto_training(config("device=cpu", "train.batch_size=64", "train.lr=0.05"), len(digits.train))[0]
    assert make_plan(resolved, digits) == make_plan(explicit, digits) == make_plan(config("device=cpu"), digits)


def test_execution_auto_on_a_cpu_runs_a_trial_a_core_in_threads_and_a_set_execution_is_kept():
    from searcher.execution.threads import torch_threads

    digits = load_dataset(DatasetOptions("digits"))
    with torch_threads(3):  # this process may use 3 threads (as OMP_NUM_THREADS=3 says), one trial on each
        chosen, line = with_auto_execution(config("device=cpu"), digits)
        cores = min(3, cpu_cores())
        if cores > 1:
            assert (chosen.execution.kind, chosen.execution.workers) == ("threads", cores)
            assert line == f"execution: auto → {cores} trial threads (cpu, {cores} cores, 1 torch thread a trial)"
        capped, _ = with_auto_execution(config("device=cpu", "execution.max_trials_on_cpu=1"), digits)
        assert capped.execution.kind == "serial"
        asked, _ = with_auto_execution(config("device=cpu", "execution.workers=5"), digits)
        assert (asked.execution.kind, asked.execution.workers) == ("threads", 5)
        _, line = with_auto_execution(config("device=cpu", "execution.workers=2", "execution.threads_per_trial=2"), digits)
        assert line.endswith("2 torch threads a trial)")  # the line says what each trial trains with
    with torch_threads(1):  # OMP_NUM_THREADS=1, or one core: serial, exactly execution=serial
        chosen, line = with_auto_execution(config("device=cpu"), digits)
        limited = f" of {cpu_cores()}: torch's thread limit, e.g. OMP_NUM_THREADS" if cpu_cores() > 1 else ""  # (the line names the limit)
        assert chosen.execution.kind == "serial" and line == f"execution: auto → serial (cpu, 1 core{limited})"
    kept, line = with_auto_execution(config("device=cpu", "execution=processes", "execution.workers=2"), digits)
    assert kept.execution.kind == "processes" and kept.execution.workers == 2 and line is None


def test_a_slurm_job_counts_the_cores_it_was_given_not_the_nodes(monkeypatch):
    """A cluster that does not bind tasks to cores shows a job every core of its node: SLURM_CPUS_PER_TASK counts."""
    from searcher.execution.threads import torch_threads

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert cpu_cores() == 1
    with torch_threads(4):
        chosen, _ = with_auto_execution(config("device=cpu"), load_dataset(DatasetOptions("digits")))
    assert chosen.execution.kind == "serial"


@pytest.mark.parametrize(
    "free_gib,trial_gib,cap,expected",
    [
        (80, 1.2, 4, 4),  # small trials on a big GPU: the cap
        (80, 1.2, 64, 53),  # floor(0.8 x 80 / 1.2)
        (10, 3, 4, 2),  # floor(0.8 x 10 / 3) = 2
        (10, 9, 4, 1),  # one fits
        (10, 20, 4, 1),  # not even one: still one (it fails as out_of_memory, recorded as such)
    ],
)
def test_trials_per_gpu_is_the_cap_or_what_fits_in_80_percent_of_the_free_memory(free_gib, trial_gib, cap, expected):
    assert HEADROOM == 0.8
    assert trials_per_gpu(int(free_gib * 2**30), int(trial_gib * 2**30), cap) == expected


def test_the_memory_probe_trains_the_largest_network_as_the_trainer_does():
    """The probe's step (which measures memory only on CUDA) runs on the CPU too: the largest network of the quick preset."""
    digits = load_dataset(DatasetOptions("digits"))
    plan = make_plan(config("device=cpu", "search=quick"), digits)
    largest = plan.family.baseline(plan.depth_cap, plan.width_cap, plan.input_shape)
    assert largest.widths == (plan.width_cap,) * plan.depth_cap
    probe = Probe("cpu", largest, plan.family, plan.input_shape, digits.num_classes, plan.train, digits.nbytes * plan.folds)
    data, model, _, _, best = peak_of_a_trial(probe, torch.device("cpu"))
    assert data.numel() == digits.nbytes * plan.folds and set(best) == set(model.state_dict())
    assert digits.nbytes == sum(s.images.nbytes + s.labels.nbytes for s in (digits.train, digits.val)) + 359 * (64 + 8)
    assert digits.test_reads == 0  # counting its bytes is not reading the test split


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op:UserWarning")  # the zero-class head below
def test_the_probe_process_answers_and_a_probe_that_fails_says_why_and_leaves_one_trial_per_gpu():
    """The probe's protocol (a worker-like process holds a trial's peak until measured) runs on a CPU too, measuring nothing."""
    digits = load_dataset(DatasetOptions("digits"))
    plan = make_plan(config("device=cpu", "search=quick"), digits)
    largest = plan.family.baseline(plan.depth_cap, plan.width_cap, plan.input_shape)
    probe = Probe("cpu", largest, plan.family, plan.input_shape, digits.num_classes, plan.train, digits.nbytes)
    assert measure_trial_bytes(probe) == (0, 0)
    share = share_gpu(replace(probe, classes=0), cap=4)  # no labels to draw: the probe's step fails in its process
    assert (share.trials_per_gpu, share.trial_bytes) == (1, None) and share.why.startswith("RuntimeError: ")
    assert share.describe() == f"could not measure a trial's memory: {share.why}"


def test_the_generous_bound_counts_context_data_weights_and_activations():
    digits = load_dataset(DatasetOptions("digits"))
    plan = make_plan(config("device=cpu", "search=quick"), digits)
    largest = plan.family.baseline(plan.depth_cap, plan.width_cap, plan.input_shape)
    probe = Probe("cpu", largest, plan.family, plan.input_shape, digits.num_classes, plan.train, digits.nbytes)
    bound = generous_trial_bytes(probe)
    assert bound > CONTEXT_BYTES + digits.nbytes
    bigger_batch = generous_trial_bytes(replace(probe, settings=replace(plan.train, batch_size=4 * plan.train.batch_size)))
    assert bigger_batch > bound and generous_trial_bytes(replace(probe, data_bytes=probe.data_bytes + 10**9)) == bound + 10**9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures GPU memory")
def test_on_a_gpu_the_generous_bound_is_above_what_the_probe_measures():
    """The bound may stand in for the probe only where it is an upper bound: the default search's largest network."""
    dataset = load_dataset(DatasetOptions("synthetic", train_size=20000, test_size=1000))
    plan = make_plan(config("device=cuda"), dataset)
    largest = plan.family.baseline(plan.depth_cap, plan.width_cap, plan.input_shape)
    probe = Probe("cuda", largest, plan.family, plan.input_shape, dataset.num_classes, plan.train, dataset.nbytes)
    measured, free = measure_trial_bytes(probe)
    print(f"probe {measured / 2**30:.2f} GiB, bound {generous_trial_bytes(probe) / 2**30:.2f} GiB, free {free / 2**30:.0f} GiB")
    assert 0 < measured < generous_trial_bytes(probe)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_auto_runs_trials_in_threads_a_stream_each():
    """Threads, not processes, share a GPU (docs/BENCHMARKS.md §5: their streams overlap, processes take turns)."""
    dataset = load_dataset(DatasetOptions("synthetic", train_size=20000, test_size=1000))
    chosen, line = with_auto_execution(config("device=cuda"), dataset)
    per_gpu = chosen.execution.trials_per_gpu
    assert chosen.execution.kind == "threads" and chosen.execution.workers == torch.cuda.device_count() * per_gpu > 1
    assert line is not None and line.startswith(f"execution: auto → {chosen.execution.workers} trial threads on cuda ({per_gpu} per GPU, a CUDA stream each")
    assert not speculates(chosen, chosen.execution.workers)


def test_guesses_fill_idle_slots_except_where_trials_share_a_gpu():
    assert speculates(config("device=cpu", "execution=processes", "execution.workers=2"), 2)  # cores compute on their own
    assert not speculates(config("device=cuda", "execution=processes"), 4)  # 4 trials time-slice one GPU
    assert speculates(config("device=cuda", "execution=processes"), 1)  # one trial per GPU
    assert speculates(config("device=cuda", "execution=submitit"), 4)  # a job, a GPU
    assert not speculates(config("device=cpu", "execution=processes", "execution.speculate=false"), 2)
    assert speculates(config("device=cuda", "execution=processes", "execution.speculate=true"), 4)
    assert not speculates(config("device=cuda", "execution=threads"), 4)  # their streams overlap, yet a guess takes a share


def test_an_epoch_of_a_small_training_split_is_several_passes_and_larger_splits_keep_one():
    """96 table rows at batch 64 are 2 steps: too few for the stability rule and the plateau schedule, which count
    epochs (iris stopped at 76.7% test). An epoch there is 4 passes, 8 steps; digits' 18 steps stay one pass."""
    from pathlib import Path

    from searcher.model.family import LayerStack
    from searcher.model.mlp import MLP
    from searcher.train.auto import epoch_passes
    from searcher.train.trainer import TrainSettings, Trial

    assert [epoch_passes(rows, 64, 8) for rows in (96, 300, 449, 513, 1150)] == [4, 2, 1, 1, 1]
    line = choose_training("cpu", 96, "auto", 0.003, 8).describe()
    assert line == "training: batch 64 (auto for cpu: 8 steps/epoch, 4 passes over the data: train.min_epoch_steps), lr 0.003 (set)"
    settings = TrainSettings(optimizer="adamw", lr=0.003, batch_size=64)
    assert "passes" not in settings.to_dict() and replace(settings, passes=4).to_dict()["passes"] == 4  # (one pass: keys as before)

    iris = load_dataset(DatasetOptions("table", path=Path("sklearn:iris"), target="target"))
    plan = make_plan(config("+dataset=table", "dataset.path=sklearn:iris", "dataset.target=target"), iris)
    assert len(iris.train) == 96 and plan.train.passes == 4 and make_plan(config(), load_dataset(DatasetOptions("digits"))).train.passes == 1
    trial = Trial(LayerStack((8,)), DeviceData(iris, torch.device("cpu")), plan.train, 0, None, None, MLP(), plan.metric)
    trial.epoch()
    assert (trial.steps, trial.images_seen) == (8, 4 * 96)
