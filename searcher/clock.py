"""The search's clock: seconds a search has run, over all its attempts, from the start of the command.

`search.budget` (searcher/search/budget.py) spends wall time by it: every trial outcome is stamped with it
when recorded, and a resumed search starts from its earlier attempts' last stamp. Plain stdlib, so the
command line can read when it started before it imports anything heavy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class SearchClock:
    """Seconds the search has run: its earlier attempts' (`before`, as their last recorded trial read it) and this
    process's since `started` (a time.monotonic() reading: the command's start, so start-up counts too)."""

    def __init__(self, started: float, before: float = 0.0):
        self.started = started
        self.before = before

    def __call__(self) -> float:
        return self.before + time.monotonic() - self.started


def process_started() -> float:
    """When this process started, on the time.monotonic() scale (Linux /proc; now, where that is unknown)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time after boot
        return time.monotonic() - max(0.0, age)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
