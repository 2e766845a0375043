"""Store failures on the recorder's calls are retried for a bounded time; a store still failing stops the search.

A search runs for hours against a tracking server that may restart or a SQLite
file another process holds locked. Every MlflowClient call the recorder makes
goes through `RetryingClient`: a failure that says the store is unreachable or
unwritable (tracking/faults.py) is retried with exponential backoff for up to
`wait_seconds`, with one warning line; when it persists, TrackingLost stops the
search, which tells the user that finished trials are recorded and that re-running
the same command resumes (searcher/app.py, exit 75).
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from typing import Any

from searcher.tracking.faults import TrackingLost, store_fault

log = logging.getLogger(__name__)
MIN_ATTEMPTS = 3  # even when one attempt outlasts the wait (SQLite waits 20 s for a lock before it says "locked")


class RetryingClient:
    """Wraps an MlflowClient: same methods, each retried while the store fails, for up to `wait_seconds`."""

    def __init__(self, client: Any, uri: str, wait_seconds: float = 15.0, first_delay_seconds: float = 0.5):
        self._client = client
        self._uri = uri
        self._wait = wait_seconds
        self._first_delay = first_delay_seconds
        self._failing = False  # the last call ended failing (retries spent, or a signal while waiting): one try each now

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            from searcher.uris import redact, redact_text

            delay, started = self._first_delay, time.monotonic()
            for attempt in itertools.count(1):
                try:
                    result = attribute(*args, **kwargs)
                    self._failing = False
                    return result
                except Exception as error:
                    fault = store_fault(error)
                    if fault is None:
                        raise
                    fault = redact_text(fault, self._uri)
                    left = self._wait - (time.monotonic() - started)
                    if self._failing or (left <= 0 and attempt >= MIN_ATTEMPTS):
                        self._failing = True  # closing the runs on the way out must not wait all over again
                        raise TrackingLost(redact(self._uri), f"{name}: {fault}", time.monotonic() - started) from error
                    if attempt == 1:
                        log.warning("the tracking store %s is failing (%s: %s); trying again for up to %.0f s", redact(self._uri), name, fault, self._wait)
                    self._failing = True  # until an attempt succeeds (a signal may end the wait below)
                    time.sleep(max(0.0, min(delay, left)))
                    self._failing = False
                    delay *= 2
            raise AssertionError("unreachable")

        return call
