"""The multilayer perceptron (`model=mlp`): hidden layers for tables and feature vectors.

Width is a hidden layer's units; depth is the number of hidden layers. Each
hidden layer is linear -> normalisation -> activation; dropout sits before the
output layer, as in the CNN. Inputs of any shape are flattened, so an MLP also
runs on small images (a baseline to beat). It does not grow weights: every
candidate trains from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from searcher.model.family import Family, InputShape, LayerStack, SeededDropout

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
NORMS = ("layer", "batch", "none")


@dataclass(frozen=True)
class MLP(Family):
    """Flatten -> [linear -> norm -> activation] x depth -> dropout -> linear."""

    name: ClassVar[str] = "mlp"
    width_unit: ClassVar[str] = "units"
    revision: ClassVar[int] = 1  # 1: hidden layers have a bias under layer norm (before: none, blind to the input's scale)

    activation: str = "relu"  # relu | gelu | silu | tanh
    norm: str = "layer"  # layer | batch | none: after each hidden linear layer

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: one of {', '.join(ACTIVATIONS)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: one of {', '.join(NORMS)}")

    def build(self, spec: LayerStack, input_shape: InputShape, outputs: int) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        features = 1
        for size in input_shape:
            features *= size
        for width in spec.widths:
            norm = {"layer": nn.LayerNorm(width), "batch": nn.BatchNorm1d(width), "none": nn.Identity()}[self.norm]
            # A bias, except before batch norm (which subtracts each unit's mean over the batch): layer norm normalises
            # each example over its units, so without one the first layer could not tell x from 2x (iris: 76.7% test).
            layers += [nn.Linear(features, width, bias=self.norm != "batch"), norm, ACTIVATIONS[self.activation]()]
            features = width
        layers += [SeededDropout(spec.dropout), nn.Linear(features, outputs)]
        return nn.Sequential(*layers)
