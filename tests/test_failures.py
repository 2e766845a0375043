"""Failing trials do not end a search; a streak of them does, with a clear message (real MLflow and Optuna, in process)."""

import math

import pytest
from conftest import REPO, search_runs
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from rich.console import Console

import searcher.execution.work as trial_work
from searcher.app import run
from searcher.config import validate
from searcher.train import StabilityRule, TrainSettings, train_trial
from searcher.train.checkpoint import Checkpointing


def quick_config(uri: str, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["search=quick", f"tracking.uri={uri}", "search.name=faults", *overrides])
    return validate(OmegaConf.to_container(cfg, resolve=False))


def test_a_raising_and_a_diverging_trial_are_recorded_and_the_search_completes(tmp_path, monkeypatch):
    real = trial_work.train_trial

    def faulty(arch, data, settings, seed, **kwargs):
        if arch.depth == 3 and arch.widths[-1] == 32:
            raise RuntimeError("injected fault")
        if arch.depth == 3 and arch.widths[-1] == 16:
            return real(arch, data, TrainSettings(optimizer="sgd", lr=math.inf, batch_size=64, stability=settings.stability), seed, **kwargs)
        return real(arch, data, settings, seed, **kwargs)

    monkeypatch.setattr(trial_work, "train_trial", faulty)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    keep_w16 = ("search.width.ties=keep_smaller", "search.width.tolerance=1.0")  # so the depth stage tries d3 +w16 and d3 +w32
    outcome = run(quick_config(uri, *keep_w16), dataset_chosen=False, console=Console(quiet=True))
    assert outcome.exit_code == 0 and outcome.test_acc is not None
    trials = {r.info.run_name.removesuffix(" (warm)"): r for r in search_runs(uri, "tags.`searcher.role` = 'trial'")}
    raised, diverged = trials["d3 +w32"], trials["d3 +w16"]
    assert raised.data.tags["searcher.decision"] == "failed" and "RuntimeError: injected fault" in raised.data.tags["searcher.error"]
    assert diverged.data.tags["searcher.decision"] == "failed" and diverged.data.tags["searcher.behavior"] == "diverged"
    from mlflow.tracking import MlflowClient

    assert "traceback.txt" in {a.path for a in MlflowClient(uri).list_artifacts(raised.info.run_id)}


def test_a_streak_of_failures_stops_the_search_with_a_message(tmp_path, monkeypatch):
    real = trial_work.train_trial

    def failing_after_baseline(arch, data, settings, seed, **kwargs):
        if arch.widths != (16, 16):
            raise MemoryError("injected")
        return real(arch, data, settings, seed, **kwargs)

    monkeypatch.setattr(trial_work, "train_trial", failing_after_baseline)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    console = Console(record=True, width=200)
    outcome = run(quick_config(uri, "search.max_consecutive_failures=2"), dataset_chosen=False, console=console)
    assert outcome.exit_code == 1
    assert "2 trials in a row failed" in console.export_text()
    assert {r.info.status for r in search_runs(uri, "tags.`searcher.role` = 'search'")} == {"FAILED"}
    assert not [r for r in search_runs(uri) if r.info.status == "RUNNING"]


def test_an_interrupted_trial_resumes_from_its_checkpoint_and_ends_as_if_uninterrupted(tmp_path):
    from searcher.data import DatasetOptions, DeviceData, load_dataset
    from searcher.model import LayoutPolicy

    data = DeviceData(load_dataset(DatasetOptions("digits")), __import__("torch").device("cpu"))
    spec = LayoutPolicy(input_size=8).baseline(2, 8)
    settings = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, augment=1.0, stability=StabilityRule(window=3, min_epochs=6, max_epochs=6))
    uninterrupted = train_trial(spec, data, settings, seed=1)

    checkpoint = Checkpointing(tmp_path / "trial.pt", every_seconds=0)

    def crash_at_epoch_4(record):
        if record.epoch == 4:
            raise KeyboardInterrupt  # the process dies after epoch 4 was trained, before its checkpoint
        return False

    with pytest.raises(KeyboardInterrupt):
        train_trial(spec, data, settings, seed=1, on_epoch=crash_at_epoch_4, checkpoint=checkpoint)
    assert checkpoint.path.exists()
    resumed = train_trial(spec, data, settings, seed=1, checkpoint=Checkpointing(tmp_path / "trial.pt", every_seconds=0))
    assert [r.val_loss for r in resumed.history] == [r.val_loss for r in uninterrupted.history]
    assert resumed.best_val_acc == uninterrupted.best_val_acc
    assert not checkpoint.path.exists()  # removed once the trial finished


def test_cuda_out_of_memory_is_recorded_as_out_of_memory_and_the_search_goes_on(tmp_path, monkeypatch):
    import torch

    real = trial_work.train_trial

    def out_of_memory_for_wide(arch, data, settings, seed, **kwargs):
        if max(arch.widths) >= 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(arch, data, settings, seed, **kwargs)

    monkeypatch.setattr(trial_work, "train_trial", out_of_memory_for_wide)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    settings = ("search.regularization.trials=0", "search.final.seeds=1", "search.depth.cap=3")
    outcome = run(quick_config(uri, *settings), dataset_chosen=False, console=Console(quiet=True))
    assert outcome.exit_code == 0
    wide = [r for r in search_runs(uri, "tags.`searcher.role` = 'trial'") if "32" in r.data.params["arch.widths"]]
    assert wide and all(r.data.tags["searcher.error"].startswith("out_of_memory:") for r in wide)
    assert all(r.data.tags["searcher.decision"] == "failed" for r in wide)
