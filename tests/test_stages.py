"""Every rule of docs/design.md §1, driven by a fake evaluator (no training)."""

import math

import pytest
from conftest import FakeRunner, arch_score, make_plan, memory_studies

from searcher.search import run_search
from searcher.search.controller import run_stage
from searcher.search.stages import BaselineStage, DepthStage, FinalStage, RegularizationStage, SearchFailed, WidthStage


def run_stages_until(plan, runner, last):
    studies = memory_studies(plan)
    previous = None
    for stage_type in (BaselineStage, WidthStage, DepthStage, RegularizationStage, FinalStage):
        stage = stage_type(plan, studies.open(stage_type.name)) if previous is None else stage_type(plan, studies.open(stage_type.name), previous)
        previous, _ = run_stage(stage, runner)
        if stage_type is last:
            return previous


def widths_tried(runner, stage):
    return [r.arch.widths[0] for r in runner.requests if r.stage == stage]


def test_width_keeps_the_smallest_width_the_best_does_not_beat_beyond_its_floor():
    scores = {16: 0.90, 32: 0.950, 64: 0.953, 128: 0.954}
    runner = FakeRunner(arch_score(lambda a: scores[a.widths[0]] if a.depth == 2 else 0.0))
    result = run_stages_until(make_plan(width_tolerance=0.005, width_patience=5), runner, WidthStage)
    assert widths_tried(runner, "width") == [32, 64, 128]
    assert result.winner.arch.widths == (32, 32)  # 64 and 128 beat 32 by less than the 0.005 floor
    assert result.trial_decisions[[r for r in runner.requests if r.arch.widths[0] == 32][0].key] == "selected"
    reasons = [e.reason for e in result.decisions]
    assert any("w32 d2 vs w16 d2: right on 50 images the other missed, wrong on 0" in r for r in reasons)
    assert any("w128 d2 vs w32 d2: right on 4 images the other missed, wrong on 0 (p = 0.12" in r for r in reasons)
    compared = [r.split(":")[0] for r in reasons if " vs " in r.split(":")[0]]
    assert len(compared) == len(set(compared)), f"one comparison logged twice: {reasons}"  # (w32 vs w16 was: better, then rejected)


def test_width_stops_after_patience_candidates_without_improvement():
    scores = {16: 0.90, 32: 0.95, 64: 0.94, 128: 0.99}
    runner = FakeRunner(arch_score(lambda a: scores[a.widths[0]]))
    result = run_stages_until(make_plan(width_patience=1), runner, WidthStage)
    assert widths_tried(runner, "width") == [32, 64]  # 128 never tried: 64 did not improve
    assert result.winner.arch.widths[0] == 32


def test_depth_adds_layers_while_they_help_and_finds_the_new_width_by_experiment():
    def score(arch):
        if arch.depth == 2:
            return 0.90
        if arch.depth == 3:
            return 0.93 if arch.widths[-1] == 32 else 0.92
        return 0.925  # depth 4 is worse than depth 3: growth stops

    runner = FakeRunner(arch_score(score))
    plan = make_plan(width_cap=64, depth_cap=6, new_layer_factors=(0.5, 1.0, 2.0))  # widening never helps here
    result = run_stages_until(plan, runner, DepthStage)
    depth_requests = [r for r in runner.requests if r.stage == "depth"]
    assert sorted(r.arch.widths[-1] for r in depth_requests if r.arch.depth == 3) == [8, 16, 32]
    assert sorted(r.arch.widths[-1] for r in depth_requests if r.arch.depth == 4) == [16, 32, 64]
    assert result.winner.arch.widths == (16, 16, 32)
    verdicts = [e.decision for e in result.decisions]
    assert verdicts == ["accepted", "rejected", "selected"]
    assert "did not help" in result.decisions[-1].reason


def test_depth_growth_needs_more_than_min_improvement():
    runner = FakeRunner(arch_score(lambda a: 0.90 + 0.001 * (a.depth - 2)))
    result = run_stages_until(make_plan(width_cap=16, depth_min_improvement=0.002), runner, DepthStage)
    assert result.winner.arch.depth == 2


def test_depth_cap_ends_the_stage():
    runner = FakeRunner(arch_score(lambda a: 0.5 + 0.05 * a.depth))
    result = run_stages_until(make_plan(width_cap=16, depth_cap=4), runner, DepthStage)
    assert result.winner.arch.depth == 4
    assert max(r.arch.depth for r in runner.requests) == 4
    assert "depth cap 4" in result.decisions[-1].reason


def test_regularization_starts_after_depth_with_the_unregularized_winner_first():
    runner = FakeRunner(arch_score(lambda a: 0.9 + 0.01 * a.depth - a.dropout * 0.01))
    plan = make_plan(width_cap=16, depth_cap=3, regularization_trials=3, warm_start=False)  # warm: see test_growth.py
    studies = memory_studies(plan)
    result = run_search(plan, studies, runner)
    order = [r.stage for r in runner.requests]
    assert order.index("regularization") > max(i for i, s in enumerate(order) if s == "depth")
    reg = [r for r in runner.requests if r.stage == "regularization"]
    assert len(reg) == 3  # the unregularized winner is told to the study, not retrained
    regularization = result.stages[3]
    assert regularization.winner.arch == result.stages[2].winner.arch  # dropout only hurts here
    trials = studies.open("regularization").trials
    assert len(trials) == 4 and trials[0].params == {"weight_decay": 0.0, "dropout": 0.0}
    assert trials[0].value == pytest.approx(result.stages[2].score)


def test_final_stage_is_the_only_one_that_reads_test():
    runner = FakeRunner(arch_score(lambda a: 0.9))
    plan = make_plan(width_cap=32, depth_cap=3, final_seeds=3)
    result = run_search(plan, memory_studies(plan), runner)
    assert [r.stage for r in runner.requests if r.evaluate_test] == ["final"] * 3
    assert all(not r.evaluate_test for r in runner.requests if r.stage != "final")
    assert len({r.seed for r in runner.requests if r.stage == "final"}) == 3
    assert result.final.metrics["test_acc"] == pytest.approx(0.89)
    assert runner.stages == ["baseline", "width", "depth", "regularization", "final"]


def test_decisions_are_a_deterministic_function_of_the_history():
    def score(request):
        return 0.8 + 0.02 * request.arch.depth + 0.0001 * request.arch.widths[-1] + 0.01 * request.train.augment

    plans = [make_plan(seed=3), make_plan(seed=3)]
    runs = [run_search(plan, memory_studies(plan), FakeRunner(score)) for plan in plans]
    assert [e.to_dict() for e in runs[0].decisions] == [e.to_dict() for e in runs[1].decisions]
    assert [o.request.key for o in runs[0].outcomes] == [o.request.key for o in runs[1].outcomes]


def test_failed_trials_never_win_and_the_search_goes_on():
    runner = FakeRunner(arch_score(lambda a: 0.5 + 0.1 * a.depth), fail=lambda r: r.arch.depth == 3 and r.arch.widths[-1] == 32)
    plan = make_plan(width_cap=32, width_patience=1, depth_cap=3)
    result = run_search(plan, memory_studies(plan), runner)
    depth = result.stages[2]
    assert result.stages[1].winner.arch.widths == (16, 16)
    assert result.final.winner.arch.depth == 3 and result.final.winner.arch.widths[-1] != 32
    assert "failed" in depth.trial_decisions.values()


def test_a_failed_baseline_stops_the_search_with_a_clear_error():
    runner = FakeRunner(arch_score(lambda a: 0.9), fail=lambda r: True)
    plan = make_plan()
    with pytest.raises(SearchFailed, match="baseline"):
        run_search(plan, memory_studies(plan), runner)


def test_repeats_average_seeds_per_candidate():
    runner = FakeRunner(lambda r: 0.9 + 0.01 * r.repeat)
    plan = make_plan(repeats=3, width_cap=16, depth_cap=2, regularization_trials=0, final_seeds=1)
    result = run_search(plan, memory_studies(plan), runner)
    baseline = [r for r in runner.requests if r.stage == "baseline"]
    assert sorted(r.seed for r in baseline) == [0, 1, 2]
    assert result.stages[0].score == pytest.approx(0.91)
    assert not math.isinf(result.final.score)
