"""Stage 5 (optional): is the best network in validation also the best to transfer?

The seed's second tip: "the best performing model in validation may not be the
best for transfer; models trained for longer, at the cost of a slight drop in
performance, may work better." So the candidates are the search's top-k distinct
networks by validation accuracy plus the longest-trained others, each probed on
a target dataset (a linear head on its frozen features). This module only
chooses and ranks; the probe itself is trained by the runner's work function.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import optuna

from searcher.search.plan import SearchPlan
from searcher.search.stages.base import Stage, StageResult, fmt
from searcher.search.trials import Candidate, Decision, TrialOutcome, TrialRequest


@dataclass(frozen=True)
class Source:
    """A trained trial chosen for probing, and why."""

    outcome: TrialOutcome
    reason: str  # "top 3 in validation" | "longest trained"

    @property
    def val_acc(self) -> float:
        return self.outcome.score

    @property
    def epochs(self) -> int:
        """Epochs behind the kept (best-epoch) weights: how long the probed network trained."""
        return self.outcome.result.best_epoch if self.outcome.result else 0


@dataclass(frozen=True)
class RankedSource:
    source: Source
    transfer_acc: float  # -inf when the probe failed
    val_rank: int  # 1 = best validation accuracy
    transfer_rank: int  # 1 = best transfer accuracy


def config_key(request: TrialRequest) -> str:
    """Same architecture and training settings = same candidate, whatever the seed."""
    return json.dumps({"arch": request.arch.to_dict(), "train": request.train.to_dict()}, sort_keys=True)


def select_sources(outcomes: list[TrialOutcome] | tuple[TrialOutcome, ...], top_k: int, longest: int) -> list[Source]:
    """Top-k distinct candidates by validation, then the `longest` others whose kept weights trained longest.

    Only finished trials whose weights are still in memory qualify (not failed, pruned or probes);
    a candidate trained with several seeds is represented by its best-validation trial.
    """
    best_per_config: dict[str, TrialOutcome] = {}
    for outcome in outcomes:
        if outcome.status != "ok" or outcome.result is None or outcome.result.state is None or outcome.request.source:
            continue
        key = config_key(outcome.request)
        if key not in best_per_config or outcome.score > best_per_config[key].score:
            best_per_config[key] = outcome
    distinct = list(best_per_config.values())  # in the order trials ran: ties go to the earlier (smaller) network
    by_val = sorted(distinct, key=lambda o: -o.score)
    chosen = [Source(o, f"top {top_k} in validation") for o in by_val[:top_k]]
    rest = sorted(by_val[top_k:], key=lambda o: (-o.result.best_epoch, -o.score))  # type: ignore[union-attr]
    chosen += [Source(o, "longest trained") for o in rest[:longest]]
    return chosen


def rank(scored: list[tuple[Source, float]]) -> list[RankedSource]:
    """Both rankings at once; ties keep the earlier (selection) order."""
    val_order = sorted(range(len(scored)), key=lambda i: -scored[i][0].val_acc)
    transfer_order = sorted(range(len(scored)), key=lambda i: -scored[i][1])
    val_rank = {index: position + 1 for position, index in enumerate(val_order)}
    transfer_rank = {index: position + 1 for position, index in enumerate(transfer_order)}
    return [RankedSource(source, acc, val_rank[i], transfer_rank[i]) for i, (source, acc) in enumerate(scored)]


def verdict(ranked: list[RankedSource]) -> tuple[str, dict[str, float | int | str]]:
    """One sentence: is the best in validation also the best for transfer?"""
    best_val = min(ranked, key=lambda r: r.val_rank)
    best_transfer = min(ranked, key=lambda r: r.transfer_rank)
    numbers: dict[str, float | int | str] = {
        "best_in_validation": best_val.source.outcome.request.label,
        "best_for_transfer": best_transfer.source.outcome.request.label,
        "transfer_acc_of_best_in_validation": best_val.transfer_acc,
        "best_transfer_acc": best_transfer.transfer_acc,
        "same": int(best_val is best_transfer),
    }
    name_val, name_transfer = numbers["best_in_validation"], numbers["best_for_transfer"]
    if best_val is best_transfer:
        text = f"the best in validation, {name_val} (score {fmt(best_val.source.val_acc)}), is also the best for transfer (transfer_acc {fmt(best_val.transfer_acc)})"
    else:
        text = (
            f"the best in validation, {name_val} (score {fmt(best_val.source.val_acc)}, transfer_acc {fmt(best_val.transfer_acc)}, "
            f"{best_val.source.epochs} epochs), is NOT the best for transfer: {name_transfer} ({best_transfer.source.reason}) reaches "
            f"transfer_acc {fmt(best_transfer.transfer_acc)} with score {fmt(best_transfer.source.val_acc)} after {best_transfer.source.epochs} epochs"
        )
    return text, numbers


class TransferStage(Stage):
    """Stage 5: every chosen source probed once on the target; decided by ranking, nothing grows."""

    name, index = "transfer", 5

    def __init__(self, plan: SearchPlan, study: optuna.Study, outcomes: list[TrialOutcome] | tuple[TrialOutcome, ...]):
        super().__init__(plan, study)
        if plan.transfer is None:
            raise ValueError("TransferStage needs plan.transfer")
        self.target = plan.transfer.target_identity
        self.sources = select_sources(outcomes, plan.transfer.top_k, plan.transfer.longest)

    def request_for(self, source: Source) -> TrialRequest:
        trained = source.outcome.request
        return TrialRequest(
            stage=self.name,
            candidate=f"transfer {trained.label}",
            arch=trained.arch,
            train=trained.train,
            seed=trained.seed,
            data_identity=self.target,
            params=(
                ("source", trained.label),
                ("source_stage", trained.stage),
                ("source_val_acc", source.val_acc),
                ("source_epochs", source.epochs),
                ("chosen_as", source.reason),
            ),
            source=trained.key,
            source_state=source.outcome.result.state if source.outcome.result else None,
            family=trained.family,
        )

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        finished = {o.request.key for o in done}
        return [r for r in map(self.request_for, self.sources) if r.key not in finished]

    def observe(self, outcomes: list[TrialOutcome]) -> None:
        """The study keeps each probe's transfer accuracy (no sampled parameters: nothing is sampled here)."""
        for outcome in outcomes:
            complete = outcome.status == "ok"
            self.study.add_trial(
                optuna.trial.create_trial(
                    value=outcome.score if complete else None,
                    state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL,
                    user_attrs={"candidate": outcome.request.candidate, "trial_key": outcome.request.key, "source": outcome.request.source},
                )
            )

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        by_source = {o.request.source: o for o in done}
        scored = [(s, by_source[s.outcome.request.key].score) for s in self.sources if s.outcome.request.key in by_source]
        if not scored:
            entry = self.entry("skipped", "no trained candidate had its weights in memory (a resumed search keeps none); nothing probed")
            start = Candidate("none", self.plan.family.baseline(1, 1, self.plan.input_shape), self.plan.train)
            return StageResult(self.name, start, -math.inf, (entry,), {})
        ranked = rank(scored)
        entries = []
        for r in sorted(ranked, key=lambda r: r.val_rank):
            trained = r.source.outcome.request
            entries.append(
                self.entry(
                    "probed",
                    f"{trained.label} ({trained.stage}, {r.source.reason}): score {fmt(r.source.val_acc)} (#{r.val_rank}), "
                    f"transfer_acc {fmt(r.transfer_acc)} (#{r.transfer_rank}), {r.source.epochs} epochs",
                    source=trained.label,
                    source_stage=trained.stage,
                    source_key=trained.key,
                    chosen_as=r.source.reason,
                    val_acc=r.source.val_acc,
                    transfer_acc=r.transfer_acc,
                    epochs=r.source.epochs,
                    val_rank=r.val_rank,
                    transfer_rank=r.transfer_rank,
                )
            )
        text, numbers = verdict(ranked)
        entries.append(self.entry("selected", text, **numbers))
        best = min(ranked, key=lambda r: r.transfer_rank)
        best_request = best.source.outcome.request
        winner = Candidate(best_request.label, best_request.arch, best_request.train)
        decisions: dict[str, Decision] = {}
        for outcome in done:
            if outcome.status != "ok":
                decisions[outcome.request.key] = "failed"
            else:
                decisions[outcome.request.key] = "selected" if outcome.request.source == best_request.key else "rejected"
        best_in_val = min(ranked, key=lambda r: r.val_rank)
        metrics = {
            "transfer_acc_best": best.transfer_acc,
            "transfer_acc_of_best_in_validation": best_in_val.transfer_acc,
            "best_in_validation_is_best_for_transfer": float(best is best_in_val),
        }
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        probe = tuple(o for o in done if o.request.source == best_request.key)
        return StageResult(self.name, winner, best.transfer_acc, tuple(entries), decisions, metrics=metrics, winner_outcomes=probe)
