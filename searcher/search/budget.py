"""`search.budget`: what a search may spend (wall seconds, or epochs of training) and what it has spent.

Before each request for trials of a growing stage (width, depth, regularization) the controller asks
whether the trials plus the final stage's retraining (and, for wall time, the ending: the model logged
and the report built) still fit in what is left. When they do not, the stage concludes on the evidence
it has (a stage stopped before its first trial is skipped), a later stage uses what is left if its trials
fit, and the final stage retrains the best network found: a search with a budget always ends with a
trained, tested model (docs/design.md §9).

Spending is read off the trials' outcomes, never off a clock at decision time: epochs are counted, and
each outcome carries the search's clock when it was recorded (`TrialOutcome.elapsed`, seconds over every
attempt of the search). A resumed search replays the outcomes with their recorded clock, so it stops
growing where the first attempt did, and its decisions stay a function of the recorded history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from searcher.config import EPOCHS, SECONDS, Budget

if TYPE_CHECKING:
    from searcher.search.trials import TrialOutcome, TrialRequest


def epochs_of(outcome: TrialOutcome) -> int:
    return len(outcome.result.history) if outcome.result is not None else 0


@dataclass
class Spending:
    """The controller's account of a budget: what each stage spent, and whether the next trials still fit."""

    budget: Budget
    final_seeds: int
    concurrency: int = 1  # trials trained at once: wall time passes by rounds of this many
    outcomes: list[TrialOutcome] = field(default_factory=list)
    by_stage: dict[str, float] = field(default_factory=dict)
    undone: dict[str, str] = field(default_factory=dict)  # stage -> what the budget left undone there

    def spent(self) -> float:
        if self.budget.unit == EPOCHS:
            return float(sum(epochs_of(o) for o in self.outcomes))
        return max((o.elapsed for o in self.outcomes if o.elapsed is not None), default=0.0)

    def begin(self, stage: str) -> None:
        self.by_stage.setdefault(stage, 0.0)

    def observe(self, stage: str, outcomes: Sequence[TrialOutcome]) -> None:
        before = self.spent()
        self.outcomes += outcomes
        self.by_stage[stage] = self.by_stage.get(stage, 0.0) + self.spent() - before

    def trial_cost(self, outcomes: Sequence[TrialOutcome]) -> float:
        """What one trial like these costs: their mean epochs or seconds (0 when none trained)."""
        trained = [o for o in outcomes if o.result is not None]
        if not trained:
            return 0.0
        if self.budget.unit == EPOCHS:
            return sum(epochs_of(o) for o in trained) / len(trained)
        return sum(o.result.train_seconds for o in trained if o.result is not None) / len(trained)

    def rounds(self, trials: int) -> int:
        """Epochs add up trial by trial; wall time passes `concurrency` trials at a time."""
        return trials if self.budget.unit == EPOCHS else math.ceil(trials / max(1, self.concurrency))

    def ending(self) -> float:
        """Wall time after the last trial (the model logged, the report built), costed as the search's start-up took:
        both import and open the stores, and both slow down alike on a busy machine (docs/BENCHMARKS.md §8: an ending
        of 2.5-3.4 s after start-ups of 5.5-9 s on 2 quiet cores). The start-up is read off the first trial's record
        (its clock less its own seconds), so a resumed search costs it as the first attempt did."""
        if self.budget.unit != SECONDS:
            return 0.0
        starts = [o.elapsed - o.result.train_seconds for o in self.outcomes if o.elapsed is not None and o.result is not None]
        return max(0.0, min(starts, default=0.0))

    def reserve(self, per_trial: float) -> float:
        """The final stage's retraining at `per_trial` a seed (and, for wall time, the ending after it)."""
        return self.rounds(self.final_seeds) * per_trial + self.ending()

    def fits(self, trials: int, like: Sequence[TrialOutcome], winner: Sequence[TrialOutcome]) -> bool:
        """Do `trials` more trials (costed as `like`, or as the winner's where none is known yet) still fit, with the
        final retraining of whichever costs more (the next trials may be the next winner)?"""
        cost = self.trial_cost(like) or self.trial_cost(winner)
        return self.spent() + self.rounds(trials) * cost + self.reserve(max(cost, self.trial_cost(winner))) <= self.budget.amount

    def final_seeds_that_fit(self, winner: Sequence[TrialOutcome]) -> int:
        """How many of the final stage's seeds what is left still pays for: all of them where it can, never none (a
        budgeted search ends with a tested model even when the baseline alone overran it)."""
        per_trial = self.trial_cost(winner)
        left = self.budget.amount - self.spent() - self.ending()
        if per_trial <= 0 or self.rounds(self.final_seeds) * per_trial <= left:
            return self.final_seeds
        seeds = max((n for n in range(1, self.final_seeds) if self.rounds(n) * per_trial <= left), default=1)
        self.undone["final"] = f"{seeds} of {self.final_seeds} seeds: the rest did not fit"
        return seeds

    def no_room(self, requests: Sequence[TrialRequest], winner: Sequence[TrialOutcome]) -> str:
        """Why a stage stops here: what is spent and kept, and the trials that did not fit."""
        ending = " and the ending" if self.budget.unit == SECONDS else ""
        names = ", ".join(r.label for r in requests[:3]) + (", ..." if len(requests) > 3 else "")
        return (
            f"{self.budget.show(self.spent())} of {self.budget.describe()} spent, "
            f"{self.budget.show(self.reserve(self.trial_cost(winner)))} kept for the final stage{ending}: "
            f"no room for {len(requests)} more trial{'s' if len(requests) > 1 else ''} ({names})"
        )

    def summary(self) -> str:
        """How the budget was spent, stage by stage (the final stage's decision log opens with it)."""
        spent = self.spent()
        if self.budget.unit == SECONDS:
            total = f"the last trial ended {self.budget.show(spent)} into the search (start-up counted in the baseline's share)"
        else:
            total = f"{self.budget.show(spent)} spent by the trials"
        over = "; over the budget: the baseline and the final stage always run" if spent > self.budget.amount else ""
        parts = [f"{stage} {self.budget.show(used)}" + (f" ({self.undone[stage]})" if stage in self.undone else "") for stage, used in self.by_stage.items()]
        return f"budget {self.budget.describe()}: {total}; " + ", ".join(parts) + over
