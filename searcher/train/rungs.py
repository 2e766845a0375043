"""Rungs (`search.rungs`): a candidate that is behind the network it grows from at an early epoch stops there.

A width or depth candidate is compared, in the end, with a network the search already trained: the
width stage's start or the depth round's parent (its reference). At each rung epoch its validation
examples are paired with the reference's at the same epoch of training, the same seed and fold
(the same examples), and tested as the stages test finished trials (McNemar on accuracy, a t-test
on other metrics: train/paired.py). Only a candidate behind beyond noise stops: the test is
significant at `alpha` (the search's significance divided by the number of looks, Bonferroni),
it lost more examples than it won, and its score is lower by more than the stage's floor. Anything
else, an inconclusive or a close race included, trains on until stable, so a stop is rare where
networks differ by a few images (digits) and common where a candidate is plainly worse.

A warm-started candidate has no rungs: it starts from its parent's trained function, so its early
epochs say nothing about the curve of a network trained from scratch. docs/design.md §3.5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from searcher.train.metrics import Metric
from searcher.train.paired import mcnemar_p_value, paired_t_p_value, unpack, unpack_values


@dataclass(frozen=True)
class RungStop:
    """Why a trial stopped at a rung: the paired test against its reference at that epoch."""

    epoch: int
    reference: str  # the reference's candidate name, for the log: "w16 d2"
    wins: int  # examples this trial did better on than the reference
    losses: int  # ...and worse
    p_value: float
    alpha: float
    effect: float  # this trial's score at the rung - the reference's at the same epoch

    def describe(self, unit: str = "image") -> str:
        return (
            f"stopped at rung epoch {self.epoch}: behind {self.reference} at the same epoch beyond noise (better on {self.wins} "
            f"{unit}s, worse on {self.losses}, p = {self.p_value:.2g} < {self.alpha:.2g}, {self.effect:+.4f})"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RungStop:
        return cls(**data)


@dataclass(frozen=True)
class Rungs:
    """One trial's rungs: the epochs it is judged at and its reference's per-example values at each of them."""

    epochs: tuple[int, ...]
    reference_key: str  # the reference trial (same seed and fold): part of this trial's key
    reference_name: str
    reference_values: tuple[bytes | None, ...] = field(repr=False)  # at each epoch (None: the reference had stopped before it)
    alpha: float  # per look
    floor: float  # the stage's effect-size floor

    def key_part(self) -> dict:
        """What makes a trial with rungs another trial than one without: where it may stop, and against what."""
        return {"epochs": list(self.epochs), "reference": self.reference_key, "alpha": self.alpha, "floor": self.floor}

    def judge(self, epoch: int, values: torch.Tensor, metric: Metric) -> RungStop | None:
        """At a rung epoch: a RungStop if this epoch's per-example `values` are behind the reference's beyond noise."""
        if epoch not in self.epochs or (packed := self.reference_values[self.epochs.index(epoch)]) is None:
            return None
        correctness = values.dtype == torch.bool
        mine = values.detach().cpu().numpy().astype(bool if correctness else np.float64)
        theirs = unpack(packed, len(mine)) if correctness else unpack_values(packed)  # (packed by the trainer as its evidence is)
        if len(theirs) != len(mine):
            return None  # (not the same examples: nothing to pair)
        effect = metric.score(float(mine.mean())) - metric.score(float(theirs.mean()))
        if correctness:
            wins, losses = int(np.count_nonzero(mine & ~theirs)), int(np.count_nonzero(~mine & theirs))
            p_value = mcnemar_p_value(wins, losses)
        else:
            gains = mine - theirs if metric.maximize else theirs - mine
            wins, losses = int(np.count_nonzero(gains > 0)), int(np.count_nonzero(gains < 0))
            p_value = paired_t_p_value(gains)
        behind = p_value < self.alpha and effect < -self.floor and (losses > wins or not correctness)  # (a t-test's sign is the effect's)
        return RungStop(epoch, self.reference_name, wins, losses, p_value, self.alpha, effect) if behind and math.isfinite(effect) else None
