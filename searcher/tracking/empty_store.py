"""A new SQLite tracking store starts as a copy of an empty one, made once per MLflow version.

MLflow builds a new store's schema by running every one of its migrations (about 2 s of CPU on
a 2-core machine: a new search waited that long for its first trial, and the test suite, which
opens a new store in most tests, spent minutes on it). The empty store is made once, the way
MLflow makes it, in the user's cache folder, and copied. Its default experiment is removed from
the copy's template: MLflow creates it when it opens the copy, with the artifact folder it would
have given it (which depends on the working folder). Anything that fails here leaves MLflow to
make the store itself, as before.

Called under `locks.creating(uri)`: one searcher process at a time makes a store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from searcher.tracking.locks import sqlite_file

TEMPLATE_FORMAT = 1  # bump when what the template holds changes


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "searcher"


def template(folder: Path) -> Path:
    """The empty store for the installed MLflow, made now if it is not there yet."""
    import mlflow
    from mlflow.tracking import MlflowClient

    path = folder / f"empty-mlflow-{mlflow.__version__}-{TEMPLATE_FORMAT}.db"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        made = Path(scratch) / "store.db"
        MlflowClient(tracking_uri=f"sqlite:///{made}").search_experiments()  # MLflow's migrations, its default experiment
        with sqlite3.connect(made) as connection:
            connection.execute("DELETE FROM experiments WHERE experiment_id = 0")  # remade where the copy is opened
        connection.close()
        link_new(made, path)
    return path


def link_new(source: Path, path: Path) -> None:
    """`source` becomes `path` too, unless `path` exists: then it is left as it is (never replaced under a reader)."""
    try:
        os.link(source, path)
    except FileExistsError:
        pass


def copy_empty_store(uri: str) -> None:
    """Make the SQLite database of `uri`, if it does not exist, as a copy of the empty store."""
    path = sqlite_file(uri)
    if path is None or path.exists() or not path.parent.is_dir():
        return
    try:
        empty = template(cache_folder())
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            copied = Path(scratch) / path.name
            shutil.copyfile(empty, copied)
            link_new(copied, path)  # (a process outside searcher may have made it meanwhile: then that one stays)
    except (OSError, sqlite3.Error):
        return  # no cache folder, a read-only one, a file system without hard links: MLflow makes the store
