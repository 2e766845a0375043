"""Reading a search back from MLflow: what a resume needs.

A re-run with the same `search.name` finds its search run here, marks runs a
dead process left RUNNING, and gets every completed trial by its trial key, so
the controller's replay reuses them instead of training them again.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.tracking.recorder import EPOCH_METRICS, EVIDENCE_FILES, STATE_FILE
from searcher.train.trainer import EpochRecord, TrainResult

# Settings that do not change what a search computes, so a resume may differ in them.
NEUTRAL_SETTINGS = ("tracking.", "device", "data_dir", "dataset.mirror", "search.name", "execution.", "train.checkpoint_seconds")


class CheckpointError(Exception):
    """A stored trial checkpoint is unreadable (truncated or tampered); the message says which and what to do."""


@dataclass
class PriorSearch:
    run: Run
    stage_runs: dict[str, str] = field(default_factory=dict)  # stage name -> run id
    completed: dict[str, Run] = field(default_factory=dict)  # trial key -> trial run with a recorded outcome
    orphans: int = 0  # runs found RUNNING and marked FAILED

    @property
    def finished(self) -> bool:
        return self.run.info.status == "FINISHED"


def _runs(client: MlflowClient, experiment_id: str, query: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def find_search(client: MlflowClient, experiment_id: str, name: str) -> Run | None:
    found = _runs(client, experiment_id, f"tags.`searcher.role` = 'search' and tags.`searcher.search_name` = '{name}'")
    return max(found, key=lambda run: run.info.start_time) if found else None


def differing_settings(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """Settings whose values differ between the stored search and this run (neutral ones excluded)."""
    keys = sorted(set(stored) | set(current))
    return [
        f"{key} ({stored.get(key, '<unset>')} -> {current.get(key, '<unset>')})"
        for key in keys
        if not key.startswith(NEUTRAL_SETTINGS) and stored.get(key) != current.get(key)
    ]


def load_prior(client: MlflowClient, experiment_id: str, search: Run) -> PriorSearch:
    """The search's stage runs and completed trials; trials a dead process left RUNNING become FAILED."""
    prior = PriorSearch(search)
    descendants = _runs(client, experiment_id, f"tags.`searcher.search_run_id` = '{search.info.run_id}'")
    for run in sorted(descendants, key=lambda r: r.info.start_time):
        tags = run.data.tags
        if tags.get("searcher.role") == "stage":
            prior.stage_runs[tags["searcher.stage"]] = run.info.run_id  # reopened by the resumed search
        elif run.info.status == "RUNNING":  # the trial in flight when its process died: it is retrained
            client.set_tag(run.info.run_id, "searcher.orphaned", f"left RUNNING by a process that died; found at resume {time.ctime()}")
            client.set_terminated(run.info.run_id, "FAILED")
            prior.orphans += 1
        elif tags.get("searcher.role") == "trial" and "searcher.status" in tags:
            prior.completed[tags["searcher.trial_key"]] = run
    return prior


def load_outcome(client: MlflowClient, request: TrialRequest, run: Run) -> TrialOutcome:
    """Rebuild a trial's outcome (curves, scores, weights) from its run, without training."""
    tags, metrics = run.data.tags, run.data.metrics
    run_id = run.info.run_id
    result = None
    if "searcher.behavior" in tags:
        histories = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in EPOCH_METRICS}
        epochs = int(metrics.get("epochs", 0))
        history = tuple(
            EpochRecord(epoch, *(histories[key].get(epoch, math.nan) for key in EPOCH_METRICS), seconds=0.0)
            for epoch in range(1, epochs + 1)
        )
        result = TrainResult(
            behavior=tags["searcher.behavior"],  # type: ignore[arg-type]
            history=history,
            best_val_acc=metrics["best_val_acc"],
            best_epoch=int(metrics["best_epoch"]),
            train_seconds=metrics["train_seconds"],
            images_per_second=metrics["images_per_second"],
            stopped_early=tags.get("searcher.stopped_early") == "true",
            test_acc=metrics.get("test_acc"),
            test_loss=metrics.get("test_loss"),
            initial_val_acc=metrics.get("initial_val_acc"),
            score=metrics.get("score"),
            **load_artifacts(client, run_id),
        )
    return TrialOutcome(request, tags["searcher.status"], result, error=tags.get("searcher.error"))  # type: ignore[arg-type]


def load_artifacts(client: MlflowClient, run_id: str) -> dict:
    """A trial's weights and per-image validation evidence, where it recorded them."""
    import base64

    names = {artifact.path for artifact in client.list_artifacts(run_id)}
    found: dict = {"state": load_state(client, run_id) if STATE_FILE in names else None}
    with tempfile.TemporaryDirectory() as folder:
        for field_name, file_name in EVIDENCE_FILES.items():
            found[field_name] = (
                base64.b64decode(Path(client.download_artifacts(run_id, file_name, folder)).read_text()) if file_name in names else None
            )
    return found


def load_state(client: MlflowClient, run_id: str) -> dict | None:
    """A trial's weights, loaded safely (weights_only: tensors and plain containers, never arbitrary pickles)."""
    import torch

    with tempfile.TemporaryDirectory() as folder:
        path = Path(client.download_artifacts(run_id, STATE_FILE, folder))
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(
                f"the checkpoint {STATE_FILE} of trial run {run_id} is unreadable or was tampered with "
                f"({type(error).__name__}: {error}); delete that run (mlflow runs delete --run-id {run_id}) "
                "and re-run to retrain it, or start a new search.name."
            ) from None


@dataclass(frozen=True)
class StoredStage:
    stage: str
    winner: str
    val_acc: float
    decision: str  # the stage's last decision-log line


STAGE_ORDER = ("baseline", "width", "depth", "regularization", "final", "transfer")


def stored_stages(client: MlflowClient, prior: PriorSearch) -> list[StoredStage]:
    """Each stage's winner and final decision, as a finished search recorded them."""
    import json

    stages = []
    for stage in sorted(prior.stage_runs, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else 99):
        run = client.get_run(prior.stage_runs[stage])
        with tempfile.TemporaryDirectory() as folder:
            decisions = json.loads(Path(client.download_artifacts(run.info.run_id, "decisions.json", folder)).read_text())
        stages.append(
            StoredStage(stage, run.data.tags.get("searcher.winner", ""), run.data.metrics.get("best_val_acc", math.nan), decisions[-1]["reason"] if decisions else "")
        )
    return stages
