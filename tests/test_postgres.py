"""Shared storage on a real PostgreSQL server: the MLflow backend and the Optuna study of a search with two workers.

scripts/test.sh (CI's command) starts a throw-away server and exports its URL in
SEARCHER_TEST_POSTGRES_URL; without one this test skips.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from conftest import run_cli, search_runs

pytestmark = pytest.mark.slow

SERVER = os.environ.get("SEARCHER_TEST_POSTGRES_URL")


@pytest.fixture
def databases():
    """Two fresh databases on the server (MLflow and Optuna cannot share one), dropped afterwards."""
    if not SERVER:
        pytest.skip("no PostgreSQL server: set SEARCHER_TEST_POSTGRES_URL=postgresql://user:password@host:port/postgres (scripts/test.sh starts one)")
    import psycopg2

    names = [f"searcher_{role}_{uuid.uuid4().hex[:8]}" for role in ("mlflow", "optuna")]
    admin = psycopg2.connect(SERVER)
    admin.autocommit = True
    for name in names:
        admin.cursor().execute(f"CREATE DATABASE {name}")
    base = SERVER.rsplit("/", 1)[0]
    yield tuple(f"{base}/{name}" for name in names)
    for name in names:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def test_two_workers_share_one_study_and_one_tracking_store_on_postgres(databases, tmp_path):
    import optuna

    from searcher.search.stages import regularization_name
    from searcher.uris import password_of, with_driver

    mlflow_uri, optuna_uri = databases
    result = run_cli(
        "search=quick",
        "search.regularization.trials=2",  # both asked at once (quick: trials_in_flight 2): the two workers report together
        "search.final.seeds=1",
        "search.depth.cap=3",
        "search.regularization.pruner_warmup_epochs=0",
        "search.warm_start=false",  # the depth winner is cold, so it enters the study told, not as a third trial to train
        "execution=processes",
        "execution.workers=2",
        f"tracking.uri={mlflow_uri}",
        f"tracking.optuna_storage={optuna_uri}",
        "search.name=shared",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    password = password_of(SERVER)
    assert password and password not in result.stdout + result.stderr, "a password was printed"

    uri = with_driver(mlflow_uri)
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert search.info.status == "FINISHED"
    assert all(password not in value for value in search.data.params.values()), "a password was logged as a param"
    assert search.data.params["tracking.uri"].endswith(mlflow_uri.split("@", 1)[1]) and ":***@" in search.data.params["tracking.uri"]
    every = search_runs(uri, "tags.`searcher.role` = 'trial'")
    trials = [t for t in every if t.data.tags.get("searcher.decision") != "discarded"]  # (guesses never asked for: execution.speculate)
    keys = [t.data.tags["searcher.trial_key"] for t in every]
    assert len(keys) == len(set(keys)) and len(trials) == search.data.metrics["trials"], "every trial recorded exactly once"
    assert all(t.info.status == "FINISHED" for t in trials)

    study = optuna.load_study(study_name="shared/regularization", storage=with_driver(optuna_uri))
    asked = [t for t in study.trials if t.user_attrs.get("role") != "unregularized"]
    assert len(asked) == 2 and all(t.state.name in ("COMPLETE", "PRUNED") for t in asked)
    # The workers reported each epoch to the shared study (all but the one that ended the trial): the recorded curves.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    regularization = {t.info.run_name: t for t in trials if t.data.tags["searcher.stage"] == "regularization"}
    for trial in asked:
        run = regularization[regularization_name(trial.params)]
        curve = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_acc")}
        assert len(trial.intermediate_values) >= len(curve) - 1 >= 1
        assert all(curve[epoch] == pytest.approx(value) for epoch, value in trial.intermediate_values.items())


def test_the_ui_serves_the_postgresql_store_a_search_used_from_its_plain_uri(databases, tmp_path):
    """`python -m searcher.ui --tracking-uri postgresql://...`, as a user types it (no driver named): it answered
    "No module named 'psycopg'" (SQLAlchemy's default driver) while the search used psycopg2."""
    import socket
    import urllib.request

    from mlflow.tracking import MlflowClient

    from searcher.uris import with_driver

    mlflow_uri, _ = databases
    MlflowClient(tracking_uri=with_driver(mlflow_uri)).create_experiment("searcher")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "searcher.ui", "--tracking-uri", mlflow_uri, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        deadline, answered = time.monotonic() + 120, False
        while time.monotonic() < deadline and process.poll() is None and not answered:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    answered = response.status == 200
            except OSError:
                time.sleep(0.5)
        assert answered, f"the UI did not come up on the PostgreSQL store (exit {process.poll()})"
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert "No module named" not in output and "Traceback" not in output, output[-2000:]
