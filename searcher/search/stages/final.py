"""Stage 4: the winner retrained with fresh seeds; the only stage that reads the test split."""

from __future__ import annotations

import statistics
from dataclasses import replace

import optuna

from searcher.search.plan import SearchPlan
from searcher.search.stages.base import SearchFailed, Stage, StageResult
from searcher.search.trials import TrialOutcome, TrialRequest


class FinalStage(Stage):
    """Stage 4: the winner retrained with fresh seeds; the only stage that reads the test split."""

    name, index = "final", 4

    def __init__(self, plan: SearchPlan, study: optuna.Study, start: StageResult):
        super().__init__(plan, study)
        self.start = start
        self.candidates = [
            replace(start.winner, name=f"final seed {i}", params=(("seed_index", i),), parents=(), rungs=()) for i in range(plan.final_seeds)
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
            family=self.plan.family,
            metric=self.plan.metric,
        )

    def next_trials(self, done: list[TrialOutcome]) -> list[TrialRequest]:
        finished = {o.request.key for o in done}
        return [r for r in (self.requests_for(i) for i in range(len(self.candidates))) if r.key not in finished]

    def conclude(self, done: list[TrialOutcome]) -> StageResult:
        ok = [o for o in done if o.status == "ok" and o.result is not None and o.result.test_acc is not None]
        if not ok:
            raise SearchFailed("every final-stage trial failed; see the final stage's trial runs for the errors.")
        results = [o.result for o in ok if o.result is not None and o.result.test_acc is not None]  # (all of them)
        val = [r.best_val_acc for r in results]
        test = [r.test_acc for r in results if r.test_acc is not None]
        metrics = mean_and_spread(val, test, "acc")  # the scores (accuracy itself, for a classifier)
        metric = self.plan.metric
        if metric.name != "accuracy":  # and the metric in the target's units: what the user reads
            metrics |= mean_and_spread([metric.shown(v) for v in val], [metric.shown(t) for t in test], metric.short)
        best = ok[val.index(max(val))]  # the model to log: chosen by validation, not test (the first of equals)
        score = statistics.fmean(o.score for o in ok)  # the number every other stage shows: the seeds' mean score
        short = metric.short
        entry = self.entry(
            "final",
            f"{self.start.winner.name} over {len(ok)} seeds: score {score:.4f}, "
            f"best-epoch val_{short} {metrics[f'val_{short}_mean']:.4f} ± {metrics[f'val_{short}_std']:.4f}, "
            f"test_{short} {metrics[f'test_{short}']:.4f} ± {metrics[f'test_{short}_std']:.4f}; logged model: {best.request.candidate} (best validation)",
            score=score,
            **metrics,
        )
        return StageResult(
            self.name,
            self.start.winner,
            score,
            (entry,),
            self.trial_decisions(done, {o.request.candidate for o in ok}),
            metrics=metrics,
            winner_outcomes=(best,),
        )


def mean_and_spread(val: list[float], test: list[float], short: str) -> dict[str, float]:
    """Mean ± std over the final seeds: val_<short>_mean/_std (the kept epochs) and test_<short>/_std."""
    return {
        f"val_{short}_mean": statistics.fmean(val),
        f"val_{short}_std": statistics.stdev(val) if len(val) > 1 else 0.0,
        f"test_{short}": statistics.fmean(test),
        f"test_{short}_std": statistics.stdev(test) if len(test) > 1 else 0.0,
    }
