"""Figures and report of a finished search, read back from the real MLflow store; rebuilt from the store alone."""

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO
from mlflow.tracking import MlflowClient
from PIL import Image

from searcher.report.importance import MIN_TRIALS, importances
from searcher.tracking.records import TrialRecord

STAGES = ["baseline", "width", "depth", "regularization", "final", "transfer"]
STAGE_TITLES = {
    "baseline": "baseline: the small network trained until stable",
    "width": "width: validation score vs width",
    "depth": "depth: validation score vs depth (accepted and rejected layers)",
    "regularization": "regularization: trials over time and parameter importances",
    "final": "final: validation and test accuracy per seed",
    "transfer": "transfer: validation score vs transfer accuracy",
}


def runs(client, role):
    experiment = client.get_experiment_by_name("searcher")
    return client.search_runs([experiment.experiment_id], f"tags.`searcher.role` = '{role}'", max_results=1000)


def png_title(path: Path) -> str:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
        return image.text.get("Title", "")


@pytest.mark.slow
def test_every_run_carries_its_figures_with_the_expected_titles(transfer_search, tmp_path):
    _, uri, name, stdout = transfer_search
    assert "report failed" not in stdout
    client = MlflowClient(tracking_uri=uri)
    (search,) = runs(client, "search")
    top = {a.path for a in client.list_artifacts(search.info.run_id)}
    assert {"report.html", "report.md", "figures"} <= top
    figures = {a.path for a in client.list_artifacts(search.info.run_id, "figures")}
    assert {f"figures/stage-{s}.png" for s in STAGES} | {"figures/overview.png"} <= figures
    overview = Path(client.download_artifacts(search.info.run_id, "figures/overview.png", str(tmp_path)))
    assert png_title(overview) == f"search {name}: validation score vs compute spent"

    for stage in runs(client, "stage"):
        kind = stage.data.tags["searcher.stage"]
        path = Path(client.download_artifacts(stage.info.run_id, f"figures/stage-{kind}.png", str(tmp_path / kind)))
        assert png_title(path) == STAGE_TITLES[kind]
    for trial in runs(client, "trial"):
        (artifact,) = client.list_artifacts(trial.info.run_id, "figures")
        path = Path(client.download_artifacts(trial.info.run_id, artifact.path, str(tmp_path / trial.info.run_id)))
        assert png_title(path) == f"learning curves: {trial.info.run_name} ({trial.data.tags['searcher.stage']})"


@pytest.mark.slow
def test_the_report_is_self_contained_and_tells_the_staged_story(transfer_search, tmp_path):
    folder, uri, name, _ = transfer_search
    client = MlflowClient(tracking_uri=uri)
    (search,) = runs(client, "search")
    html = Path(client.download_artifacts(search.info.run_id, "report.html", str(tmp_path))).read_text()
    assert html.count('src="data:image/png;base64,') >= 7  # overview + six stage stories (+ the final curves)
    assert not re.search(r'src="(?!data:)', html), "the report must not load anything from elsewhere"
    markdown = Path(client.download_artifacts(search.info.run_id, "report.md", str(tmp_path))).read_text()
    for section in ("## Result", "## Stages", "## Decision log", "## Transfer: best in validation vs best for transfer", "## Reload the model"):
        assert section in markdown and section.removeprefix("## ") in html
    for stage in runs(client, "stage"):
        assert f"### {stage.info.run_name}" in markdown
    assert "test accuracy" in markdown and "±" in markdown
    assert "| layer | block | width | kernel |" in markdown
    assert markdown.count("| candidate | decision | score (mean) | seeds | score per seed |") == 3  # under width, depth, regularization
    assert "ranked by validation accuracy" in markdown and "ranked by transfer accuracy" in markdown
    assert re.search(r"\*\*Verdict\*\*: the best in validation, .+ is (also|NOT) the best for transfer", markdown)
    assert 'searcher.load_model("models:/searcher-digits/' in markdown
    outputs = list(Path(folder).glob("outputs/*/*/report.html"))
    assert outputs and (outputs[0].parent / "figures" / "overview.png").exists()
    assert len(list((outputs[0].parent / "figures" / "trials").glob("*.png"))) == len(runs(client, "trial"))


@pytest.mark.slow
def test_the_report_rebuilds_from_the_store_alone(transfer_search, tmp_path):
    folder, uri, name, _ = transfer_search
    out = tmp_path / "rebuilt"
    result = subprocess.run(
        [sys.executable, "-m", "searcher.report", "--search-name", name, "--tracking-uri", uri, "--out", str(out), "--trial-plots"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report: {out / 'report.html'}" in result.stdout
    (published,) = Path(folder).glob("outputs/*/*/report.md")
    assert (out / "report.md").read_text() == published.read_text()  # one code path: the same report, nothing retrained
    assert {p.name for p in (out / "figures").glob("*.png")} == {p.name for p in (published.parent / "figures").glob("*.png")}


def test_the_report_command_names_a_missing_search(tmp_path):
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates an empty store
    result = subprocess.run(
        [sys.executable, "-m", "searcher", "report", "--search-name", "nope", "--tracking-uri", uri],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "no search named 'nope'" in result.stderr


def record(number: int, **params: float) -> TrialRecord:
    score = 0.9 + params.get("dropout", 0) / 10
    return TrialRecord(
        run_id=str(number),
        name=f"reg {number}",
        stage="regularization",
        status="FINISHED",
        decision="rejected",
        behavior="stable",
        started_ms=number,
        metrics={"best_val_acc": score},
        params={f"stage.{k}": str(v) for k, v in params.items()},
    )


def test_importances_need_ten_settings_and_say_so_instead_of_ranking_noise():
    few = [record(i, dropout=0.05 * i, weight_decay=0.001 * (i % 3)) for i in range(1, MIN_TRIALS)]
    found, why = importances(few)
    assert found == {} and f"too few trials for importances ({MIN_TRIALS - 1} finished settings" in why
    seeds = few + [replace(few[0], run_id="s", name=f"{few[0].name} r1", started_ms=99)]  # another seed is not another setting
    assert importances(seeds)[0] == {}
    trials = [record(i, dropout=0.05 * i, weight_decay=0.001 * (i % 3)) for i in range(1, MIN_TRIALS + 1)]
    found, why = importances(trials)
    assert set(found) == {"dropout", "weight_decay"} and found["dropout"] > found["weight_decay"]
    assert why.startswith(f"fANOVA over {MIN_TRIALS} finished settings")


def test_the_live_display_keeps_its_columns_and_says_where_the_search_is():
    from conftest import fake_result, make_plan, memory_studies
    from rich.console import Console

    from searcher.report.terminal import RichProgress, clock
    from searcher.search.stages import BaselineStage
    from searcher.search.trials import TrialOutcome

    plan = make_plan()
    stage = BaselineStage(plan, memory_studies(plan).open("baseline"))
    console = Console(record=True, width=160, force_terminal=False)
    progress = RichProgress(console)
    progress.stage(stage)
    (request,) = stage.next_trials([])
    long = replace(request, candidate="reg aug=0.073 do=0.0083 ls=0.069 wd=1.2e-05")
    for r in (request, long):
        progress.trial_done(TrialOutcome(r, "ok", fake_result(0.98)))
    lines = [line for line in console.export_text().splitlines() if " score " in line]
    assert len(lines) == 2 and len({re.search(r"\d\.\ds ", line).end() for line in lines}) == 1  # the seconds column ends at the same place
    assert lines[1].rstrip().endswith("wd=1.2e-05")
    assert progress.overall().startswith("stage 0/4 baseline · 2 trials · 0:00 elapsed")
    progress.stage_expected, progress.stage_trials = 8, 2  # a stage with a fixed number of trials says what is left
    assert "trial 3/8, ~" in progress.overall() and "left in the stage" in progress.overall()
    assert [clock(s) for s in (5, 65, 3723)] == ["0:05", "1:05", "1:02:03"]


def test_the_live_line_shows_each_running_trial_and_its_last_epoch():
    """Trials side by side (threads, processes): a line each under the overall one, guesses marked, gone once done."""
    from conftest import fake_result, make_plan, memory_studies
    from rich.console import Console

    from searcher.report.terminal import RichProgress
    from searcher.search.stages import BaselineStage
    from searcher.search.trials import TrialOutcome
    from searcher.train.trainer import EpochRecord

    plan = make_plan()
    stage = BaselineStage(plan, memory_studies(plan).open("baseline"))
    progress = RichProgress(Console(width=160, force_terminal=False))
    progress.stage(stage)
    (first,) = stage.next_trials([])
    second = replace(first, seed=first.seed + 1, repeat=1)
    progress.trial(first)
    progress.epoch(first, EpochRecord(3, 0.5, 0.5, 0.9712, 0.01, 1.0))
    assert progress.status.status.endswith(f"{first.label} epoch 3 val_acc 0.9712")  # one trial: on the line itself
    progress.trial(second, speculative=True)
    lines = progress.status.status.splitlines()
    assert "2 trials running" in lines[0]
    assert lines[1:] == [f"  {first.label} epoch 3 val_acc 0.9712", f"  {second.label} (guess) training"]
    progress.trial_done(TrialOutcome(first, "ok", fake_result(0.97)))
    assert progress.status.status.endswith(f"{second.label} (guess) training · best score 0.9700")


def test_stage_and_trial_scores_read_back_from_searches_recorded_before_score_was_logged_on_stage_runs():
    """Stage runs once logged the winner's score as best_val_acc, and some trials carry no `score`: both read back
    as their score; where `score` is recorded, it is what the tables show, never the best epoch."""
    from searcher.report.candidates import trial_score
    from searcher.report.content import stage_score
    from searcher.tracking.records import StageRecord

    def stage(metrics: dict[str, float]) -> StageRecord:
        return StageRecord("s", "baseline", "0 baseline", "FINISHED", 0, "w16 d2", None, metrics, (), ())

    assert stage_score(stage({"best_val_acc": 0.9837})) == "0.9837"  # recorded before this change
    assert stage_score(stage({"score": 0.9837})) == "0.9837"
    old, new = record(1), replace(record(2), metrics={"best_val_acc": 0.9895, "score": 0.9837})
    assert trial_score(old) == old.score == 0.9 and trial_score(new) == new.score == 0.9837 and new.val_acc == 0.9895
