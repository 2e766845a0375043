"""A new SQLite tracking store is a copy of an empty one made once per MLflow version: the same store MLflow makes."""

import sqlite3
from pathlib import Path

from searcher.tracking.empty_store import cache_folder, copy_empty_store
from searcher.tracking.store import open_recorder


def tables(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        names = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}


def test_a_new_store_is_the_store_mlflow_makes_with_its_default_experiment_where_mlflow_would_put_it(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    made_by_mlflow = tmp_path / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{made_by_mlflow}").create_experiment("searcher")

    first = open_recorder(f"sqlite:///{tmp_path / 'first.db'}", "searcher")  # makes the empty store, then copies it
    assert list(cache_folder().glob("empty-mlflow-*.db"))
    monkeypatch.chdir(tmp_path / "elsewhere")  # MLflow puts the default experiment's artifacts under the working folder
    copied = tmp_path / "second.db"
    second = open_recorder(f"sqlite:///{copied}", "searcher")
    assert tables(copied) == tables(made_by_mlflow)  # every table, and as many rows in each (alembic's version too)
    with sqlite3.connect(copied) as connection, sqlite3.connect(made_by_mlflow) as reference:
        version = "SELECT version_num FROM alembic_version"
        assert connection.execute(version).fetchall() == reference.execute(version).fetchall()
    default = second.client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "elsewhere" / "mlruns" / "0")
    assert first.experiment_id == second.experiment_id == "1"
    run = second.client.create_run(second.experiment_id)
    second.client.log_metric(run.info.run_id, "val_acc", 0.5)
    assert second.client.get_run(run.info.run_id).data.metrics == {"val_acc": 0.5}


def test_an_existing_store_is_never_replaced_and_an_unwritable_cache_leaves_mlflow_to_make_the_store(tmp_path, monkeypatch):
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"not touched")
    copy_empty_store(f"sqlite:///{existing}")
    assert existing.read_bytes() == b"not touched"

    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder would be")  # mkdir fails: no template
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    recorder = open_recorder(f"sqlite:///{tmp_path / 'made.db'}", "searcher")
    assert recorder.client.get_experiment_by_name("searcher") is not None and (tmp_path / "made.db").exists()
