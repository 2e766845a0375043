"""The five stages of "start small and go deep" (DESIGN.md §1).

Each stage is a deterministic function of the outcomes it has been told:
`next_trials(done)` says what to run next (nothing: the stage is over) and
`conclude(done)` says what was decided, with the numbers compared. Both replay
the same walk over `done`, so a stage holds no hidden progress of its own and a
fake evaluator can drive every rule in a unit test.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import ClassVar

import optuna

from searcher.search.plan import SearchPlan
from searcher.search.studies import RemoteTrial, regularization_sampler, report_epoch
from searcher.search.trials import Candidate, Decision, DecisionEntry, TrialOutcome, TrialRequest, mean_score
from searcher.train.trainer import EpochRecord


@dataclass(frozen=True)
class StageResult:
    stage: str
    winner: Candidate
    score: float  # the winner's mean validation accuracy
    decisions: tuple[DecisionEntry, ...]
    trial_decisions: dict[str, Decision]  # by trial key
    metrics: dict[str, float] = field(default_factory=dict)  # logged on the stage run
    winner_outcomes: tuple[TrialOutcome, ...] = ()
    trial_notes: dict[str, str] = field(default_factory=dict)  # by trial key: why a trial played no part in the decision


def group_by_candidate(done: list[TrialOutcome]) -> dict[str, list[TrialOutcome]]:
    groups: dict[str, list[TrialOutcome]] = defaultdict(list)
    for outcome in done:
        groups[outcome.request.candidate].append(outcome)
    return groups


class Stage:
    name: ClassVar[str]
    index: ClassVar[int]

    def __init__(self, plan: SearchPlan, study: optuna.Study):
        self.plan = plan
        self.study = study
        self._recorded: set[str] | None = None  # trial keys already in the study (a resume replays them)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        raise NotImplementedError

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        raise NotImplementedError

    def on_epoch(self, request: TrialRequest, record: EpochRecord) -> bool:
        """Called after every epoch of this stage's trials; True stops the trial (pruning)."""
        return False

    def remote_trial(self, request: TrialRequest) -> RemoteTrial | None:
        """What a trial trained in another process reports its epochs to (the same pruning as `on_epoch`), if anything."""
        return None

    def observe(self, outcomes: list[TrialOutcome]) -> None:
        """Record finished trials in the stage's Optuna study (a grid stage's study is its record), once each."""
        if self._recorded is None:
            self._recorded = {t.user_attrs.get("trial_key") for t in self.study.get_trials(deepcopy=False)}
        for outcome in outcomes:
            if outcome.request.key not in self._recorded:
                record_in_study(self.study, outcome)
                self._recorded.add(outcome.request.key)

    # helpers shared by the stages

    def requests(self, candidate: Candidate, evaluate_test: bool = False) -> list[TrialRequest]:
        parents = dict(candidate.parents)
        return [
            TrialRequest(
                stage=self.name,
                candidate=candidate.name,
                arch=candidate.arch,
                train=candidate.train,
                seed=self.plan.seed + repeat,
                data_identity=self.plan.data_identity,
                params=candidate.params,
                repeat=repeat,
                evaluate_test=evaluate_test,
                parent=parents.get(repeat),
            )
            for repeat in range(self.plan.repeats)
        ]

    def score_of(self, candidate: Candidate, done: list[TrialOutcome]) -> float | None:
        """The candidate's mean score once all its repeats are done, else None."""
        outcomes = group_by_candidate(done).get(candidate.name, [])
        return mean_score(outcomes) if len(outcomes) >= self.plan.repeats else None

    def missing(self, candidate: Candidate, done: list[TrialOutcome]) -> list[TrialRequest]:
        finished = {outcome.request.key for outcome in done}
        return [request for request in self.requests(candidate) if request.key not in finished]

    def trial_decisions(self, done: list[TrialOutcome], selected: set[str]) -> dict[str, Decision]:
        decisions: dict[str, Decision] = {}
        for outcome in done:
            if outcome.status == "failed":
                decisions[outcome.request.key] = "failed"
            elif outcome.status == "pruned":
                decisions[outcome.request.key] = "pruned"
            else:
                decisions[outcome.request.key] = "selected" if outcome.request.candidate in selected else "rejected"
        return decisions

    def entry(self, decision: str, reason: str, **numbers: float | int | str) -> DecisionEntry:
        return DecisionEntry(self.name, decision, reason, numbers)

    def parents_from(self, outcomes: tuple[TrialOutcome, ...] | list[TrialOutcome]) -> tuple[tuple[int, str], ...]:
        """Warm starts: each repeat grows from the parent's trial of the same repeat (only trained ones)."""
        if not self.plan.warm_start:
            return ()
        return tuple((o.request.repeat, o.request.key) for o in outcomes if o.status == "ok" and o.result is not None)


GRID_DISTRIBUTION = optuna.distributions.IntDistribution(0, 1 << 16)


def record_in_study(study: optuna.Study, outcome: TrialOutcome) -> None:
    params = dict(outcome.request.params)
    distributions = {name: GRID_DISTRIBUTION for name in params}  # grid stages vary integers only
    state = {"ok": optuna.trial.TrialState.COMPLETE, "failed": optuna.trial.TrialState.FAIL}.get(
        outcome.status, optuna.trial.TrialState.PRUNED
    )
    result = outcome.result
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=distributions,
            value=outcome.score if state == optuna.trial.TrialState.COMPLETE else None,
            intermediate_values={r.epoch: r.val_acc for r in result.history if math.isfinite(r.val_acc)} if result else {},
            user_attrs={"candidate": outcome.request.candidate, "trial_key": outcome.request.key},
            state=state,
        )
    )


def fmt(score: float) -> str:
    return "failed" if math.isinf(score) else f"{score:.4f}"


class BaselineStage(Stage):
    """Stage 0: one small network, trained until stable."""

    name, index = "baseline", 0

    def __init__(self, plan: SearchPlan, study: optuna.Study):
        super().__init__(plan, study)
        arch = plan.layout.baseline(plan.baseline_depth, plan.baseline_width, plan.block)
        params = (("depth", plan.baseline_depth), ("width", plan.baseline_width))
        self.candidate = Candidate(f"w{plan.baseline_width} d{plan.baseline_depth}", arch, plan.train, params)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.missing(self.candidate, done)

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        score = self.score_of(self.candidate, done)
        if score is None or math.isinf(score):
            errors = "; ".join(o.error or o.status for o in done if o.status == "failed")
            raise SearchFailed(f"the baseline {self.candidate.name} failed ({errors}); nothing to grow from.")
        behaviors = ", ".join(sorted({o.result.behavior for o in done if o.result}))
        entry = self.entry("baseline", f"{self.candidate.name} trained until {behaviors}: val_acc {fmt(score)}", val_acc=score)
        return StageResult(self.name, self.candidate, score, (entry,), self.trial_decisions(done, {self.candidate.name}), winner_outcomes=tuple(done))


class SearchFailed(Exception):
    """The search cannot go on (its baseline or final stage failed)."""


class WidthStage(Stage):
    """Stage 1: same depth, geometric widths; keep the smallest within `tolerance` of the best."""

    name, index = "width", 1

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study)
        self.start = start
        base = start.winner.arch.widths[0]
        widths, width = [], base
        while round(width * plan.width_factor) <= plan.width_cap:
            width = round(width * plan.width_factor)
            widths.append(width)
        self.grid = [self.candidate(width) for width in widths]

    def candidate(self, width: int) -> Candidate:
        arch = self.start.winner.arch.with_width(width)
        params = (("depth", arch.depth), ("width", width))
        return Candidate(f"w{width} d{arch.depth}", arch, self.start.winner.train, params, self.parents_from(self.start.winner_outcomes))

    def walk(self, done: list[TrialOutcome]) -> tuple[list[tuple[Candidate, float]], list[TrialRequest]]:
        """Scores in grid order until patience runs out, and what to run next.

        With a runner that trains several trials at once, the next `concurrency` candidates are
        asked for together. Patience is still applied in grid order, so the decision is the same;
        a candidate beyond the patience cutoff is trained but never compared.
        """
        points = [(self.start.winner, self.start.score)]
        best, since_best = self.start.score, 0
        for index, candidate in enumerate(self.grid):
            if since_best >= self.plan.width_patience:
                break
            score = self.score_of(candidate, done)
            if score is None:
                ahead = self.grid[index : index + max(1, self.plan.concurrency)]
                return points, [request for c in ahead for request in self.missing(c, done)]
            points.append((candidate, score))
            best, since_best = (score, 0) if score > best else (best, since_best + 1)
        return points, []

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.walk(done)[1]

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        points, _ = self.walk(done)
        best = max(score for _, score in points)
        chosen, score = next((c, s) for c, s in points if s >= best - self.plan.width_tolerance)
        entries = [
            self.entry(
                "kept" if candidate is chosen else "rejected",
                f"{candidate.name}: val_acc {fmt(s)} (best {fmt(best)}, tolerance {self.plan.width_tolerance})",
                width=candidate.arch.widths[0],
                val_acc=s,
            )
            for candidate, s in points
        ]
        entries.append(
            self.entry(
                "selected",
                f"smallest width within {self.plan.width_tolerance} of the best ({fmt(best)}): {chosen.name} at {fmt(score)}",
                width=chosen.arch.widths[0],
                val_acc=score,
                best_val_acc=best,
            )
        )
        winner_outcomes = self.start.winner_outcomes if chosen is self.start.winner else _outcomes_of(chosen, done)
        compared = {candidate.name for candidate, _ in points}
        notes = {
            o.request.key: f"beyond patience: trained concurrently, not compared (patience {self.plan.width_patience})"
            for o in done
            if o.request.candidate not in compared
        }
        return StageResult(
            self.name, chosen, score, tuple(entries), self.trial_decisions(done, {chosen.name}), winner_outcomes=winner_outcomes, trial_notes=notes
        )


def _outcomes_of(candidate: Candidate, done: list[TrialOutcome]) -> tuple[TrialOutcome, ...]:
    return tuple(group_by_candidate(done).get(candidate.name, []))


@dataclass(frozen=True)
class DepthRound:
    parent: Candidate
    parent_score: float
    children: tuple[tuple[Candidate, float], ...]
    accepted: bool


class DepthStage(Stage):
    """Stage 2: add one layer at a time, its width found by experiment, while it helps."""

    name, index = "depth", 2

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study)
        self.start = start

    def children(self, parent: Candidate, parent_outcomes: tuple[TrialOutcome, ...] | list[TrialOutcome] = ()) -> list[Candidate]:
        previous = parent.arch.widths[-1]
        widths = sorted({min(self.plan.width_cap, max(1, round(previous * f))) for f in self.plan.new_layer_factors})
        children = []
        for width in widths:
            arch = self.plan.layout.deepen(parent.arch, width)
            params = (("depth", arch.depth), ("new_width", width))
            children.append(Candidate(f"d{arch.depth} +w{width}", arch, parent.train, params, self.parents_from(parent_outcomes)))
        return children

    def walk(self, done: list[TrialOutcome]) -> tuple[list[DepthRound], Candidate, float, list[TrialRequest], str]:
        """Replays the rounds so far: (rounds, current network, its score, what to run next, why it ended)."""
        rounds: list[DepthRound] = []
        current, current_score, current_outcomes = self.start.winner, self.start.score, self.start.winner_outcomes
        while True:
            if current.arch.depth >= self.plan.depth_cap:
                return rounds, current, current_score, [], f"depth cap {self.plan.depth_cap} reached"
            children = self.children(current, current_outcomes)
            pending = [request for child in children for request in self.missing(child, done)]
            if pending:
                return rounds, current, current_score, pending, ""
            scored = tuple((child, self.score_of(child, done) or -math.inf) for child in children)
            best_child, best_score = max(scored, key=lambda pair: pair[1])  # ties: the narrower child
            accepted = best_score > current_score + self.plan.depth_min_improvement
            rounds.append(DepthRound(current, current_score, scored, accepted))
            if not accepted:
                return rounds, current, current_score, [], f"adding layer {current.arch.depth + 1} did not help"
            current, current_score, current_outcomes = best_child, best_score, _outcomes_of(best_child, done)

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        return self.walk(done)[3]

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        rounds, current, score, _, why = self.walk(done)
        entries = []
        for round_ in rounds:
            best_child, best_score = max(round_.children, key=lambda pair: pair[1])
            tried = ", ".join(f"{child.name} {fmt(s)}" for child, s in round_.children)
            verdict = "accepted" if round_.accepted else "rejected"
            entries.append(
                self.entry(
                    verdict,
                    f"layer {best_child.arch.depth}: best child {best_child.name} {fmt(best_score)} vs parent "
                    f"{round_.parent.name} {fmt(round_.parent_score)} (needs > +{self.plan.depth_min_improvement}); tried {tried}",
                    depth=best_child.arch.depth,
                    child_val_acc=best_score,
                    parent_val_acc=round_.parent_score,
                )
            )
        entries.append(self.entry("selected", f"{current.name} at {fmt(score)}; stopped: {why}", depth=current.arch.depth, val_acc=score))
        accepted = {max(r.children, key=lambda pair: pair[1])[0].name for r in rounds if r.accepted}
        selected = accepted | {current.name}
        winner_outcomes = self.start.winner_outcomes if current is self.start.winner else _outcomes_of(current, done)
        return StageResult(self.name, current, score, tuple(entries), self.trial_decisions(done, selected), winner_outcomes=winner_outcomes)


def regularized(candidate: Candidate, params: dict[str, float], name: str) -> Candidate:
    train_fields = {k: v for k, v in params.items() if k in ("weight_decay", "label_smoothing", "augment")}
    arch = candidate.arch.with_dropout(params.get("dropout", candidate.arch.dropout))
    return Candidate(name, arch, replace(candidate.train, **train_fields), tuple(sorted(params.items())))


def regularization_name(params: dict[str, float]) -> str:
    short = {"weight_decay": "wd", "dropout": "do", "label_smoothing": "ls", "augment": "aug"}
    return "reg " + " ".join(f"{short.get(k, k)}={v:.2g}" for k, v in sorted(params.items()))


class RegularizationStage(Stage):
    """Stage 3: an Optuna study (TPE + a pruner) over regularizers, the unregularized winner first."""

    name, index = "regularization", 3

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study)
        self.start = start
        self.distributions = {
            r.name: optuna.distributions.FloatDistribution(r.low, r.high, log=r.log) for r in plan.regularizers
        }
        self.asked: dict[str, optuna.trial.Trial | optuna.trial.FrozenTrial] = {}  # candidate -> trial, in ask order
        self.told: set[str] = set()
        self.candidates: dict[str, Candidate] = {}
        off = {r.name: r.low for r in plan.regularizers}
        first = regularized(start.winner, off, regularization_name(off))
        earlier = sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number)  # a resumed search's study
        if [r.key for r in self.requests(first)] == [r.key for r in self.requests(start.winner)]:
            # The unregularized first trial *is* the stage-2 winner: tell the study its result, train nothing.
            # (Not when the winner was warm-started: its score then comes from longer training than the
            # regularized trials get, so the first trial is trained from scratch like them.)
            self.first_name = start.winner.name
            self.candidates[start.winner.name] = start.winner
            if not any(t.user_attrs.get("role") == "unregularized" for t in earlier):
                history = start.winner_outcomes[0].result.history if start.winner_outcomes and start.winner_outcomes[0].result else ()
                self.study.add_trial(
                    optuna.trial.create_trial(
                        params=off,
                        distributions=self.distributions,
                        value=start.score,
                        intermediate_values={r.epoch: r.val_acc for r in history if math.isfinite(r.val_acc)},
                        user_attrs={"candidate": start.winner.name, "role": "unregularized"},
                    )
                )
        else:
            self.first_name = first.name
            if not earlier:
                self.study.enqueue_trial(off)
        for trial in earlier:  # adopt what an interrupted attempt asked, so the replay asks nothing twice
            if trial.user_attrs.get("role") == "unregularized" or trial.state == optuna.trial.TrialState.WAITING:
                continue
            if trial.state == optuna.trial.TrialState.RUNNING:
                self._adopt(optuna.trial.Trial(self.study, trial._trial_id))
            else:
                self.told.add(self._adopt(trial))

    def _adopt(self, trial: optuna.trial.Trial | optuna.trial.FrozenTrial) -> str:
        candidate = regularized(self.start.winner, trial.params, regularization_name(trial.params))
        if candidate.name in self.candidates:  # the sampler repeated itself: same trial, same key
            candidate = replace(candidate, name=f"{candidate.name} #{trial.number}")
        self.asked[candidate.name] = trial
        self.candidates[candidate.name] = candidate
        return candidate.name

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        """Trials are asked in batches of `regularization_in_flight` and told only when the whole batch is done.

        Batch boundaries are fixed by the trial index, whether the runner trains the batch one
        by one or all at once, so TPE sees the same history and a parallel run decides as a
        serial one does.
        """
        enqueued = 0 if self.first_name == self.start.winner.name else 1  # the unregularized first trial, when trained here
        batch, total = self.plan.regularization_in_flight, self.plan.regularization_trials + enqueued
        while len(self.asked) % batch and len(self.asked) < total:
            self._ask()  # finish a batch an interrupted attempt left half asked, before any of it runs
        pending = [request for name in self.asked for request in self.missing(self.candidates[name], done)]
        if pending:
            return pending
        names = [self._ask() for _ in range(min(batch, total - len(self.asked)))]
        return [request for name in names for request in self.requests(self.candidates[name])]

    def _ask(self) -> str:
        # Seeded by (search seed, trial index): a resumed study samples exactly what an uninterrupted one would.
        self.study.sampler = regularization_sampler(self.plan, len(self.asked))
        return self._adopt(self.study.ask(self.distributions))

    def on_epoch(self, request: TrialRequest, record: EpochRecord) -> bool:
        trial = self.asked.get(request.candidate)
        if trial is None or request.repeat != 0 or request.candidate in self.told:
            return False
        return report_epoch(trial, record)  # type: ignore[arg-type]

    def remote_trial(self, request: TrialRequest) -> RemoteTrial | None:
        trial = self.asked.get(request.candidate)
        if trial is None or request.repeat != 0 or request.candidate in self.told:
            return None
        return RemoteTrial(self.study.study_name, trial._trial_id, self.study.pruner)

    def observe(self, outcomes: list[TrialOutcome]) -> None:
        done_names = {o.request.candidate for o in outcomes}
        for name, trial in self.asked.items():
            if name in self.told or name not in done_names:
                continue
            group = [o for o in outcomes if o.request.candidate == name]
            if any(o.status == "pruned" for o in group):
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            elif any(o.status == "failed" for o in group):
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, mean_score(group))
            self.told.add(name)

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        groups = group_by_candidate(done)
        scored = [(self.start.winner, self.start.score, "unregularized stage-2 winner")] if self.first_name == self.start.winner.name else []
        entries = []
        for name in self.asked:
            group = groups.get(name, [])
            status = "pruned" if any(o.status == "pruned" for o in group) else "failed" if any(o.status == "failed" for o in group) else "ok"
            score = mean_score(group)
            entries.append(self.entry(status if status != "ok" else "tried", f"{name}: val_acc {fmt(score)} ({status})", val_acc=score))
            if status == "ok":
                scored.append((self.candidates[name], score, "regularized"))
        winner, score, _ = max(scored, key=lambda item: item[1])  # ties: the earlier (less regularized) one
        first_score = self.start.score
        entries.append(
            self.entry(
                "selected",
                f"{winner.name} at {fmt(score)} vs unregularized {fmt(first_score)} "
                f"({len(self.asked)} Optuna trials, TPE + median pruner)",
                val_acc=score,
                unregularized_val_acc=first_score,
            )
        )
        return StageResult(self.name, winner, score, tuple(entries), self.trial_decisions(done, {winner.name}), winner_outcomes=_outcomes_of(winner, done))


class FinalStage(Stage):
    """Stage 4: the winner retrained with fresh seeds; the only stage that reads the test split."""

    name, index = "final", 4

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study)
        self.start = start
        self.candidates = [
            replace(start.winner, name=f"final seed {i}", params=(("seed_index", i),), parents=()) for i in range(plan.final_seeds)
        ]

    def requests_for(self, index: int) -> TrialRequest:
        candidate = self.candidates[index]
        return TrialRequest(
            stage=self.name,
            candidate=candidate.name,
            arch=candidate.arch,
            train=candidate.train,
            seed=self.plan.seed + 1000 + index,  # seeds no earlier stage used
            data_identity=self.plan.data_identity,
            params=candidate.params,
            evaluate_test=True,
        )

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        finished = {o.request.key for o in done}
        return [r for r in (self.requests_for(i) for i in range(len(self.candidates))) if r.key not in finished]

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        ok = [o for o in done if o.status == "ok" and o.result is not None and o.result.test_acc is not None]
        if not ok:
            raise SearchFailed("every final-stage trial failed; see the final stage's trial runs for the errors.")
        val = [o.result.best_val_acc for o in ok]
        test = [o.result.test_acc for o in ok]
        metrics = {
            "val_acc_mean": statistics.fmean(val),
            "val_acc_std": statistics.stdev(val) if len(val) > 1 else 0.0,
            "test_acc": statistics.fmean(test),
            "test_acc_std": statistics.stdev(test) if len(test) > 1 else 0.0,
        }
        best = max(ok, key=lambda o: o.result.best_val_acc)  # the model to log: chosen by validation, not test
        entry = self.entry(
            "final",
            f"{self.start.winner.name} over {len(ok)} seeds: val_acc {metrics['val_acc_mean']:.4f} ± {metrics['val_acc_std']:.4f}, "
            f"test_acc {metrics['test_acc']:.4f} ± {metrics['test_acc_std']:.4f}; logged model: {best.request.candidate} (best validation)",
            **metrics,
        )
        return StageResult(
            self.name,
            self.start.winner,
            metrics["val_acc_mean"],
            (entry,),
            self.trial_decisions(done, {o.request.candidate for o in ok}),
            metrics=metrics,
            winner_outcomes=(best,),
        )
