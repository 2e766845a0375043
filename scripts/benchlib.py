"""What the benchmark scripts share: the hardware a figure came from (imports nothing of searcher)."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it (every reported figure names its hardware)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def slot_seconds(trials: list, capacity: int, window: tuple[float, float] | None) -> dict | None:
    """Capacity x the search's seconds, split: trial-seconds the search used, trial-seconds of discarded guesses, idle."""
    if window is None:
        return None
    total = capacity * (window[1] - window[0])
    seconds = {"useful": 0.0, "discarded": 0.0}
    for run in trials:
        if run.info.end_time:
            kind = "discarded" if run.data.tags.get("searcher.decision") == "discarded" else "useful"
            seconds[kind] += (run.info.end_time - run.info.start_time) / 1000
    idle = max(0.0, total - seconds["useful"] - seconds["discarded"])
    used_guesses = sum(1 for run in trials if run.data.tags.get("searcher.speculative") == "used")
    discarded_guesses = sum(1 for run in trials if run.data.tags.get("searcher.decision") == "discarded")
    return {
        "capacity": capacity, "slot_seconds": total, "useful_seconds": seconds["useful"], "discarded_seconds": seconds["discarded"],
        "idle_seconds": idle, "useful": seconds["useful"] / total if total else None, "discarded": seconds["discarded"] / total if total else None,
        "idle": idle / total if total else None, "guesses_used": used_guesses, "guesses_discarded": discarded_guesses,
    }


def stage_window(stages: list) -> tuple[float, float] | None:
    """The search's own span (seconds since the epoch): its first stage run's start to its last finished one's end."""
    finished = [run for run in stages if run.info.end_time]
    if not finished:
        return None
    return min(run.info.start_time for run in finished) / 1000, max(run.info.end_time for run in finished) / 1000


def search_slots(search: object, stages: list, trials: list) -> dict | None:
    """`slot_seconds` of a recorded search: its trial slots (the resolved `execution.workers`; one when serial) over its
    span. None where the slots are not recorded (`execution=threads` set without `execution.workers`: the default)."""
    params = search.data.params  # type: ignore[attr-defined]
    if params.get("execution.kind") not in ("processes", "threads", "submitit"):
        return slot_seconds(trials, 1, stage_window(stages))
    workers = params.get("execution.workers", "")
    return slot_seconds(trials, int(workers), stage_window(stages)) if workers.isdigit() else None
