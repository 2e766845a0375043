"""Everything a search writes to MLflow while it runs, in one place (docs/design.md §4; the names: schema.py).

Runs are created through MlflowClient with explicit parent ids, so no global
"active run" state leaks between stages; metrics go in batches (one call per
trial), never one call per value. One module of ~340 lines on purpose: every
write of the record contract in one place, so none happens anywhere else.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from searcher.search.stages import Stage, StageResult
from searcher.search.trials import TrialOutcome, TrialRequest, result_score
from searcher.tracking.history import Client, PriorSearch, load_outcome
from searcher.tracking.queries import descendants
from searcher.tracking.schema import EPOCH_METRICS, Files, Metrics, Roles, Tags

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
    layers = getattr(arch, "layers", None)  # the cnn's blocks: their kernels and halving, as params of their own
    family = request.family.key_part()
    return {
        "arch.depth": str(arch.depth),
        "arch.widths": ",".join(map(str, arch.widths)),
        **({"arch.kernels": ",".join(str(layer.kernel) for layer in layers), "arch.halves": ",".join(str(int(layer.halves)) for layer in layers)} if layers else {}),
        **({"arch.block": str(arch.block)} if hasattr(arch, "block") else {}),
        **({} if family is None else flatten("family", family)),
        "arch.dropout": str(arch.dropout),
        "arch.key": arch.key(),
        **flatten("train", request.train.to_dict()),
        "seed": str(request.seed),
        "repeat": str(request.repeat),
        **({"fold": request.fold_label} if request.folds > 1 else {}),
        **{f"stage.{name}": str(value) for name, value in request.params},
    }


class Recorder:
    def __init__(self, client: Client, experiment_id: str, tracking_uri: str):
        self.client = client
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri
        self.search_run_id: str | None = None
        self.search_name: str | None = None
        self.view_key: str | None = None  # the search's stage-by-stage view in the MLflow UI (tracking/views.py)
        self.stage_run_id: str | None = None
        self.open_runs: list[str] = []  # innermost last: what `abort` must close
        self.prior: PriorSearch | None = None  # when resuming
        self.earlier_guesses: dict[str, str] = {}  # trial key -> run id: guesses an earlier attempt finished, not yet asked for
        self.owner = ""  # Tags.OWNER of the runs this process creates or reopens: its lease (lease.py Owner.tag)
        self.ended_trials: set[str] = set()  # trial runs this process ended: a lost lease checks them again

    @property
    def _search_run(self) -> str:
        if self.search_run_id is None:
            raise RuntimeError("no search run: start_search or attach_search comes first")
        return self.search_run_id

    @property
    def _stage_run(self) -> str:
        if self.stage_run_id is None:
            raise RuntimeError("no stage run: start_stage comes first")
        return self.stage_run_id

    # runs

    def _start(self, name: str, parent: str | None, tags: dict[str, str]) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **tags} | ({Tags.OWNER: self.owner} if self.owner else {})
        if parent:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent
            all_tags[Tags.SEARCH_NAME] = self.search_name or ""  # lets the UI filter one search's runs
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        self.open_runs.append(run.info.run_id)
        return run.info.run_id

    def _reopen(self, run_id: str) -> None:
        """An earlier attempt's run, RUNNING again and owned by this process."""
        if self.owner:
            self.client.set_tag(run_id, Tags.OWNER, self.owner)
        self.client.update_run(run_id, status="RUNNING")
        self.open_runs.append(run_id)

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
        from searcher.tracking.views import save_stage_view

        self.search_name = name
        self.view_key = save_stage_view(self.client, self.experiment_id, name)
        self.search_run_id = self._start(f"search {name}", None, {Tags.ROLE: Roles.SEARCH, Tags.SEARCH_NAME: name, **tags})
        self._log(self.search_run_id, params=params)
        return self.search_run_id

    def attach_search(self, prior: PriorSearch) -> None:
        """Continue an earlier search (resume): its run is RUNNING again, its stage and trial runs are reused."""
        from searcher.tracking.views import view_key

        self.prior = prior
        self.earlier_guesses = {
            key: run.info.run_id
            for key, run in prior.completed.items()
            if run.data.tags.get(Tags.SPECULATIVE) == "true" and Tags.DECISION not in run.data.tags
        }
        self.search_run_id = prior.run.info.run_id
        self.search_name = prior.run.data.tags.get(Tags.SEARCH_NAME, "")  # every run the resumed process creates carries it too
        self.view_key = view_key(self.search_name)
        self._reopen(self.search_run_id)

    def tag_search(self, tags: dict[str, str]) -> None:
        self._log(self._search_run, tags=tags)

    def reusable(self, request: TrialRequest) -> tuple[str, TrialOutcome] | None:
        """(run id, outcome) of this trial if an earlier attempt of the search completed it. The trial is asked for
        now, so one that attempt trained as a guess is used, as a guess of this attempt would be (adopt_trial)."""
        run = self.prior.completed.get(request.key) if self.prior else None
        if run is None:
            return None
        if self.earlier_guesses.pop(request.key, None):
            self._adopt(run.info.run_id, request.stage)
        return run.info.run_id, load_outcome(self.client, request, run)

    def start_stage(self, stage: Stage) -> None:
        existing_run_id = self.prior.stage_runs.get(stage.name) if self.prior else None
        if existing_run_id:
            self.stage_run_id = existing_run_id
            self._reopen(existing_run_id)
            return
        self.stage_run_id = self._start(
            f"{stage.index} {stage.name}",
            self._search_run,
            {Tags.ROLE: Roles.STAGE, Tags.STAGE: stage.name, Tags.SEARCH_RUN_ID: self._search_run},
        )

    def completed(self, request: TrialRequest) -> bool:
        return bool(self.prior and request.key in self.prior.completed)

    def start_trial(self, request: TrialRequest, warm: bool = False, growth_note: str = "", speculative: bool = False) -> str:
        """`warm`: the trial starts from its parent's grown weights (`growth_note`: exact, or what changed).
        `speculative`: a guess trained in an idle slot, not asked for (yet)."""
        tags = {
            Tags.ROLE: Roles.TRIAL,
            Tags.STAGE: request.stage,
            Tags.TRIAL_KEY: request.key,
            Tags.SEARCH_RUN_ID: self._search_run,
            Tags.WARM_START: "true" if warm else "false",
        }
        if warm:
            tags |= {Tags.PARENT_TRIAL: str(request.parent), Tags.GROWTH: growth_note[:5000]}
        if speculative:
            tags[Tags.SPECULATIVE] = "true"
        return self._start(request.label + (" (warm)" if warm else ""), self._stage_run, tags)

    def finish_trial(self, run_id: str, outcome: TrialOutcome, traceback_text: str | None = None) -> None:
        now = int(time.time() * 1000)
        metrics: list[Metric] = []
        tags: dict[str, str] = {Tags.STATUS: outcome.status}
        result = outcome.result
        if result is not None:
            for record in result.history:  # NaN/inf too: MLflow stores them, and a resume reads them back
                metrics += [Metric(key, getattr(record, key), now, record.epoch) for key in EPOCH_METRICS]
            summary: dict[str, float | None] = {
                Metrics.BEST_VAL_ACC: result.best_val_acc,
                Metrics.BEST_EPOCH: result.best_epoch,
                Metrics.SCORE: result_score(result),  # what the decisions compare (TrialOutcome.score)
                Metrics.EPOCHS: len(result.history),
                Metrics.TRAIN_SECONDS: result.train_seconds,
                Metrics.IMAGES_PER_SECOND: result.images_per_second,
            }
            if result.test_acc is not None:
                summary |= {Metrics.TEST_ACC: result.test_acc, Metrics.TEST_LOSS: result.test_loss}
            if outcome.request.source is not None:  # a transfer probe: its validation split is the target's
                summary[Metrics.TRANSFER_ACC] = result.best_val_acc
            if result.initial_val_acc is not None:
                summary[Metrics.INITIAL_VAL_ACC] = result.initial_val_acc  # warm starts: where training began
            metric = outcome.request.metric
            if metric.name != "accuracy":  # the metric itself, in the target's units, beside the scores (schema.py)
                short = metric.short
                metrics += [Metric(f"val_{short}", metric.shown(record.val_acc), now, record.epoch) for record in result.history]
                summary |= {f"best_val_{short}": metric.shown(result.best_val_acc)}
                if result.test_acc is not None:
                    summary[f"test_{short}"] = metric.shown(result.test_acc)
            metrics += [Metric(k, float(v), now, 0) for k, v in summary.items() if v is not None and math.isfinite(v)]
            tags[Tags.BEHAVIOR] = result.behavior
            tags[Tags.STOPPED_EARLY] = str(result.stopped_early).lower()
            if result.rung_stop is not None:
                tags[Tags.RUNG_STOP] = json.dumps(result.rung_stop.to_dict())
        if outcome.elapsed is not None:
            metrics.append(Metric(Metrics.SEARCH_CLOCK, outcome.elapsed, now, 0))
        if outcome.request.source is not None:
            tags[Tags.SOURCE_KEY] = outcome.request.source
        if outcome.error:
            tags[Tags.ERROR] = outcome.error[:5000]
        if outcome.status == "failed":
            tags[Tags.DECISION] = "failed"
        self._log(run_id, metrics, arch_params(outcome.request), tags)
        if traceback_text:
            self.client.log_text(run_id, traceback_text, Files.TRACEBACK)
        if result is not None and result.state is not None:
            self._log_state(run_id, result.state)
        if result is not None:
            self._log_evidence(run_id, result)
        self._end(run_id, "FAILED" if outcome.status == "failed" else "FINISHED")
        self.ended_trials.add(run_id)

    def adopt_trial(self, run_id: str, stage: Stage) -> None:
        """A guess the search asked for: moved under the stage that asked (it may have been guessed in the one before)."""
        self._adopt(run_id, stage.name)

    def _adopt(self, run_id: str, stage: str) -> None:
        self._log(run_id, tags={MLFLOW_PARENT_RUN_ID: self._stage_run, Tags.STAGE: stage, Tags.SPECULATIVE: "used"})

    def unasked_earlier_guesses(self) -> list[str]:
        """Run ids of the guesses an earlier attempt of this search finished and this one never asked for."""
        return list(self.earlier_guesses.values())

    def discard_trial(self, run_id: str, finished: bool) -> None:
        """A guess the search never asked for: kept as a record of the compute it took, decided `discarded`."""
        note = "speculative: trained in an idle slot; the search never asked for it"
        self._log(run_id, tags={Tags.DECISION: "discarded", Tags.NOTE: note if finished else note + " (stopped when the search ended)"})
        if not finished:
            self._end(run_id, "KILLED")

    def _log_evidence(self, run_id: str, result: Any) -> None:
        import base64

        for field_name, file_name in Files.EVIDENCE.items():
            value = getattr(result, field_name)
            if value is not None:
                self.client.log_text(run_id, base64.b64encode(value).decode(), file_name)
        if result.rung_values:
            by_epoch = {str(epoch): base64.b64encode(packed).decode() for epoch, packed in sorted(result.rung_values.items())}
            self.client.log_text(run_id, json.dumps(by_epoch), Files.RUNG_VALUES)

    def _log_state(self, run_id: str, state: dict) -> None:
        """The trial's best-epoch weights: what a resume warm-starts from and the final model is made of."""
        import torch

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Files.STATE
            torch.save(state, path)
            self.client.log_artifact(run_id, str(path))

    def finish_stage(self, result: StageResult, outcomes: list[TrialOutcome], run_ids: dict[str, str]) -> None:
        for key, decision in result.trial_decisions.items():
            if key in run_ids:
                self.client.set_tag(run_ids[key], Tags.DECISION, decision)
        for key, note in result.trial_notes.items():
            if key in run_ids:
                self.client.set_tag(run_ids[key], Tags.NOTE, note)
        metrics = [Metric(Metrics.SCORE, result.score, int(time.time() * 1000), 0)] if math.isfinite(result.score) else []
        metrics += [Metric(k, v, int(time.time() * 1000), 0) for k, v in result.metrics.items()]
        winner = result.winner
        tags = {Tags.WINNER: winner.name, Tags.WINNER_ARCH: json.dumps(winner.arch.to_dict())}
        decisions = [entry.to_dict() for entry in result.decisions]
        self._log(self._stage_run, metrics, tags=tags)
        self.client.log_dict(self._stage_run, decisions, Files.DECISIONS)  # type: ignore[arg-type]  # any JSON value is logged
        self._end(self._stage_run)

    def log_artifact_text(self, text: str, path: str) -> None:
        self.client.log_text(self._search_run, text, path)

    def finish_search(
        self,
        metrics: dict[str, float],
        tags: dict[str, str],
        model: Any = None,
        input_example: Any = None,
        registered_name: str | None = None,
    ) -> str | None:
        """Final metrics and tags, then the model (a Classifier, tracking/model.py; signature from the example) registered
        as a new version of `registered_name` tagged with the search; ends the search run. Returns the model URI."""
        now = int(time.time() * 1000)
        self._log(self._search_run, [Metric(k, v, now, 0) for k, v in metrics.items()], tags=tags)
        if model is None:
            self._end(self._search_run)
            return None
        from searcher.tracking.model import log_classifier

        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=self.search_run_id):  # log_model needs the fluent active run; leaving ends it
            info = log_classifier(model, input_example)
        self.open_runs.remove(self._search_run)
        return self.register(info.model_uri, registered_name, metrics) if registered_name else info.model_uri

    def register(self, model_uri: str, name: str, metrics: dict[str, float]) -> str:
        """A new version of `name`, tagged with the search; a registry failure leaves the logged model usable."""
        import logging

        try:
            with contextlib.redirect_stderr(io.StringIO()) as said:  # MLflow prints "Registered model ... already exists" to stderr
                version = str(mlflow.register_model(model_uri, name, tags={Tags.SEARCH_NAME: self.search_name or ""}).version)
            if said.getvalue().strip():
                logging.getLogger("mlflow").info("%s", said.getvalue().strip())  # routed as MLflow's own messages: to the log file
            tags = {Tags.SEARCH_RUN_ID: self.search_run_id or ""}
            tags |= {k: f"{metrics[k]:.6g}" for k in (Metrics.TEST_ACC, "test_acc_std", "val_acc_mean") if k in metrics}
            for key, value in tags.items():
                self.client.set_model_version_tag(name, version, key, value)
        except Exception as error:  # e.g. a store without a registry, or two searches registering at the same instant
            logging.getLogger(__name__).warning("model %s logged but not registered as %r: %s", model_uri, name, error)
            return model_uri
        return f"models:/{name}/{version}"

    def close_trials_left_behind(self, note: str) -> int:
        """This process lost its lease: the trial runs it opened and never finished that are still RUNNING become
        FAILED, with `note` (Tags.ORPHANED); how many. The new owner marked those it found when it took over; one this
        process opened after that, before it noticed, nobody else knows of. Search and stage runs are left alone: the
        new owner reopens them.

        And a trial whose record this process completed after the new owner had marked it (a stop waits for the
        record it comes in, so a process stopped mid-record and continued finishes that record before it learns it
        lost the lease): the new owner retrains that trial, so its run goes back to the FAILED the new owner left,
        and the trial keeps one FINISHED run (the flake hunt found two)."""
        closed = 0
        for run_id in list(self.open_runs):
            run = self.client.get_run(run_id)
            if run.data.tags.get(Tags.ROLE) == Roles.TRIAL and run.info.status == "RUNNING":
                self.client.set_tag(run_id, Tags.ORPHANED, note[:5000])
                self._end(run_id, "FAILED")
                closed += 1
        if self.ended_trials and self.search_run_id is not None:
            for run in descendants(self.client, self.experiment_id, self.search_run_id):
                if run.info.run_id in self.ended_trials and run.info.status == "FINISHED" and Tags.ORPHANED in run.data.tags:
                    self.client.set_terminated(run.info.run_id, "FAILED")
                    closed += 1
        return closed

    def abort(self, status: str) -> None:
        """Close every open run, innermost first (KILLED on a signal, FAILED on an error)."""
        for run_id in reversed(list(self.open_runs)):
            self._end(run_id, status)

    def stage_view_url(self, base: str) -> str:
        from searcher.tracking.views import runs_url

        return runs_url(base, self.experiment_id, self.view_key)

    def stage_view_url_of(self, search_name: str, base: str) -> str:
        """The stage-by-stage link of a search an earlier process ran (a finished search re-run prints what its first
        run printed); its view is saved again, so a search recorded before views existed gets one too (idempotent)."""
        from searcher.tracking.views import runs_url, save_stage_view

        return runs_url(base, self.experiment_id, save_stage_view(self.client, self.experiment_id, search_name))


def warm_up_model_logging() -> None:
    """The first torch.export of a process costs ~1 s and later ones ~0.1 s: run it once on a throw-away module,
    so that `finish_search`'s log_model does not pay it (worth it where this process waits on other processes)."""
    import mlflow.pytorch  # noqa: F401
    import torch
    import torch.export

    module = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)).eval()
    example = torch.zeros(2, 1, 4, 4)
    module(example)
    torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
