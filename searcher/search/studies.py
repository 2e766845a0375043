"""One Optuna study per stage, in one storage (SQLite beside the MLflow database by default; searcher/optuna_storage.py
opens the storage a string names)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
import sqlalchemy.exc

from searcher.optuna_storage import open_storage
from searcher.search.plan import SearchPlan
from searcher.train.trainer import EpochRecord


def regularization_sampler(plan: SearchPlan, trial_index: int) -> optuna.samplers.TPESampler:
    """TPE seeded by (search seed, trial index): what it samples depends only on the history it is shown.

    `constant_liar` makes trials asked but not yet told count as bad results, so a batch of
    trials in flight spreads out instead of sampling the same point (Optuna's parallel TPE).
    """
    startup = max(1, plan.regularization_trials // 3)  # random trials before TPE models the space
    return optuna.samplers.TPESampler(seed=plan.seed * 100_003 + trial_index, n_startup_trials=startup, constant_liar=True)


def pruner(plan: SearchPlan) -> optuna.pruners.BasePruner:
    # Judges a trial only against COMPLETE trials: those told in earlier batches, never ones still in flight,
    # so a pruning decision does not depend on which concurrent trial reported first.
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=plan.pruner_warmup_epochs)


class StudyStorageLost(Exception):
    """The Optuna storage failed while a trial reported to it: the search stops (a re-run resumes), the trial is not failed.

    Failed, it would be recorded as a failed trial and replayed as one on resume."""


STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError, OSError)  # RDB and journal storages


def storage_lost(error: BaseException) -> StudyStorageLost:
    """A StudyStorageLost saying what the storage's innermost error said (e.g. "OperationalError: disk I/O error")."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    return StudyStorageLost(f"{type(root).__name__}: {next(iter(str(root).strip().splitlines()), '')}")


def report_epoch(trial: optuna.trial.Trial, record: EpochRecord) -> bool:
    """Report one epoch's validation accuracy; True when the pruner says stop."""
    try:
        trial.report(record.val_acc, record.epoch)
        return trial.should_prune()
    except STORAGE_ERRORS as error:
        raise storage_lost(error) from error


@dataclass(frozen=True)
class RemoteTrial:
    """An asked trial that another process reports to through the shared storage (ids, not live objects)."""

    study_name: str
    trial_id: int
    pruner: optuna.pruners.BasePruner

    def reporter(self, storage: str) -> Callable[[EpochRecord], bool]:
        try:
            study = optuna.load_study(study_name=self.study_name, storage=open_storage(storage), pruner=self.pruner)
        except STORAGE_ERRORS as error:
            raise storage_lost(error) from error
        trial = optuna.trial.Trial(study, self.trial_id)
        return lambda record: report_epoch(trial, record)


class StudyBook:
    """Opens `<search name>/<stage>` studies: TPE and a median pruner, both seeded by the search seed."""

    def __init__(self, storage: str | optuna.storages.BaseStorage | None, search_name: str, plan: SearchPlan):
        self.storage = open_storage(storage) if isinstance(storage, str) else storage
        self.search_name = search_name
        self.plan = plan

    def open(self, stage: str) -> optuna.Study:
        return optuna.create_study(
            storage=self.storage,
            study_name=f"{self.search_name}/{stage}",
            direction="maximize",
            sampler=regularization_sampler(self.plan, 0),
            pruner=pruner(self.plan),
            load_if_exists=True,
        )
