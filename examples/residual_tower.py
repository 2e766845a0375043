"""A model family of your own: a residual MLP with its own stem and its own growth rule, searched on a table.

    python examples/residual_tower.py                 # writes examples_out/rings.csv, searches it from Python
    python -m searcher +dataset=table dataset.path=examples_out/rings.csv dataset.target=ring \\
        model=custom model._target_=residual_tower.ResidualTower +model.stem=32 search=quick    # the same from the command line
        (run from examples/, or with examples/ on PYTHONPATH, so that `residual_tower` imports)

What searcher asks of a family (searcher/model/family.py): `build(spec, input_shape, outputs)`, the network of a
spec. Here a spec is a `searcher.LayerStack` (one width per layer): each layer is a residual block whose hidden
width the search chooses, on a fixed-width stream (`stem`). The width stage tries wider blocks, the depth stage
adds blocks one at a time. `grow` makes a trained parent into a child that computes the same function: the
parent's weights are copied into the child, and everything the child has that the parent has not (new hidden
units, new blocks) gets zero outgoing weights, so it adds nothing until it learns (searcher.warm_start=true).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

import searcher


class Block(nn.Module):
    """x + W_out relu(W_in norm(x)): a residual block whose hidden width is the spec's width."""

    def __init__(self, stream: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(stream)
        self.inner = nn.Linear(stream, hidden)
        self.outer = nn.Linear(hidden, stream)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.outer(torch.relu(self.inner(self.norm(x))))


class Tower(nn.Module):
    def __init__(self, features: int, stream: int, widths: tuple[int, ...], dropout: float, outputs: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(features, stream), nn.GELU())
        self.blocks = nn.Sequential(*(Block(stream, width) for width in widths))
        self.head = nn.Sequential(nn.LayerNorm(stream), searcher.SeededDropout(dropout), nn.Linear(stream, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x.flatten(1))))


@dataclass(frozen=True)
class ResidualTower(searcher.Family):
    """Residual blocks on a `stem`-wide stream; width = a block's hidden units, depth = the number of blocks."""

    name: ClassVar[str] = "residual_tower"
    width_unit: ClassVar[str] = "hidden units"
    grows: ClassVar[bool] = True

    stem: int = 64  # the stream's width (a setting: +model.stem=32)

    def build(self, spec: searcher.LayerStack, input_shape: tuple[int, ...], outputs: int) -> nn.Module:
        features = 1
        for size in input_shape:
            features *= size
        return Tower(features, self.stem, spec.widths, spec.dropout, outputs)

    def grow(self, parent, state, child, input_shape, outputs, generator, inputs):
        """The parent embedded in the child: shared weights copied, new hidden units and new blocks silent (zero out)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # the child's fresh weights, reproducibly
        grown = searcher.build_network(self, child, input_shape, outputs, seed=seed).state_dict()
        for name, tensor in grown.items():
            if name.endswith("outer.weight") or name.endswith("outer.bias"):
                tensor.zero_()  # a new unit or block adds nothing until it learns
            if name in state:
                old = state[name]
                tensor[tuple(slice(0, size) for size in old.shape)] = old  # the parent's weights where the child has them
        return grown, ()


def write_rings(path: Path, rows: int = 4000, seed: int = 0) -> Path:
    """A table where depth and width matter: which of four rings a noisy 2-D point is on, plus distractor columns."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ring = rng.integers(0, 4, rows)
    angle = rng.uniform(0, 2 * np.pi, rows)
    radius = 1 + ring + rng.normal(0, 0.25, rows)
    frame = pd.DataFrame({"x": radius * np.cos(angle), "y": radius * np.sin(angle)})
    for index in range(4):
        frame[f"noise{index}"] = rng.normal(size=rows)
    frame["ring"] = np.array(["inner", "second", "third", "outer"])[ring]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


if __name__ == "__main__":
    table = write_rings(Path("examples_out") / "rings.csv")
    import pandas as pd

    found = searcher.search(
        "search=quick", "tracking.uri=sqlite:///examples_out/mlflow.db",
        family=ResidualTower(stem=32), data=pd.read_csv(table), target="ring",
    )
    print(f"test accuracy {found.test_acc:.4f}; model {found.model_uri}; {found.model}")
