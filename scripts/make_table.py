"""Writes a generated table where width and depth matter, for benchmarks (scripts/bench_search.py).

    python scripts/make_table.py OUT.csv [--rows 20000] [--classes 10] [--seed S]
    python scripts/make_table.py OUT.csv --regression [--rows 20000] [--seed S]

The class of a row is the argmax of a random teacher network (three tanh layers of 32 units) over 8
informative numeric columns and one categorical column (5 values, each shifting the teacher's input), with 5%
of labels flipped; 8 more numeric columns are noise. A linear model cannot draw those boundaries; a small
MLP draws them roughly, a deeper and wider one closely, so the search has something to find. `--seed` fixes
the teacher and the rows: benchmarks are re-run on seeds the repo does not name. `--regression`: the
target `value` is the teacher's first output (a smooth function of the same columns, in units of its own spread)
plus Gaussian noise of 0.1 of that spread: the best possible RMSE is about 0.1 of the target's standard deviation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make_table(rows: int, classes: int, seed: int, regression: bool = False) -> object:
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
    if regression:
        value = logits[:, 0] / logits[:, 0].std()
        value = value + rng.normal(0, 0.1, rows)
    else:
        label = logits.argmax(1)
        flipped = rng.random(rows) < 0.05
        label[flipped] = rng.integers(0, classes, int(flipped.sum()))
    frame = pd.DataFrame(informative, columns=[f"x{i}" for i in range(8)])
    frame["group"] = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])[category]
    for index in range(8):
        frame[f"noise{index}"] = rng.normal(size=rows)
    if regression:
        frame["value"] = value
    else:
        frame["label"] = label
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--regression", action="store_true", help="a continuous target `value` instead of a class `label`")
    args = parser.parse_args()
    frame = make_table(args.rows, args.classes, args.seed, args.regression)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)  # type: ignore[attr-defined]
    if args.regression:
        print(f"{args.out}: {args.rows} rows, target value (std 1, noise 0.1)")
        return
    counts = np.bincount(frame["label"].to_numpy(), minlength=args.classes)  # type: ignore[index]
    print(f"{args.out}: {args.rows} rows, classes {counts.min()}..{counts.max()} rows each")


if __name__ == "__main__":
    main()
