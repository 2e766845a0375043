"""Reads a search back from the tracking store, and attaches report files to its runs.

Everything the report shows comes through `read_search`: runs, tags, params,
metric histories and each stage's decisions.json artifact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from searcher.report.records import STAGE_ORDER, Curve, ModelRecord, SearchRecord, StageRecord, TrialRecord

CURVES = ("train_loss", "val_loss", "val_acc", "lr")


class SearchNotFound(LookupError):
    """No search of that name (or run id) in the store; the message says where it looked."""


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _quote(value: str) -> str:
    if "'" in value:
        raise SearchNotFound(f"search names with a single quote cannot be looked up ({value!r}); pass the run id instead")
    return f"'{value}'"


def _all_experiment_ids(client: Any) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


def find_search_run(client: Any, search_name: str, experiment: str | None = None) -> str:
    """The most recent search run named `search_name` (in `experiment`, or in any experiment)."""
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise SearchNotFound(f"experiment {experiment!r} does not exist in {client.tracking_uri}")
        ids = [found.experiment_id]
    else:
        ids = _all_experiment_ids(client)
    filter_string = f"tags.`searcher.role` = 'search' and tags.`searcher.search_name` = {_quote(search_name)}"
    runs = client.search_runs(ids, filter_string, max_results=1, order_by=["attributes.start_time DESC"]) if ids else []
    if not runs:
        raise SearchNotFound(f"no search named {search_name!r} in {client.tracking_uri}; the names are the search runs' 'search NAME'")
    return runs[0].info.run_id


def latest_search_run(client: Any, experiment_id: str) -> Any | None:
    runs = client.search_runs([experiment_id], "tags.`searcher.role` = 'search'", max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def _children(client: Any, experiment_id: str, parent_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda r: r.info.start_time)


def _curves(client: Any, run_id: str) -> dict[str, Curve]:
    curves = {}
    for key in CURVES:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        if history:
            curves[key] = Curve(tuple(m.step for m in history), tuple(m.value for m in history))
    return curves


def _decisions(artifact_uri: str, folder: str) -> tuple[dict, ...]:
    """The stage run's decisions.json, read straight from its artifact location (no run lookups)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    os.makedirs(folder, exist_ok=True)
    try:
        path = get_artifact_repository(artifact_uri).download_artifacts("decisions.json", folder)
    except Exception:  # a stage that never finished has none
        return ()
    return tuple(json.loads(Path(path).read_text()))


def _trial(run: Any) -> TrialRecord:
    tags = run.data.tags
    return TrialRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        stage=tags.get("searcher.stage", ""),
        status=run.info.status,
        decision=tags.get("searcher.decision", ""),
        behavior=tags.get("searcher.behavior", ""),
        started_ms=run.info.start_time,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags={k: v for k, v in tags.items() if k.startswith("searcher.")},
    )


def _model(client: Any, run: Any) -> ModelRecord | None:
    logged = None
    try:
        models = client.search_logged_models(experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
        logged = f"models:/{models[0].model_id}" if models else None
    except Exception:  # stores without logged-model support
        pass
    try:
        versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    except Exception:  # stores without a model registry
        versions = []
    if versions:
        latest = max(versions, key=lambda v: int(v.version))
        return ModelRecord(f"models:/{latest.name}/{latest.version}", latest.name, str(latest.version), logged)
    return ModelRecord(logged, logged_uri=logged) if logged else None


def with_curves(client: Any, search: SearchRecord, run_ids: set[str]) -> SearchRecord:
    """The same record with the per-epoch curves of the trials in `run_ids` read in (one query per metric and trial)."""
    stages = []
    for stage in search.stages:
        trials = tuple(replace(t, curves=_curves(client, t.run_id)) if t.run_id in run_ids else t for t in stage.trials)
        stages.append(replace(stage, trials=trials))
    return replace(search, stages=tuple(stages))


def read_search(client: Any, search_run_id: str) -> SearchRecord:
    """The search run, its stage runs and their trial runs, with decision logs (curves: `with_curves`)."""
    run = client.get_run(search_run_id)
    if run.data.tags.get("searcher.role") != "search":
        raise SearchNotFound(f"run {search_run_id} is not a search run (tag searcher.role=search)")
    experiment_id = run.info.experiment_id
    stages = []
    with tempfile.TemporaryDirectory() as folder:
        for index, stage_run in enumerate(_children(client, experiment_id, search_run_id)):
            tags = stage_run.data.tags
            trials = tuple(_trial(t) for t in _children(client, experiment_id, stage_run.info.run_id))
            arch = tags.get("searcher.winner_arch")
            stages.append(
                StageRecord(
                    run_id=stage_run.info.run_id,
                    stage=tags.get("searcher.stage", ""),
                    title=stage_run.info.run_name,
                    status=stage_run.info.status,
                    started_ms=stage_run.info.start_time,
                    winner=tags.get("searcher.winner", ""),
                    winner_arch=json.loads(arch) if arch else None,
                    metrics=dict(stage_run.data.metrics),
                    decisions=_decisions(stage_run.info.artifact_uri, os.path.join(folder, str(index))),
                    trials=trials,
                )
            )
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    stages.sort(key=lambda s: (order.get(s.stage, len(order)), s.started_ms))
    return SearchRecord(
        run_id=search_run_id,
        name=run.data.tags.get("searcher.search_name", run.info.run_name),
        experiment_id=experiment_id,
        tracking_uri=client.tracking_uri,
        status=run.info.status,
        started_ms=run.info.start_time,
        ended_ms=run.info.end_time,
        tags={k: v for k, v in run.data.tags.items() if k.startswith("searcher.")},
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        stages=tuple(stages),
        model=_model(client, run),
    )


def attach(client: Any, run_id: str, files: Iterable[Path], artifact_path: str | None = None) -> None:
    """Log local files as artifacts of a run (replacing files of the same name)."""
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)


def log_metrics(client: Any, run_id: str, metrics: dict[str, float]) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])


def describe(client: Any, run_id: str, markdown: str) -> None:
    """The run's description, as the MLflow UI shows it on the run page (the mlflow.note.content tag)."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    client.set_tag(run_id, MLFLOW_RUN_NOTE, markdown)
