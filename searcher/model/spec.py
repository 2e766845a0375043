"""The architecture spec: an immutable, serialisable description of a CNN.

A spec is a value. Stages grow a network by making new specs (`with_width`,
`with_layer`), never by mutating one, so a spec can key a trial and be
compared, hashed and stored as JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Literal

BlockType = Literal["plain", "residual"]
KernelPolicy = Literal["large_to_small", "uniform"]


@dataclass(frozen=True)
class LayerSpec:
    """One convolutional block."""

    width: int  # output channels
    kernel: int  # square kernel size, odd
    halves: bool  # 2x2 max-pool after the block halves the resolution


@dataclass(frozen=True)
class ArchSpec:
    """A stack of blocks, then global average pooling, dropout and a linear head."""

    layers: tuple[LayerSpec, ...]
    block: BlockType = "plain"
    dropout: float = 0.0  # before the classifier head

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(layer.width for layer in self.layers)

    @property
    def kernels(self) -> tuple[int, ...]:
        return tuple(layer.kernel for layer in self.layers)

    def to_dict(self) -> dict:
        return {"layers": [asdict(layer) for layer in self.layers], "block": self.block, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict) -> ArchSpec:
        layers = tuple(LayerSpec(**layer) for layer in data["layers"])
        return cls(layers=layers, block=data["block"], dropout=float(data["dropout"]))

    def key(self) -> str:
        """Stable across processes and Python versions (sorted JSON, not `hash()`)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """Short human label, e.g. `w32-32-64 d3`."""
        return f"w{'-'.join(str(w) for w in self.widths)} d{self.depth}"

    def with_width(self, width: int) -> ArchSpec:
        """Every layer at the same width: the width stage's candidate."""
        return replace(self, layers=tuple(replace(layer, width=width) for layer in self.layers))

    def with_dropout(self, dropout: float) -> ArchSpec:
        return replace(self, dropout=dropout)


@dataclass(frozen=True)
class LayoutPolicy:
    """Where kernels shrink and where resolution halves, decided from the input size.

    `large_to_small` gives the first `large_layers` blocks a `large_kernel`
    (low-level features: single pixels carry little), 3x3 above; `uniform` is 3x3
    everywhere. A block halves the resolution after it while the result stays at
    least `min_resolution`, so 8x8 digits halve once and 32x32 CIFAR three times.
    """

    input_size: int
    kernel_policy: KernelPolicy = "large_to_small"
    large_kernel: int = 5
    large_layers: int = 1
    min_resolution: int = 4

    def kernel_for(self, index: int) -> int:
        if self.kernel_policy == "large_to_small" and index < self.large_layers:
            return self.large_kernel
        return 3

    def resolution_after(self, layers: tuple[LayerSpec, ...]) -> int:
        size = self.input_size
        for layer in layers:
            if layer.halves:
                size //= 2
        return size

    def next_layer(self, layers: tuple[LayerSpec, ...], width: int) -> LayerSpec:
        """The block a network of `layers` grows by when it gets one more layer."""
        halves = self.resolution_after(layers) // 2 >= self.min_resolution
        return LayerSpec(width=width, kernel=self.kernel_for(len(layers)), halves=halves)

    def baseline(self, depth: int, width: int, block: BlockType = "plain") -> ArchSpec:
        layers: tuple[LayerSpec, ...] = ()
        for _ in range(depth):
            layers += (self.next_layer(layers, width),)
        return ArchSpec(layers=layers, block=block)

    def deepen(self, spec: ArchSpec, width: int) -> ArchSpec:
        """`spec` with one more block on top (nearest the head)."""
        return replace(spec, layers=spec.layers + (self.next_layer(spec.layers, width),))
