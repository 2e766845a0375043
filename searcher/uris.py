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


def with_driver(uri: str) -> str:
    """`postgresql://` with the installed driver named: SQLAlchemy 2.1 defaults to psycopg 3, searcher ships psycopg2."""
    if uri.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
    return uri
