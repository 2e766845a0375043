"""Paired evidence: McNemar's exact test on constructed correctness vectors, and the stage rules built on it."""

import math
from dataclasses import replace

import pytest
import torch
from conftest import FakeRunner, Interrupted, ReplayRunner, arch_score, make_plan, memory_studies
from scipy.stats import binomtest

from searcher.search import run_search
from searcher.search.evidence import compare, mcnemar_p_value, paired_t_p_value, unpack
from searcher.search.plan import RegularizerRange
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.trainer import TrainResult, TrainSettings, pack_bits, pack_losses


def test_mcnemar_exact_p_values_match_the_binomial_test():
    assert mcnemar_p_value(0, 0) == 1.0
    assert mcnemar_p_value(6, 0) == pytest.approx(2 / 64)  # six discordant images, all one way
    assert mcnemar_p_value(9, 3) == pytest.approx(2 * (1 + 12 + 66 + 220) / 4096)  # the example: p = 0.146
    assert mcnemar_p_value(3, 9) == mcnemar_p_value(9, 3)
    assert mcnemar_p_value(5, 5) == 1.0
    for wins, losses in ((30, 12), (400, 350), (1200, 1100), (2, 40)):
        assert mcnemar_p_value(wins, losses) == pytest.approx(binomtest(wins, wins + losses, 0.5).pvalue, rel=1e-9)


def outcome(candidate: str, repeat: int, correct: list[bool], losses: list[float] | None = None, smoothing: float = 0.0) -> TrialOutcome:
    train = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, label_smoothing=smoothing)
    request = TrialRequest("width", candidate, arch=None, train=train, seed=repeat, data_identity="d", repeat=repeat)  # type: ignore[arg-type]
    bits = torch.tensor(correct)
    per_image = pack_losses(torch.tensor(losses)) if losses is not None else None
    result = TrainResult("stable", (), float(bits.float().mean()), 1, 0.0, 0.0, val_correct=pack_bits(bits), val_losses=per_image)
    return TrialOutcome(request, "ok", result)


def test_packed_bits_round_trip_for_any_length():
    for n in (1, 7, 8, 9, 287):
        correct = torch.rand(n, generator=torch.Generator().manual_seed(n)) < 0.7
        assert unpack(pack_bits(correct), n).tolist() == correct.tolist()


def test_compare_counts_only_the_discordant_images_and_adds_them_over_paired_seeds():
    a = [True] * 10 + [True, True, False, True] + [False] * 2
    b = [True] * 10 + [False, False, True, False] + [False] * 2
    one = compare("a", [outcome("a", 0, a)], "b", [outcome("b", 0, b)], floor=0.0, alpha=0.05, seeds=1)
    assert (one.wins, one.losses, one.pairs) == (3, 1, 1)
    assert one.effect == pytest.approx(2 / 16)
    assert one.p_value == pytest.approx(mcnemar_p_value(3, 1)) and one.verdict == "tie"
    assert "a vs b: right on 3 images the other missed, wrong on 1 (p = 0.62, 1 seed" in one.describe()
    single = compare("b", [outcome("b", 0, b)], "a", [outcome("a", 0, a)], floor=0.0, alpha=0.05, seeds=1)
    assert "b vs a: right on 1 image the other missed, wrong on 3 " in single.describe()
    two = compare("a", [outcome("a", 0, a), outcome("a", 1, a)], "b", [outcome("b", 0, b), outcome("b", 1, b)], 0.0, 0.05, seeds=2)
    assert (two.wins, two.losses, two.pairs) == (6, 2, 2)


def test_a_real_two_point_gain_on_287_images_is_accepted_and_one_image_is_not():
    images = 287
    base = [True] * 280 + [False] * 7
    gain = [True] * 286 + [False] * 1  # six more images right: 2.1 points
    one_image = [True] * 281 + [False] * 6  # one more image right: 0.35 points
    real = compare("big", [outcome("big", 0, gain)], "small", [outcome("small", 0, base)], floor=0.005, alpha=0.05, seeds=1)
    assert (real.wins, real.losses) == (6, 0) and real.verdict == "better"
    noise = compare("big", [outcome("big", 0, one_image)], "small", [outcome("small", 0, base)], floor=0.002, alpha=0.05, seeds=1)
    assert (noise.wins, noise.losses) == (1, 0) and noise.verdict == "tie"
    assert noise.inconclusive  # 0.35 points is above the 0.002 floor but p = 1: worth another seed
    assert len(base) == images


def test_on_a_saturated_split_the_per_image_losses_decide_when_accuracy_cannot():
    right = [True] * 283 + [False] * 4  # both get the same four images wrong: no discordant image at all
    generator = torch.Generator().manual_seed(0)
    confident = (0.02 + 0.01 * torch.rand(287, generator=generator)).tolist()
    hesitant = [x + 0.03 for x in confident]  # right on the same images, less sure of each
    better = compare("wide", [outcome("wide", 0, right, confident)], "narrow", [outcome("narrow", 0, right, hesitant)], 0.005, 0.05, 1)
    assert (better.wins, better.losses, better.p_value) == (0, 0, 1.0)
    assert better.loss_effect == pytest.approx(-0.03, abs=1e-3) and better.loss_p_value < 1e-6
    assert better.verdict == "better" and "better by validation loss" in better.describe()
    assert compare("narrow", [outcome("narrow", 0, right, hesitant)], "wide", [outcome("wide", 0, right, confident)], 0.005, 0.05, 1).verdict == "worse"
    noisy = [x + (0.05 if i % 2 else -0.05) for i, x in enumerate(confident)]  # as often less sure as more: no mean shift
    assert compare("a", [outcome("a", 0, right, noisy)], "b", [outcome("b", 0, right, confident)], 0.005, 0.05, 1).verdict == "tie"
    # label smoothing shifts every loss: candidates trained with different smoothing are compared on accuracy alone
    smoothed = compare("s", [outcome("s", 0, right, confident, 0.1)], "n", [outcome("n", 0, right, hesitant)], 0.005, 0.05, 1)
    assert math.isnan(smoothed.loss_p_value) and smoothed.verdict == "tie"


def test_paired_t_p_value_matches_scipy_for_large_samples():
    from scipy.stats import ttest_1samp

    differences = torch.randn(500, generator=torch.Generator().manual_seed(1)).numpy() * 0.1 + 0.01
    assert paired_t_p_value(differences) == pytest.approx(ttest_1samp(differences, 0).pvalue, rel=0.02)
    assert paired_t_p_value(differences * 0) == 1.0


def test_a_side_that_failed_loses_without_a_test():
    ok = outcome("a", 0, [True, False])
    failed = TrialOutcome(ok.request, "failed", None, error="boom")
    assert compare("a", [ok], "b", [failed], 0.0, 0.05, 1).verdict == "better"
    assert compare("b", [failed], "a", [ok], 0.0, 0.05, 1).verdict == "worse"
    assert math.isnan(compare("b", [failed], "a", [ok], 0.0, 0.05, 1).p_value)


# --- the stage rules, on a fake evaluator that scores 287 validation images (digits' validation split) ---


def test_depth_accepts_a_two_point_gain_and_rejects_a_one_image_gain_on_287_images():
    def score(gain_images):
        return lambda a: (280 + (gain_images if a.depth == 3 else 0) - (50 if a.depth > 3 else 0)) / 287

    plan = make_plan(width_cap=16, depth_cap=4, max_repeats=1)  # 2 children per round (w8, w16: capped): the best of 2 needs p < 0.05 / 2
    real = run_search(plan, memory_studies(plan), FakeRunner(arch_score(score(7)), images=287))
    assert real.stages[2].winner.arch.depth == 3
    accepted = next(e for e in real.stages[2].decisions if e.decision == "accepted")
    assert "right on 7 images the other missed, wrong on 0 (p = 0.016" in accepted.reason and "needs p < 0.025, the best of 2" in accepted.reason
    assert accepted.numbers["wins"] == 7 and accepted.numbers["p_value"] == pytest.approx(2 / 128)
    lucky = run_search(plan, memory_studies(plan), FakeRunner(arch_score(score(6)), images=287))
    assert lucky.stages[2].winner.arch.depth == 2  # p = 0.031 would do for one child; the best of 2 is held to 0.025
    noise = run_search(plan, memory_studies(plan), FakeRunner(arch_score(score(1)), images=287))
    assert noise.stages[2].winner.arch.depth == 2
    assert "not significant" in next(e for e in noise.stages[2].decisions if e.decision == "rejected").reason


def test_an_inconclusive_comparison_asks_for_one_more_seed_of_both():
    # Depth 3 is 4 images better on every seed: p = 0.125 on one seed, 0.0078 on two (8 vs 0; the best of 2 children
    # needs p < 0.025), so the second seed decides.
    runner = FakeRunner(arch_score(lambda a: (280 + (4 if a.depth == 3 else 0) - (50 if a.depth > 3 else 0)) / 287), images=287)
    plan = make_plan(width_cap=16, depth_cap=4, max_repeats=3, warm_start=False)
    result = run_search(plan, memory_studies(plan), runner)
    depth = [r for r in runner.requests if r.stage == "depth"]
    extra = [r for r in depth if r.repeat > 0]
    assert sorted((r.candidate, r.repeat) for r in extra) == [("d3 +w8", 1), ("w16 d2", 1)]  # one more seed of both (ties: the narrower child)
    assert result.stages[2].winner.arch.depth == 3
    accepted = next(e for e in result.stages[2].decisions if e.decision == "accepted")
    assert accepted.numbers["pairs"] == 2 and accepted.numbers["wins"] == 8


def test_extra_seeds_stop_at_max_repeats():
    runner = FakeRunner(arch_score(lambda a: (280 + (1 if a.depth == 3 else 0) - (50 if a.depth > 3 else 0)) / 287), images=287)
    plan = make_plan(width_cap=16, depth_cap=4, max_repeats=3, warm_start=False)
    result = run_search(plan, memory_studies(plan), runner)
    assert max(r.repeat for r in runner.requests if r.stage == "depth") == 2  # 1 vs 0, 2 vs 0, 3 vs 0: never significant
    assert result.stages[2].winner.arch.depth == 2


def test_a_resumed_search_with_adaptive_repeats_decides_identically():
    def score(request):  # seeds disagree a little, so comparisons are inconclusive and extra seeds are asked for
        return (278 + request.arch.depth + (request.seed % 3) + (2 if request.arch.widths[0] == 32 else 0)) / 287

    plan = make_plan(width_cap=32, depth_cap=4, max_repeats=3, regularization_trials=2)
    whole = run_search(plan, memory_studies(plan), ReplayRunner(score, {}))
    total = len(whole.outcomes)
    assert any(o.request.repeat > 0 for o in whole.outcomes)
    for cut in (1, total // 3, total // 2, total - 2):
        recorded: dict[str, TrialOutcome] = {}
        studies = memory_studies(plan)
        with pytest.raises(Interrupted):
            run_search(plan, studies, ReplayRunner(score, recorded, stop_after=cut))
        resumed = run_search(plan, studies, ReplayRunner(score, recorded))
        assert [e.to_dict() for e in resumed.decisions] == [e.to_dict() for e in whole.decisions]
        assert [o.request.key for o in resumed.outcomes] == [o.request.key for o in whole.outcomes]


def test_with_ties_grow_a_larger_network_that_scores_no_lower_is_kept_unless_the_evidence_is_against_it():
    def score(gain_images):
        return lambda a: (280 + (gain_images if a.depth == 3 else 0) - (50 if a.depth > 3 else 0)) / 287

    plan = make_plan(width_cap=16, depth_cap=4, max_repeats=1, depth_ties="grow", depth_select="deepest")
    tie = run_search(plan, memory_studies(plan), FakeRunner(arch_score(score(1)), images=287))
    assert tie.stages[2].winner.arch.depth == 3  # one image better: not significant, but a tie grows
    assert "a tie grows (search.depth.ties=grow): add it" in next(e for e in tie.stages[2].decisions if e.decision == "accepted").reason
    lower = run_search(plan, memory_studies(plan), FakeRunner(arch_score(score(-1)), images=287))
    assert lower.stages[2].winner.arch.depth == 2  # one image worse: a tie that scores lower does not grow


def test_after_growing_on_ties_the_shallowest_network_the_deepest_does_not_beat_is_kept():
    # Each layer up to depth 5 adds one image per seed: every step is a tie (3 images over 3 seeds, p = 0.25),
    # so ties grow to the cap; depth 5 then beats depth 2 (6 images on 2 seeds, p = 0.03: conclusive, no third)
    # and depth 3 (6 on 3 seeds) beyond noise, but not depth 4 (3 on 3 seeds, p = 0.25): depth 4 is kept.
    def score(request):
        return (280 + request.arch.depth - 2) / 287

    plan = make_plan(width_cap=16, depth_cap=5, max_repeats=3, depth_ties="grow", new_layer_factors=(1.0,))
    result = run_search(plan, memory_studies(plan), FakeRunner(score, images=287))
    depth = result.stages[2]
    assert depth.winner.arch.depth == 4
    trims = [e for e in depth.decisions if e.decision == "parsimony"]
    assert [(e.numbers["wins"], e.numbers["losses"], e.numbers["pairs"]) for e in trims] == [(6, 0, 2), (6, 0, 3), (3, 0, 3)]
    assert "keep d4 +w16" in trims[-1].reason and "the shallowest within noise of d5 +w16" in depth.decisions[-1].reason
    kept = {o.request.candidate for o in result.outcomes if depth.trial_decisions.get(o.request.key) == "selected"}
    assert kept == {"d3 +w16", "d4 +w16"}
    deepest = run_search(
        replace(plan, depth_select="deepest"), memory_studies(plan), FakeRunner(score, images=287)
    ).stages[2]
    assert deepest.winner.arch.depth == 5 and not [e for e in deepest.decisions if e.decision == "parsimony"]


def test_small_validation_splits_are_cross_validated_by_default():
    from searcher.search.evidence import cross_validation_folds

    assert cross_validation_folds("auto", 1151, 287, warm_start=False) == 5  # digits: 5 folds of ~287 images
    assert cross_validation_folds("auto", 1006, 431, warm_start=False) == 3  # val_fraction 0.3
    assert cross_validation_folds("auto", 45_000, 5_000, warm_start=False) == 1  # CIFAR-10: the split is large enough
    assert cross_validation_folds("auto", 1151, 287, warm_start=True) == 1  # warm children grow from the whole training split
    assert cross_validation_folds("3", 45_000, 5_000, warm_start=False) == 3


def test_with_folds_the_extra_seeds_of_a_comparison_are_judged_on_other_folds():
    runner = FakeRunner(arch_score(lambda a: (280 + (4 if a.depth == 3 else 0) - (50 if a.depth > 3 else 0)) / 287), images=287)
    plan = make_plan(width_cap=16, depth_cap=4, max_repeats=3, folds=5)
    result = run_search(plan, memory_studies(plan), runner)
    depth = [r for r in runner.requests if r.stage == "depth"]
    assert sorted((r.candidate, r.repeat, r.fold) for r in depth if r.repeat > 0) == [("d3 +w8", 1, 1), ("w16 d2", 1, 1)]
    assert result.stages[2].winner.arch.depth == 3
    first = next(r for r in depth if r.repeat == 0)
    assert first.fold == 0 and first.key == replace(first, folds=1).key  # fold 0 is the plain split: the same trial
    extra = next(r for r in depth if r.repeat == 1)
    assert extra.key != replace(extra, fold=0, folds=1).key  # another fold is another trial
    assert all(r.fold == 0 for r in runner.requests if r.stage == "final")  # the final model trains on the plain split


def test_a_regularization_trial_killed_before_its_parameters_were_sampled_is_asked_again():
    """Kill -9 between Optuna creating a trial and sampling it leaves a RUNNING trial without parameters;
    the resumed search must not score it as the unregularized network but ask what it would have asked."""
    from searcher.search.studies import StudyBook

    def score(request):
        return (278 + request.arch.depth + (request.seed % 3) + int(10 * request.arch.dropout)) / 287

    plan = make_plan(width_cap=32, depth_cap=3, max_repeats=1, regularization_trials=4, regularization_in_flight=1)
    whole = run_search(plan, memory_studies(plan), ReplayRunner(score, {}))
    before_regularization = sum(1 for o in whole.outcomes if o.request.stage in ("baseline", "width", "depth"))
    recorded: dict[str, TrialOutcome] = {}
    studies: StudyBook = memory_studies(plan)
    with pytest.raises(Interrupted):
        run_search(plan, studies, ReplayRunner(score, recorded, stop_after=before_regularization + 2))
    studies.open("regularization").ask()  # the trial a killed process created but never sampled
    resumed = run_search(plan, studies, ReplayRunner(score, recorded))
    assert [e.to_dict() for e in resumed.decisions] == [e.to_dict() for e in whole.decisions]
    assert [o.request.key for o in resumed.outcomes] == [o.request.key for o in whole.outcomes]
    again = run_search(plan, studies, ReplayRunner(score, recorded))  # resumed once more (a later kill): that trial stays discarded
    assert [e.to_dict() for e in again.decisions] == [e.to_dict() for e in whole.decisions]


def test_an_enqueued_regularization_trial_killed_before_its_parameters_were_set_is_enqueued_again():
    """With warm starts the unregularized first trial is trained in the stage: Optuna's queue holds its parameters,
    and `ask` takes it off the queue before setting them. Killed in between, the resumed search must ask that
    trial again, not a sampled one in its place."""

    def score(request):  # a third layer is better beyond noise: the winner is a warm-started child
        return (250 + 10 * request.arch.depth + (request.seed % 3) + int(10 * request.arch.dropout)) / 287

    plan = make_plan(width_cap=32, depth_cap=3, max_repeats=1, regularization_trials=2, regularization_in_flight=1, warm_start=True)
    whole = run_search(plan, memory_studies(plan), ReplayRunner(score, {}))
    assert any("reg do=0 wd=0:" in e.reason for e in whole.decisions)  # the unregularized first trial, trained in the stage
    before_regularization = sum(1 for o in whole.outcomes if o.request.stage in ("baseline", "width", "depth"))
    recorded: dict[str, TrialOutcome] = {}
    studies = memory_studies(plan)
    with pytest.raises(Interrupted):
        run_search(plan, studies, ReplayRunner(score, recorded, stop_after=before_regularization - 1))
    study = studies.open("regularization")  # what the killed process did: the stage queued its first trial, then asked
    study.enqueue_trial({r.name: r.low for r in plan.regularizers})
    study.ask()
    for _ in range(2):  # resumed, then resumed again
        resumed = run_search(plan, studies, ReplayRunner(score, recorded))
        assert [e.to_dict() for e in resumed.decisions] == [e.to_dict() for e in whole.decisions]
        assert [o.request.key for o in resumed.outcomes] == [o.request.key for o in whole.outcomes]


def test_where_ties_grow_a_tie_is_read_off_every_seed_before_its_sign_decides():
    # Depth 3 scores exactly what depth 2 does on seed 0 and one image less on the others: the sign of
    # one seed's zero would add the layer; over three seeds the deeper one scores lower and is not added.
    def score(request):
        worse = request.arch.depth == 3 and request.repeat > 0
        return (280 - (1 if worse else 0) - (50 if request.arch.depth > 3 else 0)) / 287

    runner = FakeRunner(score, images=287)
    plan = make_plan(width_cap=16, depth_cap=4, max_repeats=3, depth_ties="grow")
    result = run_search(plan, memory_studies(plan), runner)
    assert {(r.candidate, r.repeat) for r in runner.requests if r.stage == "depth" and r.repeat > 0} >= {("w16 d2", 2), ("d3 +w8", 2)}
    assert result.stages[2].winner.arch.depth == 2
    rejected = next(e for e in result.stages[2].decisions if e.decision == "rejected")
    assert rejected.numbers["pairs"] == 3


def test_regularization_is_skipped_when_the_unregularized_network_gets_too_few_images_wrong_to_be_beaten():
    """McNemar needs 6 images won (and none lost) at p < 0.05: a regularized network can only win images the
    unregularized one got wrong, so with 1 wrong per seed over 3 seeds no regularized trial can replace it, and none is
    trained (its two untrained seeds are, to know). With label smoothing out of the space the loss test could still
    decide, and with 7 wrong on one seed it could win: the stage runs."""
    with_smoothing = (RegularizerRange("dropout", 0.0, 0.5, log=False), RegularizerRange("label_smoothing", 0.0, 0.2, log=False))
    plan = make_plan(width_cap=16, depth_cap=3, max_repeats=3, regularization_trials=3, regularizers=with_smoothing)

    def regularization_requests(images_right, plan=plan):
        runner = FakeRunner(arch_score(lambda a: images_right / 288), images=288)
        result = run_search(plan, memory_studies(plan), runner)
        return [(r.candidate, r.repeat) for r in runner.requests if r.stage == "regularization"], result

    requests, result = regularization_requests(287)
    winner = result.stages[2].winner
    assert requests == [(winner.name, 1), (winner.name, 2)]  # the unregularized network's other seeds, no regularized trial
    assert result.stages[3].winner.arch == winner.arch and result.final.winner.arch == winner.arch
    (entry,) = result.stages[3].decisions
    assert "gets 3 images wrong over its 3 seeds" in entry.reason and "would have to win at least 6" in entry.reason

    requests, _ = regularization_requests(281)  # 7 wrong on its first seed: a regularized network could win 6
    assert len([name for name, _ in requests if name.startswith("reg ")]) == 3
    without_smoothing = replace(plan, regularizers=with_smoothing[:1])
    requests, _ = regularization_requests(287, without_smoothing)
    assert len([name for name, _ in requests if name.startswith("reg ")]) == 3

    # the seeds it trains to know are recorded trials: a search killed between them resumes to the same decisions
    whole = run_search(plan, memory_studies(plan), ReplayRunner(lambda r: 287 / 288, {}, images=288))
    recorded: dict[str, TrialOutcome] = {}
    studies = memory_studies(plan)
    with pytest.raises(Interrupted):
        run_search(plan, studies, ReplayRunner(lambda r: 287 / 288, recorded, stop_after=len(whole.outcomes) - plan.final_seeds - 1, images=288))
    resumed = run_search(plan, studies, ReplayRunner(lambda r: 287 / 288, recorded, images=288))
    assert [e.to_dict() for e in resumed.decisions] == [e.to_dict() for e in whole.decisions]
