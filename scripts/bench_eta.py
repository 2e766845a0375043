"""How far the live view's estimates of the time left were from the real end of a search, read from its cli.log.

The live view writes each estimate to cli.log after every finished trial (searcher.report.terminal); the search's
trials end with the last estimate, the command with its "done" line. Prints a Markdown table (docs/BENCHMARKS.md §6)
and, with --out, writes the rows as JSON.

    python scripts/bench_eta.py outputs/DATE/TIME-PID/cli.log [--out eta.json]
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

from searcher.report.eta import span

ESTIMATE = re.compile(
    r"^\[([\d\- :,]+)\]\[searcher\.report\.terminal\]\[INFO\] - after (\d+) trials \((.*), stage (\d)\): ([\d.]+)-([\d.]+) s left",
    re.MULTILINE,
)
DONE = re.compile(r"^\[([\d\- :,]+)\]\[searcher\.cli\]\[INFO\] - search .* done", re.MULTILINE)


def moment(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def rows(log: str) -> tuple[list[dict], float]:
    """Each estimate with the real time left to the last trial's end and to the command's end; (rows, tail seconds)."""
    found = [
        (moment(at), int(n), name, int(stage), float(low), float(high)) for at, n, name, stage, low, high in ESTIMATE.findall(log)
    ]
    if not found:
        raise SystemExit("no estimates in this log: a search run with searcher.report.terminal logging to cli.log writes them")
    last, done = found[-1][0], moment(DONE.findall(log)[-1])
    table = [
        {
            "trials": n,
            "trial": name,
            "stage": stage,
            "shown": span(low, high),
            "low": low,
            "high": high,
            "real": last - at,
            "real_to_command_end": done - at,
        }
        for at, n, name, stage, low, high in found
    ]
    return table, done - last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="the search's cli.log")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    options = parser.parse_args()
    table, tail = rows(options.log.read_text())
    print("| after trial | stage | shown | low | high | real, to the last trial | real, to the command's end |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        print(
            f"| {row['trials']} ({row['trial']}) | {row['stage']} | {row['shown']} | {row['low']:.0f} s | {row['high']:.0f} s | "
            f"{row['real']:.0f} s | {row['real_to_command_end']:.0f} s |"
        )
    held = sum(row["low"] <= row["real"] <= row["high"] for row in table)
    print(f"\n{held} of {len(table)} ranges held the real time left to the last trial; the command ended {tail:.1f} s after it")
    if options.out:
        options.out.write_text(json.dumps({"estimates": table, "held": held, "tail_seconds": tail}, indent=1) + "\n")


if __name__ == "__main__":
    main()
