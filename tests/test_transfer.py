"""Stage 5: which candidates are probed, how they are ranked, and the probe itself on a class-split digits task."""

import math

import pytest
import torch
from conftest import FakeRunner, fake_result, make_plan, memory_studies

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.model.spec import LayoutPolicy
from searcher.search import run_search
from searcher.search.plan import TransferPlan
from searcher.search.stages.transfer import TransferStage, rank, select_sources, verdict
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.linear_probe import ProbeError, ProbeSettings, probe_trial
from searcher.train.trainer import TrainSettings, train_trial

LAYOUT = LayoutPolicy(input_size=8)
WEIGHTS = {"w": torch.zeros(1)}  # selection only needs to know the weights exist


def outcome(width: int, depth: int, score: float, best_epoch: int, seed: int = 0, stage: str = "depth", status: str = "ok") -> TrialOutcome:
    request = TrialRequest(stage, f"w{width} d{depth}", LAYOUT.baseline(depth, width), TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64), seed, "fake")
    result = fake_result(score, epochs=best_epoch + 3)
    result.best_epoch = best_epoch
    result.state = WEIGHTS
    return TrialOutcome(request, status, result)


def test_selection_takes_the_top_k_distinct_candidates_then_the_longest_trained():
    outcomes = [
        outcome(16, 2, 0.90, best_epoch=30),  # the longest-trained, but low in validation
        outcome(32, 2, 0.95, best_epoch=10),
        outcome(32, 2, 0.96, best_epoch=12, seed=1),  # same candidate, another seed: represented once, by its best
        outcome(64, 2, 0.94, best_epoch=8),
        outcome(16, 3, 0.93, best_epoch=20),
        outcome(64, 3, 0.99, best_epoch=5, status="failed"),  # never chosen
    ]
    sources = select_sources(outcomes, top_k=2, longest=1)
    assert [(s.outcome.request.arch.describe(), s.outcome.score) for s in sources] == [("w32-32 d2", 0.96), ("w64-64 d2", 0.94), ("w16-16 d2", 0.90)]
    assert [s.reason for s in sources] == ["top 2 in validation", "top 2 in validation", "longest trained"]
    assert sources[2].epochs == 30


def test_selection_skips_trials_without_weights_in_memory():
    kept = outcome(16, 2, 0.9, best_epoch=3)
    resumed = outcome(32, 2, 0.95, best_epoch=3)
    resumed.result.state = None
    assert [s.outcome for s in select_sources([kept, resumed], top_k=3, longest=1)] == [kept]


def test_rankings_and_verdict_say_whether_the_best_in_validation_transfers_best():
    sources = select_sources([outcome(16, 2, 0.90, 30), outcome(32, 2, 0.97, 6), outcome(64, 2, 0.95, 9)], top_k=2, longest=1)
    ranked = rank([(s, acc) for s, acc in zip(sources, [0.80, 0.85, 0.91], strict=True)])
    assert [(r.val_rank, r.transfer_rank) for r in ranked] == [(1, 3), (2, 2), (3, 1)]
    text, numbers = verdict(ranked)
    assert "is NOT the best for transfer" in text and numbers["best_for_transfer"] == "w16 d2" and numbers["same"] == 0
    text, numbers = verdict(rank([(s, acc) for s, acc in zip(sources, [0.95, 0.85, 0.80], strict=True)]))
    assert "is also the best for transfer" in text and numbers["same"] == 1


class WeightsRunner(FakeRunner):
    """FakeRunner whose trials keep (token) weights, so the transfer stage has something to probe;
    shallower networks kept weights from later epochs (trained longer)."""

    def run_trials(self, stage, requests):
        outcomes = super().run_trials(stage, requests)
        for o in outcomes:
            if o.result is not None:
                o.result.state = WEIGHTS
                o.result.best_epoch = 40 - 5 * o.request.arch.depth
        return outcomes


def test_the_controller_runs_transfer_last_and_ranks_the_probes():
    def score(request):
        if request.source is not None:  # a probe: the deeper the network, the worse it transfers here
            return 0.9 - 0.05 * request.arch.depth
        return 0.80 + 0.04 * request.arch.depth - 0.0001 * request.arch.widths[-1]

    plan = make_plan(transfer=TransferPlan("target", top_k=2, longest=1), depth_cap=4)
    runner = WeightsRunner(score)
    result = run_search(plan, memory_studies(plan), runner)
    assert runner.stages == ["baseline", "width", "depth", "regularization", "final", "transfer"]
    assert result.final.stage == "final" and result.transfer is result.stages[-1]
    probes = [r for r in runner.requests if r.stage == "transfer"]
    assert len(probes) == 3 and all(r.data_identity == "target" and r.source_state is WEIGHTS for r in probes)
    assert len({r.key for r in probes}) == 3 and not {r.key for r in probes} & {r.source for r in probes}
    assert min(r.arch.depth for r in probes) == 2  # the longest-trained: the baseline depth
    transfer = result.transfer
    assert transfer.winner.arch.depth == 2
    assert transfer.metrics["best_in_validation_is_best_for_transfer"] == 0.0
    assert "is NOT the best for transfer" in transfer.decisions[-1].reason
    assert sum(1 for d in transfer.trial_decisions.values() if d == "selected") == 1


def test_transfer_stage_with_nothing_in_memory_skips_instead_of_failing():
    plan = make_plan(transfer=TransferPlan("target", top_k=3, longest=1))
    stage = TransferStage(plan, memory_studies(plan).open("transfer"), [])
    assert stage.next_trials([]) == []
    result = stage.conclude([])
    assert result.decisions[0].decision == "skipped" and math.isinf(result.score)


@pytest.fixture(scope="module")
def split_digits():
    cpu = torch.device("cpu")
    source = DeviceData(load_dataset(DatasetOptions("digits", classes=(0, 1, 2, 3, 4))), cpu)
    target = DeviceData(load_dataset(DatasetOptions("digits", classes=(5, 6, 7, 8, 9))), cpu)
    return source, target


def test_a_linear_probe_on_frozen_features_transfers_to_unseen_digit_classes(split_digits):
    source, target = split_digits
    arch = LAYOUT.baseline(2, 16)
    trained = train_trial(arch, source, TrainSettings(optimizer="sgd", lr=0.05, batch_size=64), seed=0)
    probe = probe_trial(arch, trained.state, target, ProbeSettings(), seed=0)
    assert probe.best_val_acc > 0.75  # chance is 0.2: features learnt on 0-4 separate 5-9
    again = probe_trial(arch, trained.state, target, ProbeSettings(), seed=0)
    assert again.best_val_acc == probe.best_val_acc and len(again.history) == len(probe.history)
    assert probe.behavior in ("stable", "capped", "overfitting") and len(probe.history) >= ProbeSettings().stability.min_epochs
    assert trained.state["head.weight"].shape[0] == 5  # the source head is not used: the probe has its own


def test_a_probe_refuses_images_with_other_channels(split_digits):
    source, _ = split_digits
    arch = LAYOUT.baseline(1, 4)
    from searcher.model.build import build_model

    rgb_state = build_model(arch, 3, 5).state_dict()
    with pytest.raises(ProbeError, match="3-channel"):
        probe_trial(arch, rgb_state, source, ProbeSettings(), seed=0)


def test_transfer_without_a_target_is_refused_before_anything_trains(tmp_path):
    from conftest import run_cli

    result = run_cli("search.transfer.enabled=true", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "search.transfer.dataset" in result.stderr and "classes: [5,6,7,8,9]" in result.stderr
    assert not (tmp_path / "m.db").exists()


def test_transfer_settings_are_range_checked():
    from searcher.config import ConfigError, validate

    target = {"name": "digits", "classes": [5, 6, 7, 8, 9]}
    config = validate({"search": {"transfer": {"enabled": True, "dataset": target, "top_k": 2, "longest": 0}}})
    assert config.search.transfer.dataset.classes == [5, 6, 7, 8, 9] and config.search.transfer.top_k == 2
    with pytest.raises(ConfigError, match=r"search\.transfer\.top_k=0"):
        validate({"search": {"transfer": {"enabled": True, "dataset": target, "top_k": 0}}})
    with pytest.raises(ConfigError, match=r"search\.transfer\.dataset\.classes"):
        validate({"search": {"transfer": {"enabled": True, "dataset": {"name": "digits", "classes": [5]}}}})
