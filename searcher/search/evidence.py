"""Paired evidence: does one candidate beat another beyond noise, judged on the same validation images?

Two trials scored on the same validation split agree on most images; what both got right or
both got wrong says nothing about which is better. McNemar's exact test looks only at the
discordant images: if the candidates were equally good, each discordant image would be a fair
coin between them, so the number the challenger won is Binomial(discordant, 1/2) and the
two-sided p-value is 2 * P(X <= min(wins, losses)), capped at 1. Subtracting two noisy maxima
ignores all of that: on 287 images one image is 0.35 points and the binomial standard error of
98% accuracy is 0.8 points, larger than any tolerance a user would set.

With repeats, seed r of one candidate is paired with seed r of the other and the discordant
counts of the pairs add up (under "equally good" every discordant image is still a fair coin).

On a saturated split accuracy runs out of evidence: at 98.5% on 287 images a network gets four
images wrong, and two networks whose test accuracies differ by a point differ on a handful of
validation images, in both directions. Every image still says how confident the network was
in the right class: its loss. When both candidates were trained for the same loss (the same
label smoothing, which shifts every loss), the per-image loss differences are tested too (a
paired t-test over all images and seeds; n is in the hundreds or more, so its normal
approximation). Measured on digits (scripts/bench_score.py's population and docs/design.md
§3.1), mean validation loss ordered architectures by test accuracy where accuracy could not.

A comparison has three outcomes: `better` when the accuracy test is significant at `alpha`,
the challenger won more images, and its score beats the incumbent's by more than `floor` (the
effect-size floor the user set as a tolerance); or, failing that, when the loss test is
significant in its favour and its score is no lower. `worse` is the mirror image; anything
else is a `tie`. A tie whose accuracy effect is above the floor is `inconclusive`: the stages
then train another seed of both candidates, up to `search.max_repeats` (adaptive repeats),
instead of deciding on one draw.

A metric other than accuracy (search.metric: RMSE for regression, MAE, one of your own) has a
value per example, not a right or wrong: its per-example differences take the paired t-test
instead of McNemar's (the same normal approximation), and the effect is the score difference
as for accuracy. Squared errors are tested for RMSE: on the same examples, a lower mean squared
error is a lower RMSE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from searcher.search.trials import TrialOutcome, rung_stop, stopped_at_rung
from searcher.train.metrics import ACCURACY, Metric
from searcher.train.paired import mcnemar_p_value, paired_t_p_value, unpack, unpack_values

Verdict = Literal["better", "worse", "tie"]


@dataclass(frozen=True)
class Comparison:
    """Challenger vs incumbent on the same validation images, over `pairs` paired seeds."""

    challenger: str
    incumbent: str
    effect: float  # challenger's mean score - incumbent's, over the paired seeds
    wins: int  # images the challenger got right and the incumbent wrong, summed over the pairs
    losses: int  # the other way round
    pairs: int  # seeds compared pairwise (0: no paired evidence, e.g. one side failed)
    p_value: float  # exact McNemar, two-sided; nan without paired evidence
    floor: float  # effect-size floor: a difference smaller than this never counts
    alpha: float  # significance level
    loss_effect: float = math.nan  # challenger's mean per-image validation loss - incumbent's (nan: not comparable)
    loss_p_value: float = math.nan  # paired t-test on the per-image losses, two-sided
    unit: str = "image"  # what one validation example is called in the log: image, row, sequence
    metric: Metric = ACCURACY  # accuracy: McNemar on the discordant examples; any other: a t-test on per-example values
    stopped: str = ""  # a side stopped at a rung (search.rungs): which, and the test that stopped it

    @property
    def paired(self) -> bool:
        return not math.isnan(self.p_value)

    @property
    def significant(self) -> bool:
        return self.paired and self.p_value < self.alpha

    @property
    def loss_significant(self) -> bool:
        return not math.isnan(self.loss_p_value) and self.loss_p_value < self.alpha

    @property
    def verdict(self) -> Verdict:
        if math.isinf(self.effect):  # one side failed every seed: the other wins without a test
            return "better" if self.effect > 0 else "worse"
        if not self.paired:  # no per-image record (a store written before it was kept): the floor alone decides
            return "better" if self.effect > self.floor else "worse" if self.effect < -self.floor else "tie"
        counted = self.metric.name != "accuracy"  # (a t-test's sign is the effect's; McNemar's, which side won more examples)
        if self.significant and self.effect > self.floor and (counted or self.wins > self.losses):
            return "better"
        if self.significant and self.effect < -self.floor and (counted or self.losses > self.wins):
            return "worse"
        if self.loss_significant and self.loss_effect < 0 <= self.effect:  # accuracy saturated: the losses decide
            return "better"
        if self.loss_significant and self.loss_effect > 0 >= self.effect:
            return "worse"
        return "tie"

    @property
    def inconclusive(self) -> bool:
        """Worth another seed of both: a tie whose accuracy difference is above its floor."""
        return self.paired and self.verdict == "tie" and abs(self.effect) > self.floor

    def describe(self) -> str:
        """The decision log's words: "d3 +w32 vs w16 d2: right on 9 images the other missed, wrong on 3 (p = 0.15, 1 seed)"."""
        head = f"{self.challenger} vs {self.incumbent}"
        if math.isinf(self.effect):
            side = "the incumbent" if self.effect > 0 else "the challenger"
            return f"{head}: {side} {self.stopped}" if self.stopped else f"{head}: {side} failed, no test needed"
        if not self.paired:
            return f"{head}: {self.effect:+.4f} (no per-{self.unit} record to pair, the floor {self.floor} alone decides)"
        seeds = f"{self.pairs} seed{'s' if self.pairs != 1 else ''}"
        if self.metric.name != "accuracy":
            return self.describe_values(head, seeds)
        accuracy_decides = self.significant and abs(self.effect) > self.floor
        if self.verdict != "tie" and not accuracy_decides:
            verdict = f"{self.verdict} by validation loss"
        elif self.verdict != "tie":
            verdict = f"significant, {self.verdict}"
        else:
            verdict = "not significant" if not self.significant else f"significant but within the floor {self.floor}"
        loss = ""
        if not math.isnan(self.loss_p_value):
            loss = f"; validation loss {self.loss_effect:+.4f} per {self.unit} (p = {self.loss_p_value:.2g})"
        return (
            f"{head}: right on {self.wins} {self.unit}{'s' if self.wins != 1 else ''} the other missed, wrong on {self.losses} "
            f"(p = {self.p_value:.2g}, {seeds}, {self.effect:+.4f}){loss}: {verdict}"
        )

    def describe_values(self, head: str, seeds: str) -> str:
        """A t-test's words: "w32 vs w16: better on 412 rows, worse on 388 (t-test on per-row squared errors, p = 0.03,
        1 seed, RMSE -0.0123): significant, better"."""
        verdict = "not significant" if not self.significant else f"significant, {self.verdict}" if self.verdict != "tie" else f"significant but within the floor {self.floor}"
        words = self.metric.per_example_words.replace("per-example", f"per-{self.unit}")
        return (
            f"{head}: better on {self.wins} {self.unit}{'s' if self.wins != 1 else ''}, worse on {self.losses} (t-test on per-{self.unit} "
            f"{words}, p = {self.p_value:.2g}, {seeds}, {self.metric.label} {self.metric.shown(self.effect):+.4g}): {verdict}"
        )

    def numbers(self) -> dict[str, float | int]:
        """For the decision log's JSON: the counts and p-value behind the words."""
        numbers = {"wins": self.wins, "losses": self.losses, "pairs": self.pairs, "p_value": self.p_value, "effect": self.effect}
        if not math.isnan(self.loss_p_value):
            numbers |= {"loss_effect": self.loss_effect, "loss_p_value": self.loss_p_value}
        return numbers


def compare(
    challenger: str,
    challenger_outcomes: Sequence[TrialOutcome],
    incumbent: str,
    incumbent_outcomes: Sequence[TrialOutcome],
    floor: float,
    alpha: float,
    seeds: int,
    unit: str = "image",
    metric: Metric = ACCURACY,
) -> Comparison:
    """Pair the first `seeds` repeats of both candidates by repeat index and test them (`unit`: what the log calls an example)."""
    mine, theirs, both, effect = paired_repeats(challenger_outcomes, incumbent_outcomes, seeds)
    if both is None:  # a side that failed every seed, or stopped at a rung, loses outright
        stop = rung_stop(list((mine if effect < 0 else theirs).values()))  # (the side that lost)
        stopped = stop.describe(unit) if stop is not None and math.isinf(effect) else ""
        return Comparison(challenger, incumbent, effect, 0, 0, 0, math.nan, floor, alpha, unit=unit, metric=metric, stopped=stopped)
    if metric.name != "accuracy":
        return compare_values(challenger, incumbent, mine, theirs, both, effect, floor, alpha, unit, metric)
    wins = losses = 0
    loss_differences: list[np.ndarray] | None = []
    for r in both:
        a, b = mine[r].result, theirs[r].result
        if a is None or b is None or a.val_correct is None or b.val_correct is None or len(a.val_correct) != len(b.val_correct):
            return Comparison(challenger, incumbent, effect, 0, 0, len(both), math.nan, floor, alpha, unit=unit)
        images = len(a.val_correct) * 8
        right_a, right_b = unpack(a.val_correct, images), unpack(b.val_correct, images)
        wins += int(np.count_nonzero(right_a & ~right_b))
        losses += int(np.count_nonzero(~right_a & right_b))
        same_loss = mine[r].request.train.label_smoothing == theirs[r].request.train.label_smoothing
        if loss_differences is not None and same_loss and a.val_losses is not None and b.val_losses is not None:
            loss_a, loss_b = (np.frombuffer(x, dtype=np.float16).astype(np.float64) for x in (a.val_losses, b.val_losses))
            loss_differences.append(loss_a - loss_b)
        else:
            loss_differences = None  # one pair without comparable losses: accuracy alone decides
    loss_effect = loss_p = math.nan
    if loss_differences:
        differences = np.concatenate(loss_differences)
        loss_effect, loss_p = float(np.mean(differences)), paired_t_p_value(differences)
    return Comparison(
        challenger, incumbent, effect, wins, losses, len(both), mcnemar_p_value(wins, losses), floor, alpha, loss_effect, loss_p, unit
    )


def paired_repeats(
    challenger_outcomes: Sequence[TrialOutcome], incumbent_outcomes: Sequence[TrialOutcome], seeds: int
) -> tuple[dict[int, TrialOutcome], dict[int, TrialOutcome], list[int] | None, float]:
    """Each side's first `seeds` repeats by repeat index, the repeats both finished ok, and the effect: the mean score
    difference over those. When a side failed every seed, or any of its seeds stopped at a rung (behind beyond noise
    there: search.rungs), the repeats are None and the effect is -inf (the challenger lost so), +inf (the incumbent
    did), or 0 (both)."""
    mine = {o.request.repeat: o for o in challenger_outcomes if o.request.repeat < seeds}
    theirs = {o.request.repeat: o for o in incumbent_outcomes if o.request.repeat < seeds}
    repeats = sorted(set(mine) & set(theirs))
    mine_ok = [] if stopped_at_rung(list(mine.values())) else [r for r in repeats if mine[r].status == "ok"]
    theirs_ok = [] if stopped_at_rung(list(theirs.values())) else [r for r in repeats if theirs[r].status == "ok"]
    if not mine_ok or not theirs_ok:
        return mine, theirs, None, 0.0 if not mine_ok and not theirs_ok else -math.inf if not mine_ok else math.inf
    both = [r for r in mine_ok if r in theirs_ok]
    effect = float(np.mean([mine[r].score for r in both]) - np.mean([theirs[r].score for r in both])) if both else 0.0
    return mine, theirs, both, effect


def compare_values(
    challenger: str,
    incumbent: str,
    mine: dict[int, TrialOutcome],
    theirs: dict[int, TrialOutcome],
    both: list[int],
    effect: float,
    floor: float,
    alpha: float,
    unit: str,
    metric: Metric,
) -> Comparison:
    """`compare`'s test for a metric with a value per example: a paired t-test on the per-example differences over
    the paired repeats `both`."""
    differences = []
    for r in both:
        a, b = mine[r].result, theirs[r].result
        if a is None or b is None or a.val_values is None or b.val_values is None or len(a.val_values) != len(b.val_values):
            return Comparison(challenger, incumbent, effect, 0, 0, len(both), math.nan, floor, alpha, unit=unit, metric=metric)
        values_a, values_b = unpack_values(a.val_values), unpack_values(b.val_values)
        differences.append(values_a - values_b if metric.maximize else values_b - values_a)  # > 0: the challenger did better
    gains = np.concatenate(differences) if differences else np.zeros(0)
    wins, losses = int(np.count_nonzero(gains > 0)), int(np.count_nonzero(gains < 0))
    p_value = paired_t_p_value(gains) if len(gains) else math.nan
    return Comparison(challenger, incumbent, effect, wins, losses, len(both), p_value, floor, alpha, unit=unit, metric=metric)


def wins_needed(alpha: float) -> int:
    """The fewest images a challenger must win, losing none, for McNemar's test to call it better at `alpha` (6 at
    0.05): an incumbent that gets fewer images wrong than this cannot be beaten beyond noise on accuracy alone."""
    wins = 1
    while mcnemar_p_value(wins, 0) >= alpha:
        wins += 1
    return wins


def images_wrong(outcome: TrialOutcome) -> int | None:
    """The validation images a trial's kept weights got wrong: the most a challenger paired with it can win there. 0 for
    a failed trial (never paired); None without a per-image record, or where a stop at a rung makes the other side win
    without a test."""
    result = outcome.result
    if outcome.status == "failed" or result is None:
        return 0
    if outcome.status != "ok" or result.val_correct is None:
        return None
    # the losses hold one float16 per image; without them, the padding bits of the last byte count as wrong (more, never fewer)
    images = len(result.val_losses) // 2 if result.val_losses is not None else len(result.val_correct) * 8
    return images - int(np.count_nonzero(unpack(result.val_correct, len(result.val_correct) * 8)))


SMALL_VALIDATION_IMAGES = 1000  # below this, one image moves accuracy by more than 0.1 points


def cross_validation_folds(setting: str, train_images: int, val_images: int, warm_start: bool) -> int:
    """How many folds comparisons use (`search.folds`): "auto" is cross-validation on a small validation split.

    Below SMALL_VALIDATION_IMAGES, a candidate's extra seeds re-judged on the same few images
    would only average away training noise; on other folds they also see other images, so
    three seeds judge a comparison on three times the images (docs/design.md §3.3). As many
    folds as the validation fraction makes (0.2: 5), so every fold is as large as the split.
    Warm starts keep the fixed split: a child's extra seeds grow from a parent trained on
    the whole training split, which holds the other folds' validation images.
    """
    if setting != "auto":
        return int(setting)
    if val_images >= SMALL_VALIDATION_IMAGES or warm_start:
        return 1
    return max(2, round((train_images + val_images) / val_images))


def validation_note(
    images: int, significance: float, repeats: int, max_repeats: int, folds: int = 1, pool: int = 0, unit: str = "image", metric: Metric = ACCURACY
) -> str:
    """The first lines' word on how decisions are made, and a warning when the validation split is small (`unit`: what
    one example is called: image, row, sequence)."""
    return _validation_note(images, significance, repeats, max_repeats, folds, pool, metric).replace("image", unit)


def _validation_note(images: int, significance: float, repeats: int, max_repeats: int, folds: int, pool: int, metric: Metric) -> str:
    seeds = f"{repeats} seed{'s' if repeats != 1 else ''} per candidate, up to {max_repeats} while a comparison is inconclusive"
    tests = f"McNemar on accuracy, t-test on per-image losses, p < {significance}"
    if metric.name != "accuracy":
        tests = f"{metric.label}: a t-test on per-image {metric.per_example_words}, p < {significance}"
    if folds > 1:
        protocol = (
            f"decisions: paired, cross-validated ({tests}): seed r of every candidate trains without fold r of {folds} "
            f"(of the {pool} training and validation images) and is judged on its ~{images} images; {seeds}"
        )
    else:
        protocol = f"decisions: paired on the {images} validation images ({tests}), {seeds}"
    if images >= SMALL_VALIDATION_IMAGES or metric.name != "accuracy":  # (the warning is about accuracy's coarse steps)
        return protocol
    error = 100 * math.sqrt(0.95 * 0.05 / images)
    advice = (
        "each extra seed is judged on another fold's images"
        if folds > 1
        else "raise dataset.val_fraction, search.max_repeats or search.folds for sharper decisions"
    )
    return (
        f"{protocol}\nsmall validation split: one image is {100 / images:.2f} points and the standard error of a 95% accuracy is "
        f"{error:.1f} points, so a single comparison on it is mostly noise; {advice} (docs/design.md, 'Decisions under noise')"
    )
