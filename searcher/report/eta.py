"""How long the rest of a search can take: a range, because the chain's length is decided by the evidence as it comes.

The width and depth stages stop when wider or deeper stops helping, and a comparison trains more seeds only while it
is inconclusive, so before they end nobody knows how many trials are left; the plan still bounds them. The lower end
is the fewest trials the remaining stages can take (the first widths within patience, one round of new layers, the
regularization trials or none where the stage may be skipped, the final seeds, every comparison settled on its first
seed); the upper end is what the caps
allow (every width up to `search.width.cap` and layers up to `search.depth.cap`, each widest child winning, every
comparison on `search.max_repeats` seeds).

A trial's cost is counted in width units, the sum of its network's layer widths: on 8x8 digits a CPU epoch took time
in proportion to it within 25% from w16 d2 (0.056 s) to w128 d6 (1.19 s), where parameters grow with its square.
The live view turns units into seconds with the wall time the search's own trials took per unit so far (trials side
by side, guesses and all). Pure functions: tests/test_report.py checks them on made-up plans.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from searcher.search.plan import SearchPlan
from searcher.search.stages.regularization import may_skip

Widths = tuple[int, ...]
StageBound = Callable[[SearchPlan, Widths, bool], tuple[int, Widths]]  # (plan, start widths, fewest?) -> (units, winner)


@dataclass(frozen=True)
class Position:
    """Where a search is: the stage running, the network it started from, and how much of it is done."""

    stage: int  # 0 baseline, 1 width, 2 depth, 3 regularization, 4 final, 5 transfer
    widths: Widths  # the layer widths of the network the stage starts from (the previous stage's winner)
    done: int  # width units of the stage's trials finished so far


def units(widths: Widths) -> int:
    """A trial's cost in width units: the sum of its layer widths."""
    return sum(widths)


def width_grid(plan: SearchPlan, start: int) -> list[int]:
    """The widths the width stage compares, as WidthStage builds them: start x factor^k up to the cap."""
    grid, width = [], start
    while round(width * plan.width_factor) <= plan.width_cap:
        width = round(width * plan.width_factor)
        grid.append(width)
    return grid


def baseline_stage(plan: SearchPlan, widths: Widths, fewest: bool) -> tuple[int, Widths]:
    return plan.repeats * units(widths), widths


def width_stage(plan: SearchPlan, widths: Widths, fewest: bool) -> tuple[int, Widths]:
    """Fewest: the first widths asked together or within patience, one seed each, the start kept. Most: every width on
    every seed, the start's extra seeds too, the widest kept."""
    grid, depth = width_grid(plan, widths[0]), len(widths)
    if fewest:
        asked = grid[: max(plan.width_patience, plan.concurrency)]
        return plan.repeats * sum(depth * width for width in asked), widths
    extra_seeds = plan.max_repeats - plan.repeats
    most = plan.max_repeats * sum(depth * width for width in grid) + extra_seeds * units(widths)
    return most, (grid[-1],) * depth if grid else widths


def new_layer_widths(plan: SearchPlan, below: int) -> list[int]:
    """The widths a new layer is tried at, as DepthStage picks them from the layer below."""
    return sorted({min(plan.width_cap, max(1, round(below * factor))) for factor in plan.new_layer_factors})


def depth_stage(plan: SearchPlan, widths: Widths, fewest: bool) -> tuple[int, Widths]:
    """Fewest: one round of children, rejected on their first seeds. Most: a round for every layer up to the cap, the
    widest child winning each, the start and every winning child on every seed."""
    rounds = plan.depth_cap - len(widths)
    if rounds <= 0:
        return 0, widths
    if fewest:
        return plan.repeats * sum(units(widths) + child for child in new_layer_widths(plan, widths[-1])), widths
    extra_seeds = plan.max_repeats - plan.repeats
    most, current = extra_seeds * units(widths), widths
    for _ in range(rounds):
        children = new_layer_widths(plan, current[-1])
        most += plan.repeats * sum(units(current) + child for child in children)
        current = (*current, children[-1])
        most += extra_seeds * units(current)
    return most, current


def regularization_stage(plan: SearchPlan, widths: Widths, fewest: bool) -> tuple[int, Widths]:
    """The study's trials (and the unregularized first one where it is trained again: warm starts); fewest: none where
    the stage may be skipped (its decision known without them); most: the two finalists on every seed."""
    if fewest and may_skip(plan):
        return 0, widths
    trials = plan.regularization_trials + (1 if plan.warm_start else 0)
    finalists = 0 if fewest else 2 * (plan.max_repeats - plan.repeats)
    return (plan.repeats * trials + finalists) * units(widths), widths


def final_stage(plan: SearchPlan, widths: Widths, fewest: bool) -> tuple[int, Widths]:
    return plan.final_seeds * units(widths), widths


def transfer_stage(plan: SearchPlan, widths: Widths, fewest: bool) -> tuple[int, Widths]:
    """Probes fit a linear head on frozen features: counted as trials of the winner at most, as nothing at least."""
    probes = 0 if fewest or plan.transfer is None else plan.transfer.top_k + plan.transfer.longest
    return probes * units(widths), widths


STAGES: tuple[StageBound, ...] = (baseline_stage, width_stage, depth_stage, regularization_stage, final_stage, transfer_stage)


def units_left(plan: SearchPlan, where: Position) -> tuple[int, int]:
    """(fewest, most) width units the search's trials still to finish can take, the running stage's done ones off."""
    last = 5 if plan.transfer is not None else 4
    bounds = []
    for fewest in (True, False):
        widths, total = where.widths, 0
        for index in range(where.stage, last + 1):
            stage_units, widths = STAGES[index](plan, widths, fewest)
            total += max(0, stage_units - where.done) if index == where.stage else stage_units
        bounds.append(total)
    return bounds[0], bounds[1]


def seconds_left(plan: SearchPlan, where: Position, seconds_per_unit: float) -> tuple[float, float]:
    """The range of seconds left, at the pace the search's trials have kept so far (wall seconds per width unit)."""
    fewest, most = units_left(plan, where)
    return fewest * seconds_per_unit, most * seconds_per_unit


def span(low: float, high: float) -> str:
    """'~20-45 s left', '~40 s-3 min left', '~1-3 min left', '~2-4 h left': the low end rounded down, the high end up."""

    def seconds(value: float, up: bool) -> int:
        return int(5 * (math.ceil(value / 5) if up else math.floor(value / 5)))

    def minutes(value: float, up: bool) -> int:
        return int(math.ceil(value / 60) if up else math.floor(value / 60))

    low, high = max(0.0, low), max(0.0, high, low)
    if high < 5:
        return "a few seconds left"
    if high < 90:
        lo, hi = seconds(low, False), seconds(high, True)
        return f"~{hi} s left" if lo == hi else f"~{lo}-{hi} s left"
    if high >= 100 * 60:
        lo_h, hi_h = math.floor(low / 3600), math.ceil(high / 3600)
        return f"~{hi_h} h left" if lo_h == hi_h else f"~{lo_h}-{hi_h} h left"
    if low < 60:
        return f"~{seconds(low, False)} s-{minutes(high, True)} min left"
    lo_m, hi_m = minutes(low, False), minutes(high, True)
    return f"~{hi_m} min left" if lo_m == hi_m else f"~{lo_m}-{hi_m} min left"
