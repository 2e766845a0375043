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
from searcher.search.plan import RegularizerRange, TransferPlan
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
    lines = [line for line in console.export_text().splitlines() if line.startswith("  ") and " score " in line]  # (not the legend)
    assert len(lines) == 2 and len({re.search(r"\d\.\ds ", line).end() for line in lines}) == 1  # the seconds column ends at the same place
    assert lines[1].rstrip().endswith("wd=1.2e-05")
    assert progress.overall().startswith("stage 0 baseline (1 of 5) · 2 trials · 0:00 elapsed")  # stages 0-4: five of them
    progress.stage_expected, progress.stage_trials = 8, 2  # a stage with a fixed number of trials says which trial it is on
    assert "trial 3/8" in progress.overall()
    assert [clock(s) for s in (5, 65, 3723)] == ["0:05", "1:05", "1:02:03"]
    transfer = RichProgress(Console(width=160, force_terminal=False))
    transfer.stage(BaselineStage(replace(plan, transfer=TransferPlan("t", 1, 1)), memory_studies(plan).open("b")))
    assert transfer.overall().startswith("stage 0 baseline (1 of 6)")  # stage 5 (transfer) on: six


def test_before_the_first_stage_and_the_first_timed_trial_the_live_line_says_what_it_is_doing():
    from conftest import fake_result, make_plan, memory_studies
    from rich.console import Console

    from searcher.report.terminal import RichProgress
    from searcher.search.stages import BaselineStage
    from searcher.search.trials import TrialOutcome

    plan = make_plan()
    progress = RichProgress(Console(width=160, force_terminal=False))
    progress.phase("opening the stages' Optuna studies")
    assert progress.status.status == "starting: opening the stages' Optuna studies"
    stage = BaselineStage(plan, memory_studies(plan).open("baseline"))
    progress.stage(stage)
    (request,) = stage.next_trials([])
    progress.trial(request)
    assert "time left: known once the first trial is timed" in progress.status.status
    progress.trial_done(TrialOutcome(request, "ok", fake_result(0.98)))
    assert progress.finish is not None and " left" in progress.overall() and "known once" not in progress.overall()


class ShownRunner:
    """The fake runner, reporting to a live view what the real Runner reports: stage starts, trial starts and ends."""

    def __init__(self, runner, progress):
        self.runner, self.progress = runner, progress

    def begin_stage(self, stage):
        self.progress.stage(stage)

    def run_trials(self, stage, requests):
        for request in requests:
            self.progress.trial(request)
        outcomes = self.runner.run_trials(stage, requests)
        for outcome in outcomes:
            self.progress.trial_done(outcome)
        return outcomes

    def end_stage(self, stage, result, outcomes):
        self.progress.stage_ended(result, outcomes)


def test_the_previous_stage_winners_extra_seeds_are_named_as_such_under_the_stage_that_asks_for_them():
    """The depth stage compares its children with the width winner, on more seeds while that is inconclusive: those
    seeds are trained under the depth header, labelled as the width winner's, not as depth candidates."""
    from conftest import FakeRunner, make_plan, memory_studies
    from rich.console import Console

    from searcher.report.terminal import LEGEND, RichProgress
    from searcher.search import run_search

    plan = make_plan(max_repeats=3, depth_cap=3)
    scores = lambda request: 0.905 if request.arch.depth == 3 else 0.90  # noqa: E731  (a child +0.005: inconclusive on one seed)
    console = Console(record=True, width=200, force_terminal=False)
    progress = RichProgress(console)
    run_search(plan, memory_studies(plan), ShownRunner(FakeRunner(scores), progress))
    text = console.export_text()
    flat = " ".join(text.split())  # (the legend is one line, wrapped where the terminal is narrower)
    assert flat.count(LEGEND) == 1 and flat.index(LEGEND) < flat.index("stage 0 baseline")
    assert LEGEND in (REPO / "README.md").read_text()  # the README's section on the output quotes it
    sections = re.split(r"─+ stage \d (\w+) ─+", text)
    stages = dict(zip(sections[1::2], sections[2::2], strict=True))
    assert "w16 d2 r1 (the width winner's extra seed, for the comparison)" in stages["depth"]
    seen: set[str] = set()
    for name in ("baseline", "width", "depth", "regularization", "final"):  # a candidate an earlier stage trained says so
        labels = re.findall(r"\d\.\ds\s+(.+)$", stages[name], re.MULTILINE)
        candidates = [re.sub(r" r\d+$", "", label.split(" (")[0]) for label in labels]
        for label, candidate in zip(labels, candidates, strict=True):
            assert (candidate in seen) == ("extra seed, for the comparison" in label), (name, label)
        seen |= set(candidates)


def test_a_stage_that_trains_none_of_its_own_candidates_says_why_under_its_header():
    from conftest import FakeRunner, make_plan, memory_studies
    from rich.console import Console

    from searcher.report.terminal import RichProgress
    from searcher.search import run_search

    regularizers = (RegularizerRange("dropout", 0.0, 0.5, log=False), RegularizerRange("label_smoothing", 0.0, 0.2, log=False))
    plan = make_plan(width_cap=16, depth_cap=3, max_repeats=3, regularizers=regularizers)
    console = Console(record=True, width=400, force_terminal=False)
    run_search(plan, memory_studies(plan), ShownRunner(FakeRunner(lambda request: 287 / 288, images=288), RichProgress(console)))
    sections = re.split(r"─+ stage \d (\w+) ─+", console.export_text())
    regularization = dict(zip(sections[1::2], sections[2::2], strict=True))["regularization"]
    assert "w16 d2 r1 (the depth winner's extra seed, for the comparison)" in regularization  # trained to know, then:
    assert "skipped: w16 d2 gets 3 images wrong over its 3 seeds" in regularization


def test_the_time_left_is_a_range_from_the_fewest_trials_to_the_caps():
    """Width units (a network's layer widths summed) by hand, for a made-up plan: the fewest trials each stage can take
    and what its caps allow, the widest choices winning."""
    from conftest import make_plan

    from searcher.report.eta import Position, seconds_left, units_left, width_grid

    plan = make_plan(max_repeats=3, width_cap=64, depth_cap=4, regularization_trials=4, final_seeds=2)
    assert width_grid(plan, 16) == [32, 64]
    # fewest: baseline 32 + widths 32 and 64 on one seed (patience 2): 64 + 128 + one round of d3 children of w16
    # (+w8, +w16, +w32): 40 + 48 + 64 + regularization 4 x 32 + final 2 x 32
    # most: 32 + every width on 3 seeds and the baseline's 2 extra: 3 x 192 + 64 + rounds to d4 from w64 d2
    # (extra seeds 256, children 352 and 480, winners' extra seeds 384 and 512) + 8 regularization trials of w64 d4
    # (256 each) + 2 final seeds of it
    assert units_left(plan, Position(0, (16, 16), 0)) == (32 + 192 + 152 + 128 + 64, 32 + 640 + 1984 + 2048 + 512)
    # in the depth stage from w32 d2, 100 units done: its fewest (304) and most (1424) less what is done, then the rest
    assert units_left(plan, Position(2, (32, 32), 100)) == (204 + 4 * 64 + 2 * 64, 1324 + 8 * 192 + 2 * 192)
    assert units_left(plan, Position(4, (16, 16), 1000)) == (0, 0)  # never below nothing
    probes = replace(plan, transfer=TransferPlan("t", top_k=2, longest=1))
    assert units_left(probes, Position(4, (16, 16), 0)) == (64, 64 + 3 * 32)  # the transfer probes, at most
    assert seconds_left(plan, Position(4, (16, 16), 0), 0.5) == (32.0, 32.0)
    assert units_left(replace(plan, concurrency=2, width_patience=1), Position(1, (16, 16), 0))[0] == 192 + 152 + 128 + 64
    assert units_left(plan, Position(2, (16, 16, 16, 16), 0))[1] == 4 * 64 * 2 + 2 * 64  # at the depth cap: no round
    smoothing = replace(plan, regularizers=(*plan.regularizers, RegularizerRange("label_smoothing", 0.0, 0.2, log=False)))
    fewest, most = units_left(smoothing, Position(0, (16, 16), 0))
    assert (fewest, most) == (32 + 192 + 152 + 64, 32 + 640 + 1984 + 2048 + 512)  # the regularization stage may be skipped


@pytest.mark.parametrize(
    ("low", "high", "said"),
    [
        (12, 40, "~10-40 s left"),
        (40, 170, "~40 s-3 min left"),
        (70, 170, "~1-3 min left"),
        (120, 120, "~2 min left"),
        (0, 3, "a few seconds left"),
        (3 * 3600, 4.5 * 3600, "~3-5 h left"),
        (-4, 30, "~0-30 s left"),
    ],
)
def test_the_range_reads_as_a_user_reads_a_timer(low, high, said):
    from searcher.report.eta import span

    assert span(low, high) == said


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
    console = Console(record=True, width=200, force_terminal=False)
    later = RichProgress(console)
    later.stage(stage)
    later.stages_seen.append("width")  # the baseline stage has ended; its guess finishes under the next one
    later.trial_done(TrialOutcome(second, "ok", fake_result(0.97)), speculative=True)
    assert f"{second.label} (a guess of the baseline stage, which has ended: not used)" in console.export_text()
    assert later.position is not None and later.position.done == 0  # nor is its work counted as the running stage's


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


@pytest.mark.slow
def test_from_the_command_to_the_first_trial_the_live_line_says_what_the_search_is_doing(tmp_path, monkeypatch):
    """Loading MLflow, opening the stores, preparing the trials, the first trial, then the time left: a tiny search."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.status import Status

    from searcher.app import run
    from searcher.config import validate

    shown: list[str] = []
    real_start, real_update = Status.start, Status.update
    monkeypatch.setattr(Status, "start", lambda self: (shown.append(str(self.status)), real_start(self))[1])
    monkeypatch.setattr(Status, "update", lambda self, status=None, **kw: (shown.append(str(status)), real_update(self, status, **kw))[1])
    tiny = ["search.width.cap=16", "search.depth.cap=2", "search.regularization.trials=1", "search.final.seeds=1", "report.enabled=false"]
    epochs = ["train.stability.window=2", "train.stability.min_epochs=2", "train.stability.max_epochs=2"]
    overrides = ["search=quick", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", "execution=serial", *tiny, *epochs]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = validate(OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=False))
    assert run(config, dataset_chosen=True, console=Console(file=open(tmp_path / "said", "w"), force_terminal=True)).exit_code == 0
    said = [text.split(" · ")[0] if text.startswith("stage") else text for text in shown]
    order = [
        "starting: importing MLflow",
        f"starting: opening the tracking store sqlite:///{tmp_path / 'm.db'}",
        "starting: preparing the trials' execution (serial) and the stages' Optuna studies",
        "stage 0 baseline (1 of 5)",
        "stage 1 width (2 of 5)",
    ]
    assert [said.index(text) for text in order] == sorted(said.index(text) for text in order)
    first_trial = next(text for text in shown if "w16 d2" in text)
    assert "time left: known once the first trial is timed" in first_trial
    assert all(re.search(r" left$| left · ", text) for text in shown if text.startswith("stage 1 width"))  # a range from then on
    assert any(text.startswith("the search is decided: logging") for text in shown)
