"""The convolutional family (`model=cnn`, the default): plain or residual conv blocks for images.

Width is a block's output channels; depth is the number of blocks. Where kernels
shrink and where the resolution halves is this family's layout advice (large
kernels near the input, small ones higher up; halve while the result stays at
least `min_resolution` pixels), decided from the image size by `LayoutPolicy`.
Growth is Net2Net (model/growth.py), so `search.warm_start=true` works here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from searcher.model.build import Network
from searcher.model.family import Family, InputShape
from searcher.model.spec import ArchSpec, BlockType, KernelPolicy, LayoutPolicy


@dataclass(frozen=True)
class CNN(Family):
    """Conv blocks -> global average pool -> dropout -> linear; inputs (channels, height, width)."""

    name: ClassVar[str] = "cnn"
    width_unit: ClassVar[str] = "channels"
    grows: ClassVar[bool] = True
    augments: ClassVar[bool] = True

    block: BlockType = "plain"  # plain | residual
    kernel_policy: KernelPolicy = "large_to_small"  # large_to_small | uniform
    large_kernel: int = 5  # kernel of the first large_layers blocks (large_to_small)
    large_layers: int = 1
    min_resolution: int = 4  # blocks halve the resolution while it stays at least this

    def __post_init__(self) -> None:
        if self.block not in ("plain", "residual"):
            raise ValueError(f"block={self.block!r}: plain or residual")
        if self.kernel_policy not in ("large_to_small", "uniform"):
            raise ValueError(f"kernel_policy={self.kernel_policy!r}: large_to_small or uniform")
        if self.large_kernel < 1 or self.large_kernel % 2 == 0:
            raise ValueError(f"large_kernel={self.large_kernel}: an odd integer >= 1")
        if self.large_layers < 0 or self.min_resolution < 1:
            raise ValueError("large_layers >= 0 and min_resolution >= 1")

    def layout(self, input_shape: InputShape) -> LayoutPolicy:
        """Kernels and halving for images of `input_shape` (channels, height, width)."""
        if len(input_shape) != 3:
            raise ValueError(f"the cnn family takes images (channels, height, width); the data's inputs are {input_shape}: use model=mlp for a table")
        return LayoutPolicy(input_shape[-1], self.kernel_policy, self.large_kernel, self.large_layers, self.min_resolution)

    def baseline(self, depth: int, width: int, input_shape: InputShape) -> ArchSpec:
        return self.layout(input_shape).baseline(depth, width, self.block)

    def widen(self, spec: ArchSpec, width: int) -> ArchSpec:
        return spec.with_width(width)

    def deepen(self, spec: ArchSpec, width: int, input_shape: InputShape) -> ArchSpec:
        return self.layout(input_shape).deepen(spec, width)

    def build(self, spec: ArchSpec, input_shape: InputShape, outputs: int) -> nn.Module:
        return Network(spec, input_shape[0], outputs)

    def grow(
        self, parent: ArchSpec, state: dict[str, torch.Tensor], child: ArchSpec, input_shape: InputShape, outputs: int,
        generator: torch.Generator, inputs: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
        from searcher.model.growth import grow_with_report

        grown, report = grow_with_report(parent, state, child, input_shape[0], outputs, generator=generator, inputs=inputs)
        return grown, tuple(report.notes)

    def spec_from_dict(self, data: dict) -> ArchSpec:
        return ArchSpec.from_dict(data)

    def key_part(self) -> None:
        """None: an ArchSpec holds every setting of this family (block, kernels, halving), so trial keys stay as they were."""
        return None
