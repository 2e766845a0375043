"""Builds the nn.Module that an ArchSpec describes, for any input channels and classes.

Randomness is the trial's own, so that trials training side by side in one process
(execution=threads) draw what each would draw alone: initial weights come from a seed,
drawn under one lock from the process's generator (torch's layers initialise from it),
and dropout masks from a generator the trainer gives the network.
"""

from __future__ import annotations

import torch
from torch import nn

from searcher.model.family import SeededDropout, initialising
from searcher.model.spec import ArchSpec, LayerSpec


def conv_bn(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class PlainBlock(nn.Module):
    """conv -> BN -> ReLU [-> max-pool]."""

    def __init__(self, in_channels: int, layer: LayerSpec):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(in_channels, layer.width, layer.kernel), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2) if layer.halves else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


class ResidualBlock(nn.Module):
    """ReLU(BN(conv(ReLU(BN(conv x)))) + shortcut x) [-> max-pool]; 1x1 projection when widths differ."""

    def __init__(self, in_channels: int, layer: LayerSpec):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(in_channels, layer.width, layer.kernel),
            nn.ReLU(inplace=True),
            *conv_bn(layer.width, layer.width, layer.kernel),
        )
        self.shortcut = nn.Identity() if in_channels == layer.width else nn.Sequential(*conv_bn(in_channels, layer.width, 1))
        self.pool = nn.MaxPool2d(2) if layer.halves else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.body(x) + self.shortcut(x)))


class Network(nn.Module):
    """Blocks -> global average pool -> dropout -> linear."""

    def __init__(self, spec: ArchSpec, in_channels: int, num_classes: int):
        super().__init__()
        block_type = PlainBlock if spec.block == "plain" else ResidualBlock
        blocks = []
        channels = in_channels
        for layer in spec.layers:
            blocks.append(block_type(channels, layer))
            channels = layer.width
        self.blocks = nn.Sequential(*blocks)
        self.dropout = SeededDropout(spec.dropout)
        self.head = nn.Linear(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, width of the last block) pooled features."""
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def build_model(spec: ArchSpec, in_channels: int, num_classes: int, seed: int | None = None) -> Network:
    """The network, its initial weights drawn from `seed` (None: from wherever the process's generator stands)."""
    with initialising(seed):
        return Network(spec, in_channels, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
