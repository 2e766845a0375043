"""One Optuna study per stage, in one storage (SQLite beside the MLflow database by default)."""

from __future__ import annotations

import optuna

from searcher.search.plan import SearchPlan


def regularization_sampler(plan: SearchPlan, trial_index: int) -> optuna.samplers.TPESampler:
    """TPE seeded by (search seed, trial index): what it samples depends only on the history it is shown."""
    startup = max(1, plan.regularization_trials // 3)  # random trials before TPE models the space
    return optuna.samplers.TPESampler(seed=plan.seed * 100_003 + trial_index, n_startup_trials=startup)


class StudyBook:
    """Opens `<search name>/<stage>` studies: TPE and a median pruner, both seeded by the search seed."""

    def __init__(self, storage: str | optuna.storages.BaseStorage | None, search_name: str, plan: SearchPlan):
        self.storage = storage
        self.search_name = search_name
        self.plan = plan

    def open(self, stage: str) -> optuna.Study:
        return optuna.create_study(
            storage=self.storage,
            study_name=f"{self.search_name}/{stage}",
            direction="maximize",
            sampler=regularization_sampler(self.plan, 0),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=self.plan.pruner_warmup_epochs),
            load_if_exists=True,
        )
