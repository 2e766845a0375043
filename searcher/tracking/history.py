"""Reading a search back from MLflow: what a resume needs.

A re-run with the same `search.name` finds its search run here, marks runs a
dead owner left RUNNING, and gets every completed trial by its trial key, so
the controller's replay reuses them instead of training them again. A run is
known to be dead from the search's lease (lease.py), never guessed: the process
reading it holds the lease, so no other live process is writing that run.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.tracking.lease import Lease
from searcher.tracking.queries import descendants
from searcher.tracking.retry import RetryingClient
from searcher.tracking.schema import EPOCH_METRICS, Files, Metrics, Roles, Tags
from searcher.train.rungs import RungStop
from searcher.train.trainer import EpochRecord, TrainResult

Client = MlflowClient | RetryingClient  # the recorder's client retries; a reader's may not

# Settings that do not change what a search computes, so a resume may differ in them.
NEUTRAL_SETTINGS = ("tracking.", "device", "data_dir", "dataset.mirror", "search.name", "execution.", "train.checkpoint_seconds")


class CheckpointError(Exception):
    """A stored trial checkpoint is unreadable (truncated or tampered); the message says which and what to do."""


@dataclass
class PriorSearch:
    run: Run
    stage_runs: dict[str, str] = field(default_factory=dict)  # stage name -> run id
    completed: dict[str, Run] = field(default_factory=dict)  # trial key -> trial run with a recorded outcome
    orphans: int = 0  # runs a dead owner left RUNNING, marked FAILED

    @property
    def finished(self) -> bool:
        return self.run.info.status == "FINISHED"

    @property
    def clock_seconds(self) -> float:
        """How long the earlier attempts ran, as their last recorded trial read the search's clock (searcher/clock.py)."""
        return max((run.data.metrics.get(Metrics.SEARCH_CLOCK, 0.0) for run in self.completed.values()), default=0.0)


def differing_settings(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """Settings whose values differ between the stored search and this run (neutral ones excluded)."""
    keys = sorted(set(stored) | set(current))
    return [
        f"{key} ({stored.get(key, '<unset>')} -> {current.get(key, '<unset>')})"
        for key in keys
        if not key.startswith(NEUTRAL_SETTINGS) and stored.get(key) != current.get(key)
    ]


def load_prior(client: Client, experiment_id: str, search: Run, lease: Lease) -> PriorSearch:
    """The search's stage runs and completed trials; trials a dead owner left RUNNING become FAILED.

    `lease` is this process's lease on the search: while it is held no other live process owns a run of it."""
    prior = PriorSearch(search)
    for run in descendants(client, experiment_id, search.info.run_id):
        tags = run.data.tags
        if tags.get(Tags.ROLE) == Roles.STAGE:
            prior.stage_runs[tags[Tags.STAGE]] = run.info.run_id  # reopened by the resumed search
        elif run.info.status == "RUNNING":  # the trial in flight when its owner died: it is retrained
            note = f"{lease.orphan_note(tags.get(Tags.OWNER))} at {time.ctime()}"
            client.set_tag(run.info.run_id, Tags.ORPHANED, note[:5000])
            client.set_terminated(run.info.run_id, "FAILED")
            prior.orphans += 1
        elif tags.get(Tags.ROLE) == Roles.TRIAL and Tags.STATUS in tags and run.info.status in ("FINISHED", "FAILED") and Tags.ORPHANED not in tags:
            # ended by its own recorder (its outcome, weights and evidence all logged); a run stopped between its
            # outcome tags and its evidence (KILLED by a signal, or orphaned) is retrained, never reused half-recorded
            prior.completed[tags[Tags.TRIAL_KEY]] = run
    return prior


def load_outcome(client: Client, request: TrialRequest, run: Run) -> TrialOutcome:
    """Rebuild a trial's outcome (curves, scores, weights) from its run, without training."""
    tags, metrics = run.data.tags, run.data.metrics
    run_id = run.info.run_id
    result = None
    if Tags.BEHAVIOR in tags:
        histories = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in EPOCH_METRICS}
        epochs = int(metrics.get(Metrics.EPOCHS, 0))
        history = tuple(
            EpochRecord(epoch, **{key: histories[key].get(epoch, math.nan) for key in EPOCH_METRICS}, seconds=0.0)
            for epoch in range(1, epochs + 1)
        )
        result = TrainResult(
            behavior=tags[Tags.BEHAVIOR],  # type: ignore[arg-type]
            history=history,
            best_val_acc=metrics[Metrics.BEST_VAL_ACC],
            best_epoch=int(metrics[Metrics.BEST_EPOCH]),
            train_seconds=metrics[Metrics.TRAIN_SECONDS],
            images_per_second=metrics[Metrics.IMAGES_PER_SECOND],
            stopped_early=tags.get(Tags.STOPPED_EARLY) == "true",
            test_acc=metrics.get(Metrics.TEST_ACC),
            test_loss=metrics.get(Metrics.TEST_LOSS),
            initial_val_acc=metrics.get(Metrics.INITIAL_VAL_ACC),
            score=metrics.get(Metrics.SCORE),
            rung_stop=RungStop.from_dict(json.loads(tags[Tags.RUNG_STOP])) if Tags.RUNG_STOP in tags else None,
            **load_artifacts(client, run_id),
        )
    return TrialOutcome(request, tags[Tags.STATUS], result, error=tags.get(Tags.ERROR), elapsed=metrics.get(Metrics.SEARCH_CLOCK))  # type: ignore[arg-type]


def load_artifacts(client: Client, run_id: str) -> dict:
    """A trial's weights and per-image validation evidence, where it recorded them."""
    import base64

    names = {artifact.path for artifact in client.list_artifacts(run_id)}
    found: dict = {"state": load_state(client, run_id) if Files.STATE in names else None}
    with tempfile.TemporaryDirectory() as folder:
        for field_name, file_name in Files.EVIDENCE.items():
            found[field_name] = (
                base64.b64decode(Path(client.download_artifacts(run_id, file_name, folder)).read_text()) if file_name in names else None
            )
        if Files.RUNG_VALUES in names:
            by_epoch = json.loads(Path(client.download_artifacts(run_id, Files.RUNG_VALUES, folder)).read_text())
            found["rung_values"] = {int(epoch): base64.b64decode(packed) for epoch, packed in by_epoch.items()}
    return found


def load_state(client: Client, run_id: str) -> dict | None:
    """A trial's weights, loaded safely (weights_only: tensors and plain containers, never arbitrary pickles)."""
    import torch

    with tempfile.TemporaryDirectory() as folder:
        path = Path(client.download_artifacts(run_id, Files.STATE, folder))
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(
                f"the checkpoint {Files.STATE} of trial run {run_id} is unreadable or was tampered with "
                f"({type(error).__name__}: {error}); delete that run (mlflow runs delete --run-id {run_id}) "
                "and re-run to retrain it, or start a new search.name."
            ) from None
