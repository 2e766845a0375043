"""The transformer encoder (`model=transformer`): sequences of tokens, fed one-hot (N, length, vocabulary).

Width is a layer's model dimension; depth is the number of encoder layers (pre-norm self-attention and a
feed-forward block of twice the width). Tokens are embedded by a linear map of their one-hot rows plus a
learned position embedding; the output is the mean over positions, then dropout and a linear head. Where the
depth stage adds a layer of another width, a linear projection joins the two. It does not grow weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from searcher.model.family import Family, InputShape, LayerStack, SeededDropout


class Encoder(nn.Module):
    def __init__(self, length: int, vocabulary: int, widths: tuple[int, ...], heads: int, dropout: float, outputs: int):
        super().__init__()
        self.embed = nn.Linear(vocabulary, widths[0], bias=False)
        self.position = nn.Parameter(torch.randn(1, length, widths[0]) * 0.02)
        layers: list[nn.Module] = []
        previous = widths[0]
        for width in widths:
            if width != previous:
                layers.append(nn.Linear(previous, width))
            layers.append(
                nn.TransformerEncoderLayer(width, heads if width % heads == 0 else 1, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
            )
            previous = width
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(previous)
        self.dropout = SeededDropout(dropout)
        self.head = nn.Linear(previous, outputs)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.layers(self.embed(tokens) + self.position)
        return self.head(self.dropout(self.norm(hidden).mean(dim=1)))


@dataclass(frozen=True)
class Transformer(Family):
    """Embedding -> [self-attention -> feed-forward] x depth -> mean over positions -> dropout -> linear."""

    name: ClassVar[str] = "transformer"
    width_unit: ClassVar[str] = "model dimension"

    heads: int = 4  # attention heads of a layer whose width they divide (else one)

    def __post_init__(self) -> None:
        if self.heads < 1:
            raise ValueError(f"heads={self.heads}: an integer >= 1")

    def build(self, spec: LayerStack, input_shape: InputShape, outputs: int) -> nn.Module:
        if len(input_shape) != 2:
            raise ValueError(f"the transformer family takes one-hot token sequences (length, vocabulary); the data's inputs are {input_shape}")
        length, vocabulary = input_shape
        return Encoder(length, vocabulary, spec.widths, self.heads, spec.dropout, outputs)

    def baseline(self, depth: int, width: int, input_shape: InputShape) -> LayerStack:
        if len(input_shape) != 2:
            raise ValueError(f"the transformer family takes one-hot token sequences (length, vocabulary); the data's inputs are {input_shape}")
        return LayerStack((width,) * depth)
