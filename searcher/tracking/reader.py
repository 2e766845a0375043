"""Reads a search back from the tracking store as records (records.py); it never writes.

Everything the report and a finished search's summary show comes through
`read_search`: runs, tags, params, metric histories and each stage's decisions.json.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from searcher.tracking import queries
from searcher.tracking.records import Curve, ModelRecord, SearchRecord, StageRecord, TrialRecord
from searcher.tracking.schema import EPOCH_METRICS, STAGE_ORDER, Files, Roles, Tags


class SearchNotFound(LookupError):
    """No search of that name (or run id) in the store; the message says where it looked."""


def find_search_run(client: Any, search_name: str, experiment: str | None = None) -> str:
    """The run id of the most recent search named `search_name` (in `experiment`, or in any experiment)."""
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise SearchNotFound(f"experiment {experiment!r} does not exist in {client.tracking_uri}")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    run = queries.find_search(client, ids, search_name)
    if run is None:
        raise SearchNotFound(f"no search named {search_name!r} in {client.tracking_uri}; the names are the search runs' 'search NAME'")
    return run.info.run_id


def _curves(client: Any, run_id: str) -> dict[str, Curve]:
    curves = {}
    for key in EPOCH_METRICS:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        if history:
            curves[key] = Curve(tuple(m.step for m in history), tuple(m.value for m in history))
    return curves


def _decisions(artifact_uri: str, folder: str) -> tuple[dict, ...]:
    """The stage run's decisions.json, read straight from its artifact location (no run lookups)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    os.makedirs(folder, exist_ok=True)
    try:
        path = get_artifact_repository(artifact_uri).download_artifacts(Files.DECISIONS, folder)
    except Exception:  # a stage that never finished has none
        return ()
    return tuple(json.loads(Path(path).read_text()))


def _trial(run: Any) -> TrialRecord:
    tags = run.data.tags
    return TrialRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        stage=tags.get(Tags.STAGE, ""),
        status=run.info.status,
        decision=tags.get(Tags.DECISION, ""),
        behavior=tags.get(Tags.BEHAVIOR, ""),
        started_ms=run.info.start_time,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags={k: v for k, v in tags.items() if k.startswith(Tags.PREFIX)},
    )


def _stage(client: Any, run: Any, folder: str) -> StageRecord:
    tags = run.data.tags
    arch = tags.get(Tags.WINNER_ARCH)
    return StageRecord(
        run_id=run.info.run_id,
        stage=tags.get(Tags.STAGE, ""),
        title=run.info.run_name,
        status=run.info.status,
        started_ms=run.info.start_time,
        winner=tags.get(Tags.WINNER, ""),
        winner_arch=json.loads(arch) if arch else None,
        metrics=dict(run.data.metrics),
        decisions=_decisions(run.info.artifact_uri, folder),
        trials=tuple(_trial(t) for t in queries.children(client, run.info.experiment_id, run.info.run_id)),
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
    if run.data.tags.get(Tags.ROLE) != Roles.SEARCH:
        raise SearchNotFound(f"run {search_run_id} is not a search run (tag {Tags.ROLE}={Roles.SEARCH})")
    with tempfile.TemporaryDirectory() as folder:
        stage_runs = queries.children(client, run.info.experiment_id, search_run_id)
        stages = [_stage(client, stage_run, os.path.join(folder, str(index))) for index, stage_run in enumerate(stage_runs)]
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    stages.sort(key=lambda s: (order.get(s.stage, len(order)), s.started_ms))
    return SearchRecord(
        run_id=search_run_id,
        name=run.data.tags.get(Tags.SEARCH_NAME, run.info.run_name),
        experiment_id=run.info.experiment_id,
        tracking_uri=client.tracking_uri,
        status=run.info.status,
        started_ms=run.info.start_time,
        ended_ms=run.info.end_time,
        tags={k: v for k, v in run.data.tags.items() if k.startswith(Tags.PREFIX)},
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        stages=tuple(stages),
        model=_model(client, run),
    )
