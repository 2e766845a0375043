"""Writes a generated classification table where width and depth matter, for benchmarks (scripts/bench_search.py).

    python scripts/make_table.py OUT.csv [--rows 20000] [--classes 10] [--seed S]

The class of a row is the argmax of a random teacher network (three tanh layers of 32 units) over 8
informative numeric columns and one categorical column (5 values, each shifting the teacher's input), with 5%
of labels flipped; 8 more numeric columns are noise. A linear model cannot draw those boundaries; a small
MLP draws them roughly, a deeper and wider one closely, so the search has something to find. `--seed` fixes
the teacher and the rows: benchmarks are re-run on seeds the repo does not name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make_table(rows: int, classes: int, seed: int) -> object:
    import pandas as pd

    rng = np.random.default_rng(seed)
    informative = rng.normal(size=(rows, 8))
    category = rng.integers(0, 5, rows)
    shift = rng.normal(0, 1.0, size=(5, 8))
    hidden = informative + shift[category]
    for _ in range(3):  # the teacher: tanh layers, scaled to keep activations in tanh's curved range
        weights = rng.normal(0, 1.6 / np.sqrt(hidden.shape[1]), size=(hidden.shape[1], 32))
        hidden = np.tanh(hidden @ weights)
    logits = hidden @ rng.normal(0, 1.0, size=(32, classes))
    label = logits.argmax(1)
    flipped = rng.random(rows) < 0.05
    label[flipped] = rng.integers(0, classes, int(flipped.sum()))
    frame = pd.DataFrame(informative, columns=[f"x{i}" for i in range(8)])
    frame["group"] = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])[category]
    for index in range(8):
        frame[f"noise{index}"] = rng.normal(size=rows)
    frame["label"] = label
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = make_table(args.rows, args.classes, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)  # type: ignore[attr-defined]
    counts = np.bincount(frame["label"].to_numpy(), minlength=args.classes)  # type: ignore[index]
    print(f"{args.out}: {args.rows} rows, classes {counts.min()}..{counts.max()} rows each")


if __name__ == "__main__":
    main()
