"""The quick preset end to end in a real subprocess, read back from the real MLflow SQLite store."""

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


@pytest.fixture
def finished_search(quick_search):
    return quick_search


def runs_by_role(client, role):
    experiment = client.get_experiment_by_name("searcher")
    return client.search_runs([experiment.experiment_id], f"tags.`searcher.role` = '{role}'", max_results=1000)


def test_first_lines_say_digits_was_chosen(finished_search):
    _, _, stdout = finished_search
    assert "No dataset chosen" in stdout.splitlines()[0] and "digits" in stdout.splitlines()[0]
    assert "/#/experiments/" in stdout and "/runs" in stdout
    assert "python -m searcher.ui --tracking-uri" in stdout


def test_a_legend_says_once_what_the_trial_lines_columns_and_names_mean(finished_search):
    from searcher.report.terminal import LEGEND

    _, _, stdout = finished_search
    lines = stdout.splitlines()
    assert lines.count(LEGEND) == 1 and lines.index(LEGEND) < min(i for i, line in enumerate(lines) if line.startswith("  ok "))
    assert "at 7/17 = best epoch 7 of 17 trained" in LEGEND and "r1 = " in LEGEND


def test_run_tree_tags_metrics_and_artifacts(finished_search):
    folder, uri, _ = finished_search
    client = MlflowClient(tracking_uri=uri)
    (search,) = runs_by_role(client, "search")
    assert search.info.run_name == "search check" and search.info.status == "FINISHED"
    assert search.data.metrics["test_acc"] >= 0.9
    artifacts = {a.path for a in client.list_artifacts(search.info.run_id)}
    assert {"config.yaml", "decisions.json", "decisions.md", "report.html", "report.md"} <= artifacts

    stages = runs_by_role(client, "stage")
    assert sorted(s.data.tags["searcher.stage"] for s in stages) == sorted(["baseline", "width", "depth", "regularization", "final"])
    assert {s.data.tags["mlflow.parentRunId"] for s in stages} == {search.info.run_id}
    stage_ids = {s.info.run_id: s.data.tags["searcher.stage"] for s in stages}

    trials = runs_by_role(client, "trial")
    assert all(t.data.tags["mlflow.parentRunId"] in stage_ids for t in trials)
    assert all(t.info.status in ("FINISHED", "FAILED") for t in trials)
    per_stage = {}
    for trial in trials:
        per_stage.setdefault(stage_ids[trial.data.tags["mlflow.parentRunId"]], []).append(trial)
        tags = trial.data.tags
        assert tags["searcher.stage"] == stage_ids[tags["mlflow.parentRunId"]]
        assert tags["searcher.decision"] in {"selected", "rejected", "pruned", "failed"}
        assert tags["searcher.behavior"] in {"stable", "overfitting", "unstable", "capped", "diverged", "pruned"}
        assert len(tags["searcher.trial_key"]) == 20
        assert {"score", "best_val_acc", "epochs", "train_seconds", "images_per_second"} <= set(trial.data.metrics)
        assert {"arch.depth", "arch.widths", "arch.kernels", "train.lr", "train.batch_size"} <= set(trial.data.params)
        history = client.get_metric_history(trial.info.run_id, "val_acc")
        assert len(history) == int(trial.data.metrics["epochs"]) and [m.step for m in history] == list(range(1, len(history) + 1))
    assert len(per_stage["depth"]) >= 2
    finals = per_stage["final"]
    assert all("test_acc" in t.data.metrics for t in finals)
    assert all("test_acc" not in t.data.metrics for s, ts in per_stage.items() if s != "final" for t in ts)
    keys = [t.data.tags["searcher.trial_key"] for t in trials]
    assert len(keys) == len(set(keys))


def test_final_model_reloads_and_predicts(finished_search):
    import torch

    import searcher

    _, uri, stdout = finished_search
    client = MlflowClient(tracking_uri=uri)
    (search,) = runs_by_role(client, "search")
    models = client.search_logged_models(experiment_ids=[search.info.experiment_id])
    assert any(m.source_run_id == search.info.run_id for m in models)
    model = searcher.load_model(f"models:/{models[0].model_id}", tracking_uri=uri)
    assert model(torch.zeros(3, 1, 8, 8, dtype=torch.uint8)).shape == (3, 10)
    assert "searcher.load_model" in stdout.splitlines()[-2] + stdout.splitlines()[-1]


def test_outputs_folder_holds_the_decision_log(finished_search):
    folder, _, _ = finished_search
    logs = list(Path(folder).glob("outputs/*/*/decisions.md"))
    assert logs and "## depth" in logs[0].read_text()


def test_mlflows_own_messages_go_to_the_log_file_not_between_the_display_lines(finished_search):
    folder, _, stdout = finished_search
    for said in ("Creating initial MLflow database tables", "Successfully registered model", "alembic"):
        assert said not in stdout
    log = min(Path(folder).glob("outputs/*/*/cli.log"))  # the search's own (other tests re-run it in its folder later)
    text = log.read_text()
    assert "registered model 'searcher-digits'" in text  # (MLflow's migrations run once per version: empty_store.py)
    trial_lines = [line for line in stdout.splitlines() if line.startswith("  ok ")]
    assert len({re.search(r"\d\.\ds ", line).end() for line in trial_lines}) == 1  # the seconds column ends at the same place


def test_every_trial_keeps_its_paired_evidence_and_every_decision_names_it(finished_search):
    """Per-image correctness and losses are recorded with each trained trial and read back as a resume would."""
    import json

    from searcher.search.evidence import unpack
    from searcher.search.trials import TrialRequest
    from searcher.tracking.history import load_outcome

    folder, uri, stdout = finished_search
    assert "decisions: paired, cross-validated" in stdout and "fold r of 5" in stdout and "small validation split" in stdout
    from searcher.data import DatasetOptions, load_dataset

    digits = load_dataset(DatasetOptions("digits"))
    client = MlflowClient(tracking_uri=uri)
    for trial in runs_by_role(client, "trial"):
        if trial.info.status != "FINISHED":
            continue
        names = {a.path for a in client.list_artifacts(trial.info.run_id)}
        assert {"val_correct.txt", "val_loss.txt", "state.pt"} <= names
        request = TrialRequest("x", "x", None, None, 0, "digits")  # type: ignore[arg-type]
        result = load_outcome(client, request, trial).result
        fold = int(trial.data.params.get("fold", "0/5").split("/")[0])  # extra seeds are judged on other folds
        images = len(digits.fold(fold, 5).val)
        right = unpack(result.val_correct, images)
        assert right.mean() == pytest.approx(trial.data.metrics["best_val_acc"], abs=1e-6)  # the kept weights' record
        assert len(result.val_losses) == 2 * images
    (search,) = runs_by_role(client, "search")
    import tempfile

    decisions = json.loads(Path(client.download_artifacts(search.info.run_id, "decisions.json", tempfile.mkdtemp())).read_text())
    comparisons = [d for d in decisions if d["stage"] in ("width", "depth") and d["decision"] != "selected"]
    assert comparisons and all("p = " in d["reason"] and "wins" in d["numbers"] and "p_value" in d["numbers"] for d in comparisons)


def test_each_trial_shows_one_score_in_the_terminal_mlflow_and_the_decision_log(finished_search):
    """The finished-trial line, the trial run's `score` metric and the decision log quote the same number per trial."""
    import json
    import tempfile

    _, uri, stdout = finished_search
    client = MlflowClient(tracking_uri=uri)
    trial_line = r"^  \w+\s+score (\d\.\d{4}) at .*?\d\.\ds\s+(.+?)(?: \(the [\w ]+'s extra seed, for the comparison\))?$"
    printed = sorted((name, score) for score, name in re.findall(trial_line, stdout, re.MULTILINE))
    trials = [t for t in runs_by_role(client, "trial") if "score" in t.data.metrics]
    recorded = sorted((t.info.run_name.removesuffix(" (warm)"), f"{t.data.metrics['score']:.4f}") for t in trials)
    assert printed == recorded and len(printed) >= 5
    assert any(t.data.metrics["score"] != t.data.metrics["best_val_acc"] for t in trials)  # two numbers: the lines show the score

    (search,) = runs_by_role(client, "search")
    decisions = json.loads(Path(client.download_artifacts(search.info.run_id, "decisions.json", tempfile.mkdtemp())).read_text())
    stages = {s.data.tags["searcher.stage"]: s for s in runs_by_role(client, "stage")}
    for name, stage in stages.items():
        quoted = [d["numbers"]["score"] for d in decisions if d["stage"] == name and d["decision"] in ("baseline", "selected", "final")]
        assert quoted == [pytest.approx(stage.data.metrics["score"], abs=1e-12)], name  # the stage table's number is the log's
    baseline = [t.data.metrics["score"] for t in trials if t.data.tags["mlflow.parentRunId"] == stages["baseline"].info.run_id]
    assert stages["baseline"].data.metrics["score"] == pytest.approx(sum(baseline) / len(baseline), abs=1e-12)  # its seeds' mean
