"""Stage 3: regularizers by Optuna (TPE + median pruner), the unregularized winner first."""

from __future__ import annotations

import math
from dataclasses import replace

import optuna

from searcher.crash import crash_point
from searcher.search.evidence import Comparison, images_wrong, wins_needed
from searcher.search.plan import SearchPlan
from searcher.search.stages.base import Stage, StageResult, fmt
from searcher.search.studies import RemoteTrial, regularization_sampler, report_epoch
from searcher.search.trials import Candidate, TrialOutcome, TrialRequest, mean_score
from searcher.train.trainer import EpochRecord


def regularized(candidate: Candidate, params: dict[str, float], name: str) -> Candidate:
    train = candidate.train
    train = replace(
        train,
        weight_decay=params.get("weight_decay", train.weight_decay),
        label_smoothing=params.get("label_smoothing", train.label_smoothing),
        augment=params.get("augment", train.augment),
    )
    arch = candidate.arch.with_dropout(params.get("dropout", candidate.arch.dropout))
    same = (arch, train) == (candidate.arch, candidate.train)  # the unregularized network is the trial already trained, rungs and all
    return Candidate(name, arch, train, tuple(sorted(params.items())), rungs=candidate.rungs if same else ())


def may_skip(plan: SearchPlan) -> bool:
    """Can the plan's regularization stage know its decision without its trials (`RegularizationStage.futility`)? Only
    where accuracy alone decides it: label smoothing varies in the space, so no regularized trial's losses compare with
    the unregularized one's, and that one is the depth winner's trials (not retrained from scratch: warm starts)."""
    smoothing = next((r for r in plan.regularizers if r.name == "label_smoothing"), None)
    return plan.metric.name == "accuracy" and smoothing is not None and smoothing.low < smoothing.high and not plan.warm_start


def regularization_name(params: dict[str, float]) -> str:
    short = {"weight_decay": "wd", "dropout": "do", "label_smoothing": "ls", "augment": "aug"}
    return "reg " + " ".join(f"{short.get(k, k)}={v:.2g}" for k, v in sorted(params.items()))


class RegularizationStage(Stage):
    """Stage 3: an Optuna study (TPE + a pruner) over regularizers, the unregularized winner first."""

    name, index = "regularization", 3

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study, start.winner_outcomes)
        self.start = start
        self.distributions: dict[str, optuna.distributions.BaseDistribution] = {
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
            # its extra seeds, if a comparison asks for them, are recorded with the regularizers it has: all off
            self.candidates[start.winner.name] = replace(start.winner, params=tuple(sorted(off.items())))
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
            if set(trial.params) != set(self.distributions):
                # created but never sampled (killed in between: crash point "trial.asked"), so nothing trained for it:
                # failed (TPE ignores failed trials) and never adopted, on this resume or a later one (adopted, it was a
                # trial without regularizers, scored as the unregularized one). The next ask, seeded by the same index,
                # samples what it would have; an ask that had taken the queued first trial off the queue puts it back.
                if trial.state == optuna.trial.TrialState.RUNNING:
                    if "fixed_params" in trial.system_attrs:
                        self.study.enqueue_trial(trial.system_attrs["fixed_params"])
                    self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            elif trial.state == optuna.trial.TrialState.RUNNING:
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
        if not self.asked:  # (once a trial is asked, the stage runs to its end)
            why, pending = self.futility(done)
            if why or pending:
                return pending
        enqueued = 0 if self.first_name == self.start.winner.name else 1  # the unregularized first trial, when trained here
        batch, total = self.plan.regularization_in_flight, self.plan.regularization_trials + enqueued
        while len(self.asked) % batch and len(self.asked) < total:
            self._ask()  # finish a batch an interrupted attempt left half asked, before any of it runs
        pending = [request for name in self.asked for request in self.missing(self.candidates[name], done)]
        if pending:
            return pending
        if len(self.asked) >= total:  # every trial told: more seeds of the two finalists while their comparison is inconclusive
            return self.verdict(done)[2]
        names = [self._ask() for _ in range(min(batch, total - len(self.asked)))]
        return [request for name in names for request in self.requests(self.candidates[name])]

    def futility(self, done: list[TrialOutcome]) -> tuple[str, list[TrialRequest]]:
        """Can any regularized network replace the unregularized one? (why not, or ""; and the seeds to train to know).

        With label smoothing in the space, no regularized trial has the unregularized one's loss, so
        accuracy alone decides (evidence.py), and McNemar's test needs a challenger to win at least
        `wins_needed` images even when it loses none: it can win only images the unregularized
        network got wrong, on the seeds a comparison pairs (up to `search.max_repeats`). When those seeds
        get fewer images wrong than that, no regularized network can be better beyond noise, and
        the stage is skipped: the decision it would reach, for none of its trials' compute. Its
        unregularized network's untrained seeds are trained first (they are what an inconclusive
        comparison would ask for). Errors only add up as seeds are trained, so the answer never
        changes once given: a resumed search skips, or runs, as the first attempt did.
        """
        if not may_skip(self.plan) or self.first_name != self.start.winner.name:
            return "", []
        unregularized = self.candidates[self.first_name]
        needed = wins_needed(self.plan.significance)
        seeds = self.outcomes_for(unregularized, done)[: self.plan.max_repeats]
        wrong = [images_wrong(outcome) for outcome in seeds]
        errors = sum(w or 0 for w in wrong)
        if None in wrong or errors >= needed:
            return "", []
        if pending := self.missing(unregularized, done, self.plan.max_repeats):
            return "", pending
        seeds_words = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
        return (
            f"skipped: {self.first_name} gets {errors} {self.plan.unit}s wrong over its {seeds_words}, "
            f"and a regularized network would have to win at least {needed} to be better beyond noise (McNemar p < "
            f"{self.plan.significance}; label smoothing leaves accuracy alone to decide): none can, so none is trained"
        ), []

    def verdict(self, done: list[TrialOutcome]) -> tuple[Candidate, Comparison | None, list[TrialRequest]]:
        """(winner, the comparison that chose it, seeds still to train): the best regularized trial replaces the
        unregularized network only when it is better beyond noise and by more than `regularization_min_improvement`."""
        unregularized = self.candidates[self.first_name]
        regularized_ok = [
            (candidate, mean_score(self.outcomes_for(candidate, done)))
            for name, candidate in self.candidates.items()
            if name != self.first_name and self.status(candidate, done) == "ok"
        ]
        if not regularized_ok:
            return unregularized, None, []
        best = max(regularized_ok, key=lambda pair: pair[1])[0]  # ties: the earlier asked
        comparison, pending = self.contest(best, unregularized, done, self.plan.regularization_min_improvement)
        return (best if comparison.verdict == "better" else unregularized), comparison, pending

    def status(self, candidate: Candidate, done: list[TrialOutcome]) -> str:
        group = self.outcomes_for(candidate, done)
        return "pruned" if any(o.status == "pruned" for o in group) else "failed" if any(o.status == "failed" for o in group) else "ok"

    def _ask(self) -> str:
        # Seeded by (search seed, trial index): a resumed study samples exactly what an uninterrupted one would.
        self.study.sampler = regularization_sampler(self.plan, len(self.asked))
        trial = self.study.ask()
        crash_point("trial.asked")  # (a test hook: a kill here leaves a RUNNING trial without parameters, see __init__)
        for r in self.plan.regularizers:  # what study.ask(self.distributions) samples, in the same order
            trial.suggest_float(r.name, r.low, r.high, log=r.log)
        return self._adopt(trial)

    def withdraw(self, requests: list[TrialRequest], done: list[TrialOutcome]) -> None:
        """Asked trials that never trained end FAILED in the study (not RUNNING forever) and play no part in the verdict.
        A resume adopts them as told, asks for them again, is stopped at the same point and withdraws them again."""
        for name in dict.fromkeys(request.candidate for request in requests):
            if name == self.first_name or self.outcomes_for(self.candidates[name], done):
                continue  # (the unregularized network, and a finalist whose extra seeds were asked, stay in the verdict)
            trial = self.asked.pop(name)
            del self.candidates[name]
            if name not in self.told and isinstance(trial, optuna.trial.Trial):
                trial.set_user_attr("withdrawn", "search.budget stopped the stage before it trained")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.told.add(name)

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
            if name in self.told or name not in done_names or not isinstance(trial, optuna.trial.Trial):
                continue  # (a FrozenTrial was adopted from an earlier attempt already told)
            group = [o for o in outcomes if o.request.candidate == name]
            if any(o.status == "pruned" for o in group):
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            elif any(o.status == "failed" for o in group):
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, mean_score(group))
            self.told.add(name)
            crash_point("trial.told")  # (a test hook: searcher/crash.py)

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        if not self.asked and (why := self.futility(done)[0]):
            winner = self.candidates[self.first_name]
            seeds = self.outcomes_for(winner, done)
            score = mean_score(seeds)
            entry = self.entry("selected", f"{winner.name} at {fmt(score)}; {why}", score=score, unregularized_score=score)
            return StageResult(self.name, winner, score, (entry,), self.trial_decisions(done, {winner.name}), winner_outcomes=tuple(seeds))
        entries = []
        for name in self.asked:
            candidate = self.candidates[name]
            status, score = self.status(candidate, done), mean_score(self.outcomes_for(candidate, done))
            entries.append(self.entry(status if status != "ok" else "tried", f"{name}: score {fmt(score)} ({status})", score=score))
        winner, comparison, _ = self.verdict(done)
        score = mean_score(self.outcomes_for(winner, done))
        first_score = mean_score(self.outcomes_for(self.candidates[self.first_name], done))
        if comparison is None:
            why = "no regularized trial finished"
        else:
            keep = "take the regularized one" if comparison.verdict == "better" else "keep the unregularized one"
            why = f"{comparison.describe()} (needs p < {self.plan.significance} and {self.plan.metric.beyond(self.plan.regularization_min_improvement)}): {keep}"
        entries.append(
            self.entry(
                "selected",
                f"{winner.name} at {fmt(score)}; {why} ({len(self.asked)} Optuna trials, TPE + median pruner)",
                score=score,
                unregularized_score=first_score,
                **(comparison.numbers() if comparison else {}),
            )
        )
        return StageResult(
            self.name, winner, score, tuple(entries), self.trial_decisions(done, {winner.name}), winner_outcomes=tuple(self.outcomes_for(winner, done))
        )
