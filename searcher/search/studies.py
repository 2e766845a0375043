"""One Optuna study per stage, in one storage (SQLite beside the MLflow database by default)."""

from __future__ import annotations

import optuna

from searcher.search.plan import SearchPlan


class StudyBook:
    """Opens `<search name>/<stage>` studies: TPE and a median pruner, both seeded by the search seed."""

    def __init__(self, storage: str | optuna.storages.BaseStorage | None, search_name: str, plan: SearchPlan):
        self.storage = storage
        self.search_name = search_name
        self.plan = plan

    def open(self, stage: str) -> optuna.Study:
        startup = max(1, self.plan.regularization_trials // 3)  # random trials before TPE models the space
        return optuna.create_study(
            storage=self.storage,
            study_name=f"{self.search_name}/{stage}",
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=self.plan.seed, n_startup_trials=startup),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=self.plan.pruner_warmup_epochs),
            load_if_exists=True,
        )
