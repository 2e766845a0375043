"""Everything the search writes to MLflow, in one place (DESIGN.md §3).

search run (searcher.role=search)
  └ stage run per stage (searcher.role=stage, searcher.stage=...)
      └ trial run per trial (searcher.role=trial, searcher.trial_key, searcher.behavior, searcher.decision)

Runs are created through MlflowClient with explicit parent ids, so no global
"active run" state leaks between stages; metrics go in batches (one call per
trial), never one call per value.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME  # noqa: E402

from searcher.search.stages import Stage, StageResult  # noqa: E402
from searcher.search.trials import TrialOutcome, TrialRequest  # noqa: E402

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch call
MAX_PARAMS_PER_BATCH = 100


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested dicts/lists -> {"a.b": "1"} for MLflow params."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: ",".join(str(v) for v in value)}
    return {prefix: str(value)}


def arch_params(request: TrialRequest) -> dict[str, str]:
    arch = request.arch
    return {
        "arch.depth": str(arch.depth),
        "arch.widths": ",".join(map(str, arch.widths)),
        "arch.kernels": ",".join(map(str, arch.kernels)),
        "arch.halves": ",".join(str(int(layer.halves)) for layer in arch.layers),
        "arch.block": arch.block,
        "arch.dropout": str(arch.dropout),
        "arch.key": arch.key(),
        **flatten("train", request.train.to_dict()),
        "seed": str(request.seed),
        "repeat": str(request.repeat),
        **{f"stage.{name}": str(value) for name, value in request.params},
    }


class Recorder:
    def __init__(self, client: MlflowClient, experiment_id: str, tracking_uri: str):
        self.client = client
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri
        self.search_run_id: str | None = None
        self.stage_run_id: str | None = None
        self.open_runs: list[str] = []  # innermost last: what `abort` must close

    # runs

    def _start(self, name: str, parent: str | None, tags: dict[str, str]) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **tags}
        if parent:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        self.open_runs.append(run.info.run_id)
        return run.info.run_id

    def _end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)
        if run_id in self.open_runs:
            self.open_runs.remove(run_id)

    def _log(self, run_id: str, metrics: Iterable[Metric] = (), params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
        metrics = list(metrics)
        param_list = [Param(k, v[:6000]) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        first = True
        while first or metrics or param_list:
            self.client.log_batch(
                run_id,
                metrics=metrics[:MAX_METRICS_PER_BATCH],
                params=param_list[:MAX_PARAMS_PER_BATCH],
                tags=tag_list if first else [],
            )
            metrics, param_list, first = metrics[MAX_METRICS_PER_BATCH:], param_list[MAX_PARAMS_PER_BATCH:], False

    def start_search(self, name: str, params: dict[str, str], tags: dict[str, str]) -> str:
        self.search_run_id = self._start(f"search {name}", None, {"searcher.role": "search", "searcher.search_name": name, **tags})
        self._log(self.search_run_id, params=params)
        return self.search_run_id

    def start_stage(self, stage: Stage) -> None:
        self.stage_run_id = self._start(
            f"{stage.index} {stage.name}", self.search_run_id, {"searcher.role": "stage", "searcher.stage": stage.name}
        )

    def start_trial(self, request: TrialRequest, warm: bool = False, growth_note: str = "") -> str:
        """`warm`: the trial starts from its parent's grown weights (`growth_note`: exact, or what changed)."""
        tags = {"searcher.role": "trial", "searcher.stage": request.stage, "searcher.trial_key": request.key}
        tags["searcher.warm_start"] = "true" if warm else "false"
        if warm:
            tags |= {"searcher.parent_trial": str(request.parent), "searcher.growth": growth_note[:5000]}
        return self._start(request.label + (" (warm)" if warm else ""), self.stage_run_id, tags)

    def finish_trial(self, run_id: str, outcome: TrialOutcome, traceback_text: str | None = None) -> None:
        now = int(time.time() * 1000)
        metrics: list[Metric] = []
        tags = {"searcher.status": outcome.status}
        result = outcome.result
        if result is not None:
            for record in result.history:
                for key in ("train_loss", "val_loss", "val_acc", "lr"):
                    value = getattr(record, key)
                    if math.isfinite(value):
                        metrics.append(Metric(key, value, now, record.epoch))
            summary = {
                "best_val_acc": result.best_val_acc,
                "best_epoch": result.best_epoch,
                "epochs": len(result.history),
                "train_seconds": result.train_seconds,
                "images_per_second": result.images_per_second,
            }
            if result.test_acc is not None:
                summary |= {"test_acc": result.test_acc, "test_loss": result.test_loss}
            if result.initial_val_acc is not None:
                summary["initial_val_acc"] = result.initial_val_acc  # warm starts: where training began
            metrics += [Metric(k, float(v), now, 0) for k, v in summary.items() if v is not None and math.isfinite(v)]
            tags["searcher.behavior"] = result.behavior
        if outcome.error:
            tags["searcher.error"] = outcome.error[:5000]
        if outcome.status == "failed":
            tags["searcher.decision"] = "failed"
        self._log(run_id, metrics, arch_params(outcome.request), tags)
        if traceback_text:
            self.client.log_text(run_id, traceback_text, "traceback.txt")
        self._end(run_id, "FAILED" if outcome.status == "failed" else "FINISHED")

    def finish_stage(self, result: StageResult, outcomes: list[TrialOutcome], run_ids: dict[str, str]) -> None:
        for key, decision in result.trial_decisions.items():
            if key in run_ids:
                self.client.set_tag(run_ids[key], "searcher.decision", decision)
        metrics = [Metric("best_val_acc", result.score, int(time.time() * 1000), 0)] if math.isfinite(result.score) else []
        metrics += [Metric(k, v, int(time.time() * 1000), 0) for k, v in result.metrics.items()]
        winner = result.winner
        tags = {"searcher.winner": winner.name, "searcher.winner_arch": json.dumps(winner.arch.to_dict())}
        self._log(self.stage_run_id, metrics, tags=tags)
        self.client.log_dict(self.stage_run_id, [entry.to_dict() for entry in result.decisions], "decisions.json")
        self._end(self.stage_run_id)

    def log_artifact_text(self, text: str, path: str) -> None:
        self.client.log_text(self.search_run_id, text, path)

    def finish_search(self, metrics: dict[str, float], tags: dict[str, str], model: Any = None, input_example: Any = None) -> str | None:
        """Final metrics and tags, then the model (mlflow.pytorch.log_model); ends the search run. Returns the model URI."""
        now = int(time.time() * 1000)
        self._log(self.search_run_id, [Metric(k, v, now, 0) for k, v in metrics.items()], tags=tags)
        if model is None:
            self._end(self.search_run_id)
            return None
        import mlflow.pytorch
        import torch

        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=self.search_run_id):  # log_model needs the fluent active run; leaving ends it
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=input_example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # skips slow requirement inference
            )
        self.open_runs.remove(self.search_run_id)
        return info.model_uri

    def abort(self, status: str) -> None:
        """Close every open run, innermost first (KILLED on a signal, FAILED on an error)."""
        for run_id in reversed(list(self.open_runs)):
            self._end(run_id, status)

    def runs_url(self, base: str) -> str:
        return f"{base}/#/experiments/{self.experiment_id}/runs"

