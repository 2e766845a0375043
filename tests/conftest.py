"""Shared fixtures: a fake evaluator for controller rules, and real temporary MLflow/Optuna stores."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch

from searcher.model.cnn import CNN
from searcher.model.spec import ArchSpec
from searcher.search.plan import RegularizerRange, SearchPlan
from searcher.search.stages import Stage, StageResult
from searcher.search.studies import StudyBook
from searcher.search.trials import TrialOutcome, TrialRequest
from searcher.train.stability import StabilityRule
from searcher.train.trainer import EpochRecord, TrainResult, TrainSettings, pack_bits

REPO = Path(__file__).resolve().parent.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)
# Each test process trains on one torch thread, as the product's CPU trials do (searcher/execution/threads.py): the
# suite runs two test processes on two cores, and two threads each spin-wait for each other (a trainer test took 40 s
# instead of a few). Tests that need another count set it inside a `torch_threads` block.
torch.set_num_threads(1)
SHARED_SEARCHES = ("quick_search", "transfer_search")  # session fixtures that each run a whole search
# A whole search of a family or a dataset in seconds: its plumbing is the point, not its decisions
TINY = ("search=quick", "search.width.cap=32", "search.depth.cap=3", "search.final.seeds=1", "search.regularization.trials=1", "train.stability.max_epochs=8")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that read one shared search run on one test process (scripts/test.sh: `--dist loadgroup`):
    spread over two, each process ran that search for itself (30-40 s each on 2 cores)."""
    for item in items:
        shared = [name for name in SHARED_SEARCHES if name in getattr(item, "fixturenames", ())]
        assert len(shared) <= 1, f"{item.nodeid} reads two shared searches: they could not share one test process"
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))



def make_plan(**overrides) -> SearchPlan:
    """A plan for the fake runner: small and strict (one seed, no cross-validation, one trial in flight), not the
    config's defaults (tests/test_defaults.py checks those against conf/)."""
    values = dict(
        seed=0,
        data_identity="fake",
        family=CNN(),
        input_shape=(1, 8, 8),
        train=TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=StabilityRule()),
        repeats=1,
        max_repeats=1,
        folds=1,
        significance=0.05,
        width_ties="keep_smaller",  # the strict rule: what a test of "better beyond noise" needs (ties=grow is tested where named)
        depth_ties="keep_smaller",
        depth_select="shallowest",
        baseline_depth=2,
        baseline_width=16,
        width_factor=2.0,
        width_cap=128,
        width_tolerance=0.005,
        width_patience=2,
        depth_cap=6,
        depth_min_improvement=0.002,
        new_layer_factors=(0.5, 1.0, 2.0),
        regularization_min_improvement=0.002,
        regularization_trials=3,
        regularization_in_flight=1,
        regularizers=(RegularizerRange("weight_decay", 0.0, 0.1, log=False), RegularizerRange("dropout", 0.0, 0.5, log=False)),
        pruner_warmup_epochs=8,
        final_seeds=2,
        max_consecutive_failures=5,
        transfer=None,
        warm_start=False,
    )
    values.update(overrides)
    return SearchPlan(**values)


def fake_correct(score: float, images: int) -> bytes:
    """Which of `images` validation images a fake trial got right: the round(score x images) easiest ones.

    Nested like real networks' are (a better one also gets the easy images right), so two fake
    trials differ on exactly |difference| x images images, all in the better one's favour.
    """
    return pack_bits(torch.arange(images) < round(score * images))


def fake_result(score: float, test: float | None = None, epochs: int = 10, images: int = 1000) -> TrainResult:
    history = tuple(EpochRecord(e, 1.0 / e, 1.0 / e, score * min(1.0, e / 5), 1e-3, 0.01 * e) for e in range(1, epochs + 1))
    return TrainResult(
        "stable", history, score, epochs, 0.1, 1000.0, test_acc=test, test_loss=0.1 if test is not None else None,
        val_correct=fake_correct(score, images),
    )


class FakeRunner:
    """A Runner whose trials "train" instantly: score = score_of(request), scored on `images` validation images."""

    def __init__(
        self, score_of: Callable[[TrialRequest], float], fail: Callable[[TrialRequest], bool] = lambda r: False, images: int = 1000
    ):
        self.score_of = score_of
        self.fail = fail
        self.images = images
        self.requests: list[TrialRequest] = []
        self.stages: list[str] = []

    def begin_stage(self, stage: Stage) -> None:
        self.stages.append(stage.name)

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]:
        outcomes = []
        for request in requests:
            self.requests.append(request)
            if self.fail(request):
                outcomes.append(TrialOutcome(request, "failed", None, error="RuntimeError: boom"))
                continue
            score = self.score_of(request)
            test = score - 0.01 if request.evaluate_test else None
            outcomes.append(TrialOutcome(request, "ok", fake_result(score, test, images=self.images)))
        return outcomes

    def end_stage(self, stage: Stage, result: StageResult, outcomes: list[TrialOutcome]) -> None:
        pass


class Interrupted(Exception):
    pass


class ReplayRunner(FakeRunner):
    """Reuses outcomes an earlier (interrupted) attempt recorded, by trial key, as the MLflow-backed runners do;
    `stop_after` fresh trials, it stops as a killed search would."""

    def __init__(self, score_of, recorded: dict[str, TrialOutcome], stop_after: int | None = None, images: int = 287):
        super().__init__(score_of, images=images)
        self.recorded, self.stop_after = recorded, stop_after
        self.trained: list[TrialRequest] = []  # the fresh trials, in order

    def run_trials(self, stage: Stage, requests: list[TrialRequest]) -> list[TrialOutcome]:
        outcomes = []
        for request in requests:
            if request.key in self.recorded:
                outcomes.append(self.recorded[request.key])
                continue
            if self.stop_after is not None and len(self.trained) >= self.stop_after:
                raise Interrupted
            fresh = self.train(stage, request)
            self.recorded[request.key] = fresh
            self.trained.append(request)
            outcomes.append(fresh)
        return outcomes

    def train(self, stage: Stage, request: TrialRequest) -> TrialOutcome:
        (fresh,) = super().run_trials(stage, [request])
        return fresh


def memory_studies(plan: SearchPlan) -> StudyBook:
    return StudyBook(optuna.storages.InMemoryStorage(), "test", plan)


def arch_score(table: Callable[[ArchSpec], float]) -> Callable[[TrialRequest], float]:
    return lambda request: table(request.arch)


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m searcher ARGS` in a real subprocess (`env`: variables added to this process's)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "searcher", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def quick_search(tmp_path_factory):
    """ONE uninterrupted quick search (seed 0, name "check"), shared by every test that reads a finished search.
    Serial: the reference other executions and interrupted runs must decide as (and no guesses among its trials)."""
    folder = tmp_path_factory.mktemp("quick")
    uri = f"sqlite:///{folder / 'm.db'}"
    result = run_cli("search=quick", "execution=serial", f"tracking.uri={uri}", "search.name=check", cwd=folder, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder, uri, result.stdout


def search_runs(uri: str, query: str = "") -> list:
    from searcher.tracking.store import client_for

    client = client_for(uri)  # (under the store's lock: polling a search that is creating the store is safe)
    experiment = client.get_experiment_by_name("searcher")
    return client.search_runs([experiment.experiment_id], query, max_results=5000) if experiment else []


SOURCE_CLASSES, TARGET_CLASSES = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]


@pytest.fixture(scope="session")
def transfer_search(tmp_path_factory):
    """ONE quick search, shared by the UI, report, registry and transfer tests: digits 0-4, transfer to 5-9,
    every figure drawn. Returns (folder, tracking URI, search name, stdout). (With label smoothing held at 0 the
    regularization stage always trains its trials: on five easy classes it could otherwise be skipped, design.md §3.1.)"""
    folder = tmp_path_factory.mktemp("shared-search")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run_cli(
        "search=quick",
        f"tracking.uri={uri}",
        "search.name=shared",
        "+dataset=digits",
        f"dataset.classes={SOURCE_CLASSES}",
        "search.transfer.enabled=true",
        f"search.transfer.dataset={{name: digits, classes: {TARGET_CLASSES}}}",
        "report.trial_plots=true",
        "search.regularization.space.label_smoothing.high=0.0",
        cwd=folder,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder, uri, "shared", result.stdout


# Hydra multiruns (tests/test_multirun.py, tests/test_slurm.py)


def start_multirun(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "searcher", "-m", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finished_searches(uri: str) -> dict[str, object]:
    runs = search_runs(uri, "tags.`searcher.role` = 'search'")
    return {r.data.tags["searcher.multirun_job"]: r for r in runs if r.info.status == "FINISHED"}


def completed_trials(uri: str, search_run_id: str | None = None) -> list:
    runs = [r for r in search_runs(uri, "tags.`searcher.role` = 'trial'") if "searcher.status" in r.data.tags]
    return [r for r in runs if search_run_id is None or r.data.tags["searcher.search_run_id"] == search_run_id]


def check_two_complete_searches(uri: str, sweep: Path, seeds: tuple[int, int] = (1, 2)) -> dict:
    """Jobs 0 and 1 of the multirun in `sweep` (one per seed) each left one finished search, every trial recorded once."""
    searches = finished_searches(uri)
    assert sorted(searches) == ["0", "1"]
    for job, run in searches.items():
        tags = run.data.tags
        assert tags["searcher.multirun_sweep_dir"] == str(sweep)
        assert f"seed={seeds[int(job)]}" in tags["searcher.multirun_overrides"]
        assert run.data.params["seed"] == str(seeds[int(job)])
        assert "test_acc" in run.data.metrics
        keys = [t.data.tags["searcher.trial_key"] for t in completed_trials(uri, run.info.run_id)]
        assert keys and len(keys) == len(set(keys)), "a trial was recorded twice"
    assert not [r for r in search_runs(uri) if r.info.status == "RUNNING"]
    return searches


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made unwritable (nothing can be created, changed or removed in it) for as long as the block runs.

    chmod for a user; root ignores modes, so as root the folder is made immutable (chattr +i), where the
    file system allows it (otherwise the test is skipped)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"running as root, and chattr +i does not work here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def wait_for(condition, timeout: float = 300, every: float = 0.5):
    """Poll `condition` every `every` s until it returns something truthy (returned), failing the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")
