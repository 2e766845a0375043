"""Transient tracking-store failures are retried with backoff; persistent ones stop the search cleanly.

A search runs for hours against a tracking server that may restart or a SQLite
file another process holds locked. Every MlflowClient call the recorder makes
goes through `RetryingClient`: a failure that looks transient (connection
refused or reset, timeouts, "database is locked", HTTP 5xx/429) is retried with
exponential backoff; when it persists, TrackingLost tells the user that finished
trials are safe and that re-running resumes.
"""

from __future__ import annotations

import functools
import time
from typing import Any


class TrackingLost(Exception):
    """The tracking store stayed unreachable through every retry."""


TRANSIENT_MARKERS = (
    "database is locked",
    "connection refused",
    "connection reset",
    "connection aborted",
    "timed out",
    "timeout",
    "temporarily unavailable",
    "max retries exceeded",
    "503",
    "502",
    "504",
    "429",
    "server closed the connection",
    "could not connect",
)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(error).__name__}: {error}".lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)


class RetryingClient:
    """Wraps an MlflowClient: same methods, each retried on transient failures."""

    def __init__(self, client: Any, uri: str, attempts: int = 5, first_delay_seconds: float = 0.5):
        self._client = client
        self._uri = uri
        self._attempts = attempts
        self._first_delay = first_delay_seconds

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            delay = self._first_delay
            for attempt in range(1, self._attempts + 1):
                try:
                    return attribute(*args, **kwargs)
                except Exception as error:
                    if not is_transient(error):
                        raise
                    if attempt == self._attempts:
                        from searcher.uris import redact, redact_text

                        raise TrackingLost(
                            f"the tracking store {redact(self._uri)} failed {self._attempts} times in a row ({name}: "
                            f"{redact_text(f'{type(error).__name__}: {str(error)[:300]}', self._uri)}); the search stopped. Finished trials are "
                            "recorded: bring the store back and re-run the same command to resume."
                        ) from None
                    time.sleep(delay)
                    delay *= 2

        return call
