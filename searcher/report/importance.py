"""fANOVA importances of the regularizers, computed only where there are enough trials to mean something.

fANOVA fits a random forest to (settings, score) pairs and splits the score's variance among
the settings. On a handful of trials the forest fits noise and the split reads like a ranking
that is not there (on 3 trials every parameter came out between 0.24 and 0.27), so below
MIN_TRIALS finished settings the report says so instead of drawing bars.
"""

from __future__ import annotations

import math

from searcher.report.candidates import candidates
from searcher.tracking.records import TrialRecord

MIN_TRIALS = 10  # distinct finished settings: below this fANOVA's split is noise, not a ranking


def importances(trials: list[TrialRecord]) -> tuple[dict[str, float], str]:
    """fANOVA importances of the stage's parameters (`stage.*` params), or {} and why there are none.

    Seeds of one setting count once (their mean score): repeats add nothing about the parameters.
    """
    names = sorted({k.removeprefix("stage.") for t in trials for k in t.params if k.startswith("stage.")})
    done = [
        c for c in candidates(trials)
        if c.decision in ("selected", "rejected") and math.isfinite(c.score) and all(f"stage.{n}" in c.first.params for n in names)
    ]
    varied = [n for n in names if len({c.first.params[f"stage.{n}"] for c in done}) > 1]
    if len(done) < MIN_TRIALS or not varied:
        return {}, f"too few trials for importances ({len(done)} finished settings; fANOVA needs at least {MIN_TRIALS} that vary a parameter)"
    import optuna

    values = {n: [float(c.first.params[f"stage.{n}"]) for c in done] for n in varied}
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        n: optuna.distributions.FloatDistribution(min(v), max(v)) for n, v in values.items()
    }
    study = optuna.create_study(direction="maximize", storage=optuna.storages.InMemoryStorage())
    for index, candidate in enumerate(done):
        params = {n: values[n][index] for n in varied}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=candidate.score))
    try:
        found = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as error:  # fANOVA can fail on degenerate data: say so instead of failing the report
        return {}, f"importances unavailable ({type(error).__name__})"
    return dict(found), f"fANOVA over {len(done)} finished settings: a rough guide, not a significance test"
