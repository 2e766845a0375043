"""Shared-storage settings: passwords never shown, the PostgreSQL driver, Optuna's journal file across processes, cluster presets."""

import multiprocessing

import optuna
import pytest
from conftest import REPO, make_plan
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from searcher.config import ConfigError, validate
from searcher.uris import password_of, redact

SECRET = "s3cr%40t"  # as written in the URI (%-encoded "s3cr@t")
URI = f"postgresql://searcher:{SECRET}@db.cluster:5432/mlflow"


def composed(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def config(*overrides: str):
    return validate(OmegaConf.to_container(composed(*overrides), resolve=False))


UNREACHABLE = "postgresql://searcher:s3cret@/optuna?host=/nonexistent&connect_timeout=1"  # a socket folder that does not exist


@pytest.mark.slow
def test_a_password_in_a_store_uri_reaches_neither_the_terminal_nor_the_output_folder(tmp_path):
    """Hydra saves every override as given, its launcher logs them and it prints a failed job's: all masked
    (a real multirun whose job fails on a store that cannot be reached, after Hydra wrote its files)."""
    from conftest import run_cli

    result = run_cli("-m", "search=quick", "tracking.uri=sqlite:///m.db", f"tracking.optuna_storage='{UNREACHABLE}'", "seed=0", cwd=tmp_path)
    assert result.returncode != 0
    shown = result.stdout + result.stderr
    assert "Error executing job with overrides" in shown and "postgresql://searcher:***@" in shown
    saved = [path for path in tmp_path.rglob("*") if path.is_file() and path.suffix in (".yaml", ".log")]
    assert {path.name for path in saved} >= {"config.yaml", "hydra.yaml", "overrides.yaml", "multirun.yaml"}
    for text in (shown, *(path.read_text() for path in saved)):
        assert "s3cret" not in text
    query = "postgresql://searcher@db/optuna?sslmode=require&password=s3cret"
    assert password_of(query) == "s3cret" and redact(query) == "postgresql://searcher@db/optuna?sslmode=require&password=***"


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["tracking.uri", "tracking.optuna_storage"])
def test_an_unreachable_store_is_one_sentence_and_exit_2_before_anything_is_created(tmp_path, setting):
    import time

    from conftest import run_cli

    stores = {"tracking.uri": f"sqlite:///{tmp_path / 'm.db'}", "tracking.optuna_storage": f"sqlite:///{tmp_path / 'o.db'}"} | {setting: f"'{UNREACHABLE}'"}
    started = time.monotonic()
    result = run_cli("search=quick", *(f"{key}={value}" for key, value in stores.items()), cwd=tmp_path)
    assert result.returncode == 2 and time.monotonic() - started < 90
    assert f"error: {setting}='postgresql://searcher:***@/optuna" in " ".join(result.stderr.split())
    assert "is unreachable" in result.stderr and "start the database server or fix the URI" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stdout + result.stderr and not list(tmp_path.glob("*.db")) and not (tmp_path / "outputs").exists()


def test_passwords_in_uris_are_masked_in_params_config_and_commands():
    from searcher.tracking.setup import search_settings, shown_config, ui_command
    from searcher.uris import redact, redact_text

    assert redact(URI) == "postgresql://searcher:***@db.cluster:5432/mlflow"
    assert redact("postgresql://searcher@db/mlflow") == "postgresql://searcher@db/mlflow"
    assert redact_text(f"could not connect to {URI} with password s3cr@t", URI) == (
        "could not connect to postgresql://searcher:***@db.cluster:5432/mlflow with password ***"
    )
    c = config(f"tracking.uri={URI}", f"tracking.optuna_storage={URI.replace('mlflow', 'optuna')}")
    settings = search_settings(c)
    assert settings["tracking.uri"] == redact(URI) and "***" in settings["tracking.optuna_storage"]
    for text in (*settings.values(), shown_config(c), ui_command(URI)):
        assert SECRET not in text and "s3cr@t" not in text


def test_a_postgresql_uri_names_the_installed_driver():
    from searcher.uris import with_driver

    assert with_driver("postgresql://u@h/db") in ("postgresql+psycopg2://u@h/db", "postgresql://u@h/db")
    assert with_driver("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert with_driver("sqlite:///m.db") == "sqlite:///m.db"


def test_mlflow_and_optuna_cannot_share_one_postgresql_database():
    from searcher.tracking.setup import optuna_storage

    with pytest.raises(ConfigError, match="tracking.optuna_storage"):
        optuna_storage(config(f"tracking.uri={URI}"))
    assert optuna_storage(config(f"tracking.uri={URI}", "tracking.optuna_storage=journal:////nfs/o.log")) == "journal:////nfs/o.log"


@pytest.mark.parametrize(
    "override, setting",
    [
        ("execution.kind=mpi", "execution.kind"),
        ("execution=processes execution.workers=0", "execution.workers"),
        ("search.regularization.trials_in_flight=0", "search.regularization.trials_in_flight"),
        ("tracking.optuna_storage=redis://x", "tracking.optuna_storage"),
    ],
)
def test_bad_execution_and_storage_settings_name_the_setting(override, setting):
    with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
        config(*override.split())


def test_execution_group_and_cluster_preset_compose():
    assert config("execution=processes", "execution.workers=3").execution.workers == 3
    assert config("execution=submitit").execution.kind == "submitit"
    launcher = composed("hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu", hydra=True).hydra.launcher
    assert launcher.partition == "gpu" and launcher.max_num_timeout > 0 and launcher.gpus_per_node == 1
    assert launcher._target_.endswith("SlurmLauncher")


def report_from_another_process(storage: str, remote, queue) -> None:
    from searcher.train.trainer import EpochRecord

    on_epoch = remote.reporter(storage)
    queue.put([on_epoch(EpochRecord(epoch, 1.0, 1.0, 0.5 + epoch / 10, 0.1, 0.0)) for epoch in (1, 2, 3)])


def test_a_worker_reports_epochs_to_a_journal_file_study(tmp_path):
    from searcher.search.studies import RemoteTrial, StudyBook

    storage = f"journal:///{tmp_path / 'optuna.log'}"
    study = StudyBook(storage, "journal", make_plan()).open("regularization")
    trial = study.ask({"dropout": optuna.distributions.FloatDistribution(0, 0.5)})
    remote = RemoteTrial(study.study_name, trial._trial_id, study.pruner)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=report_from_another_process, args=(storage, remote, queue))
    worker.start()
    assert queue.get(timeout=120) == [False, False, False]  # no pruning: no completed trial to compare with
    worker.join(timeout=30)
    study.tell(trial, 0.8)
    (frozen,) = study.get_trials()
    assert frozen.intermediate_values == pytest.approx({1: 0.6, 2: 0.7, 3: 0.8})


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["tracking.uri", "tracking.optuna_storage"])
def test_a_read_only_sqlite_location_is_one_sentence_and_exit_2_before_anything_is_created(tmp_path, setting):
    from conftest import read_only, run_cli

    locked = tmp_path / "locked"
    locked.mkdir()
    stores = {"tracking.uri": f"sqlite:///{tmp_path / 'm.db'}", "tracking.optuna_storage": f"sqlite:///{tmp_path / 'o.db'}"}
    stores[setting] = f"sqlite:///{locked / 'store.db'}"
    with read_only(locked):
        result = run_cli("search=quick", *(f"{key}={value}" for key, value in stores.items()), cwd=tmp_path)
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, said
    assert f"error: {setting}='sqlite:///{locked / 'store.db'}' cannot be written: the folder {locked} is read-only" in said
    assert f"make it writable or point {setting} at a writable folder" in said
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["locked"]  # no store, no output folder


def test_unwritable_stores_are_found_before_anything_is_written(tmp_path):
    from conftest import read_only

    from searcher.uris import unwritable_store

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "m.db").write_bytes(b"")
    with read_only(tmp_path / "locked"):
        for uri in ("sqlite:///{}/locked/new.db", "journal:///{}/locked/deeper/o.log", "sqlite:///{}/locked/m.db?mode=rwc"):
            assert "is read-only for this user" in unwritable_store("tracking.optuna_storage", uri.format(tmp_path))
    for uri in ("sqlite:///{}/m.db", "journal:///{}/new/o.log", "sqlite:///:memory:", "postgresql://u@h/db", "http://h:5000"):
        assert unwritable_store("tracking.uri", uri.format(tmp_path)) is None


def test_a_failing_store_is_retried_for_a_bounded_time_then_named_and_other_errors_are_not_store_failures(tmp_path):
    """Real stores made read-only: MLflow's writes are retried for `wait_seconds` then TrackingLost; Optuna's failures
    are told apart from MLflow's; a bad request is not retried and is no store's failure."""
    import time

    from conftest import read_only
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from searcher.search.studies import StudyStorageLost, report_epoch
    from searcher.tracking.faults import TrackingLost, failed_store
    from searcher.tracking.retry import RetryingClient
    from searcher.train.trainer import EpochRecord

    folder = tmp_path / "stores"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'm.db'}"
    client = RetryingClient(MlflowClient(uri), uri, wait_seconds=1.0, first_delay_seconds=0.2)
    experiment = client.create_experiment("e")
    study = optuna.create_study(storage=f"sqlite:///{folder / 'o.db'}")
    trial = study.ask()
    with pytest.raises(MlflowException) as bad_request:  # answered at once, not retried
        client.get_run("no-such-run")
    assert failed_store(bad_request.value) is None
    with read_only(folder):
        started = time.monotonic()
        with pytest.raises(TrackingLost) as lost:
            client.create_run(experiment)
        assert 1.0 <= time.monotonic() - started < 10
        assert "create_run: OperationalError: unable to open database file" in lost.value.cause and failed_store(lost.value) == "tracking"
        with pytest.raises(StudyStorageLost) as optuna_lost:
            report_epoch(trial, EpochRecord(1, 1.0, 1.0, 0.5, 0.1, 0.0))
        assert "unable to open database file" in str(optuna_lost.value) and failed_store(optuna_lost.value) == "optuna"
        with pytest.raises(optuna.exceptions.StorageInternalError) as told:
            study.tell(trial, 0.5)
        assert failed_store(told.value) == "optuna"
    assert failed_store(ValueError("Cannot tell a COMPLETE trial.")) is None


def test_a_reader_of_a_new_sqlite_store_waits_for_the_process_creating_it(tmp_path):
    """A reader (the report, the UI, a test polling a search) opening a store while a search makes its tables used
    to see a half-migrated schema ("no such column"): readers take the same lock as the search that creates it."""
    import threading

    from searcher.tracking.locks import creating
    from searcher.tracking.store import client_for

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    opened = threading.Event()
    with creating(uri):  # a search is creating the store
        reader = threading.Thread(target=lambda: (client_for(uri), opened.set()))
        reader.start()
        assert not opened.wait(1.0)  # the reader waits for the lock
    reader.join(60)
    assert opened.is_set()
    assert [e.name for e in client_for(uri).search_experiments()] == ["Default"]


@pytest.mark.parametrize(
    "flags",
    [["--cfg", "job"], ["--cfg", "all"], ["--cfg", "hydra"], ["--cfg", "job", "--resolve"], ["--info"], ["--info", "config"], ["--help"], []],
)
def test_no_way_of_printing_settings_shows_a_password(tmp_path, flags):
    """Hydra prints settings as given (`--cfg`, `--info`, `--help`'s current values, its own errors): masked.
    (Without flags: a mistyped key, which Hydra's error quotes; the output folder's files are checked by the multirun test above.)"""
    import secrets

    from conftest import run_cli

    secret = secrets.token_hex(6)
    uri = f"postgresql://alice:{secret}@127.0.0.1:1/db"
    overrides = [f"tracking.uri={uri}", f"tracking.optuna_storage='postgresql://bob@127.0.0.1:1/o?password={secret}x'"]
    if not flags:
        overrides.append(f"tracking.urii={uri}")
    result = run_cli(*overrides, *flags, cwd=tmp_path, timeout=60)
    shown = result.stdout + result.stderr
    assert (result.returncode == 0) == bool(flags), shown
    assert secret not in shown and "alice:***@" in shown
    assert list(tmp_path.iterdir()) == []


def test_two_processes_writing_one_sqlite_study_file_wait_their_turn_instead_of_deadlocking(tmp_path):
    """Optuna reads, then writes, in one transaction; begun deferred, a second writer on the same file deadlocked
    with it and one of them got "database is locked" at once (CI: two SLURM jobs on one optuna.db, exit 75).
    Two storages (as two processes would hold) on one file: one holds a read open while the other writes, then
    writes itself; both writes land."""
    import threading

    import optuna
    from sqlalchemy import text

    from searcher.optuna_storage import open_storage

    spec = f"sqlite:///{tmp_path / 'optuna.db'}"
    first, second = open_storage.__wrapped__(spec), open_storage.__wrapped__(spec)  # (uncached: two engines, as two processes)
    for name in ("a", "b"):
        first.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
    failures: list[BaseException] = []

    def write_beside() -> None:
        try:
            second.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "beside")
        except BaseException as error:  # noqa: BLE001 (reported below)
            failures.append(error)

    with first.engine.connect() as connection:
        transaction = connection.begin()
        rows = connection.execute(text("SELECT study_name FROM studies"))
        rows.fetchone()  # a read in progress
        other = threading.Thread(target=write_beside)
        other.start()
        other.join(timeout=1.0)  # the other writer waits on this transaction (before: it took the write lock and waited to commit)
        connection.execute(text("UPDATE studies SET study_name = 'renamed' WHERE study_name = 'a'"))  # (before: "locked" at once)
        rows.close()
        transaction.commit()
    other.join()
    assert failures == []
    assert sorted(s.study_name for s in second.get_all_studies()) == ["b", "beside", "renamed"]
