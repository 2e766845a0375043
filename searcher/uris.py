"""Store URIs (MLflow tracking, Optuna storage): passwords masked for display, the PostgreSQL driver made explicit.

Passwords are never printed or logged: `postgresql://user:secret@host/db` shows as
`postgresql://user:***@host/db`. Better still, keep them out of URIs: PostgreSQL's client
reads PGPASSWORD or ~/.pgpass when the URI has none (docs/cluster.md).
"""

from __future__ import annotations

import importlib.util
import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"


def password_of(uri: str) -> str | None:
    """The password in the URI's user part, or in its query (`?password=...`, as libpq also takes it)."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:  # a malformed port and the like: no password we can find
        return None
    if not password:
        password = next((value for key, value in parse_qsl(parts.query) if key == "password"), None)
    return unquote(password) if password else None


def redact(uri: str) -> str:
    """The URI with its password (if any) replaced by ***."""
    if not isinstance(uri, str) or "://" not in uri:
        return uri
    uri = re.sub(r"([?&]password=)[^&]*", rf"\g<1>{MASK}", uri)
    scheme, rest = uri.split("://", 1)
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return uri
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{MASK}@{host}{slash}{path}"


def redact_text(text: str, *uris: str | None) -> str:
    """`text` with the passwords of `uris` masked wherever they appear (error messages quote URIs)."""
    for uri in uris:
        if uri:
            text = text.replace(uri, redact(uri))
            raw = uri.split("://", 1)[-1].partition("/")[0].rpartition("@")[0].partition(":")[2]  # as written (%-encoded)
            for secret in {password_of(uri), raw} - {None, ""}:
                text = text.replace(secret, MASK)  # type: ignore[arg-type]
    return text


def redact_uris(text: str) -> str:
    """`text` with the password of every URI in it masked (`scheme://user:secret@host` → `scheme://user:***@host`)."""
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+", lambda found: redact(found.group()), text)


def with_driver(uri: str) -> str:
    """`postgresql://` with the installed driver named: SQLAlchemy 2.1 defaults to psycopg 3, searcher ships psycopg2."""
    if uri.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
    return uri


DATABASES = ("postgresql", "mysql", "mssql")


def unreachable_database(setting: str, uri: str, wait_seconds: float = 15.0) -> str | None:
    """The error for a database URI (`setting`'s) that accepts no connection within about `wait_seconds`, or None.

    A server that is restarting gets a few tries; a wrong host or a stopped server fails here,
    in seconds, instead of in MLflow's or Optuna's own retries (minutes of warnings, then a traceback).
    Other URIs (SQLite, a journal file, an HTTP server) are not probed here: None.
    """
    if uri.split(":", 1)[0].split("+")[0] not in DATABASES:
        return None
    import logging
    import time

    import sqlalchemy

    connect_args = {"connect_timeout": 5} if uri.startswith("postgresql") else {}
    engine = sqlalchemy.create_engine(with_driver(uri), connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    deadline, delay, error = time.monotonic() + wait_seconds, 1.0, ""
    try:
        while True:
            try:
                engine.connect().close()
                return None
            except Exception as failure:  # the driver's own error types: refused, unknown host, bad password...
                first_line = next(iter(str(failure).strip().splitlines()), "")
                error = redact_text(f"{type(failure).__name__}: {first_line}", uri)
            if time.monotonic() + delay > deadline:
                return f"{setting}={redact(uri)!r} is unreachable ({error}); start the database server or fix the URI."
            if delay == 1.0:
                logging.getLogger(__name__).warning("%s is not answering (%s); trying again for up to %.0f s", redact(uri), error, wait_seconds)
            time.sleep(delay)
            delay *= 2
    finally:
        engine.dispose()


def local_file(uri: str) -> str | None:
    """The file a SQLite URI or an Optuna journal URI names (`sqlite:///m.db`, `journal:///nfs/o.log`), else None."""
    for prefix in ("sqlite:///", "journal:///"):
        if uri.startswith(prefix):
            path = uri.removeprefix(prefix).split("?", 1)[0]
            return path if path and path != ":memory:" else None
    return None


def unwritable_store(setting: str, uri: str) -> str | None:
    """The error for a SQLite database or Optuna journal file (`setting`'s) that this process cannot write, or None.

    Checked before anything is created: SQLite writes a journal beside its database, so the folder must
    be writable as well as the file; without the check the first write fails after MLflow's ~100 s of
    retries, with a traceback. A folder that does not exist yet is judged by the nearest one that does.
    """
    import os
    from pathlib import Path

    path = local_file(uri)
    if path is None:
        return None
    file = Path(path).expanduser().absolute()
    folder = file.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if file.exists() and not os.access(file, os.W_OK):
        blocked = f"the file {file} is read-only for this user"
    elif not os.access(folder, os.W_OK | os.X_OK):
        blocked = f"the folder {folder} is read-only for this user"
    else:
        return None
    return f"{setting}={redact(uri)!r} cannot be written: {blocked}; make it writable or point {setting} at a writable folder."
