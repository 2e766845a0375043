"""A model family: what the staged search grows, behind one small interface.

The stages never build a network or look inside a spec. They ask a family for
the baseline, for a spec at another width (the width stage), for a spec one
layer deeper with the new layer at a width (the depth stage), and, at training
time, for the `nn.Module` of a spec and an input shape. Whatever the family,
the search decides the same way (docs/design.md §7).

A spec is a frozen, JSON-serialisable value with a stable key: the CNN's
`ArchSpec` (model/spec.py), or `LayerStack` (one width per hidden layer and a
dropout rate), which most families need and which `Family` grows by default,
so a family of your own usually writes only `build`:

    class Tower(searcher.Family):
        def build(self, spec, input_shape, outputs):
            ...  # an nn.Module taking (N, *input_shape) inputs to (N, outputs) logits

Settings of a family are its constructor's keyword arguments (a dataclass's
fields): `model=custom model._target_=my_package.Tower +model.activation=gelu` on
the command line. They are part of every trial key, so two settings never share a trial.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import threading
import types
import typing
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

InputShape = tuple[int, ...]  # one example's shape: (channels, height, width) for images, (features,) for a table


@runtime_checkable
class Spec(Protocol):
    """What the stages read of a spec: its depth and widths, its dropout, and a stable key."""

    @property
    def depth(self) -> int: ...

    @property
    def widths(self) -> tuple[int, ...]: ...

    @property
    def dropout(self) -> float: ...

    def to_dict(self) -> dict: ...

    def key(self) -> str: ...

    def describe(self) -> str: ...

    def with_dropout(self, dropout: float) -> Any: ...


@dataclass(frozen=True)
class LayerStack:
    """Hidden layers, one width each (input side first), then dropout before the output layer."""

    widths: tuple[int, ...]
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(width) for width in self.widths))  # (a list from JSON keys the same)

    @property
    def depth(self) -> int:
        return len(self.widths)

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict) -> LayerStack:
        return cls(tuple(data["widths"]), float(data["dropout"]))

    def key(self) -> str:
        return spec_key(self)

    def describe(self) -> str:
        return f"w{'-'.join(str(w) for w in self.widths)} d{self.depth}"

    def with_dropout(self, dropout: float) -> LayerStack:
        return replace(self, dropout=dropout)


def spec_key(spec: Spec) -> str:
    """Stable across processes and Python versions (sorted JSON, not `hash()`)."""
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class Family:
    """The interface the search grows networks through. Subclass it and write `build`; the rest has defaults.

    `baseline`, `widen` and `deepen` make `LayerStack` specs; a family with its own spec type overrides them and
    `spec_from_dict`. `grow` (a trained parent's weights made into a child's that compute the same function) is
    optional: a family without it trains every candidate from scratch (`search.warm_start` is then ignored).
    """

    name: ClassVar[str] = ""  # what the search's header calls it (`label`: the class's name where empty)
    grows: ClassVar[bool] = False  # True where `grow` is written
    augments: ClassVar[bool] = False  # the data's augmentation (flips, crops) applies to this family's inputs
    width_unit: ClassVar[str] = "width"  # what a layer's width counts, for figures: "channels", "units", ...
    # Raise it when `build` changes the network a spec makes: trial keys change with it, so a resumed search does not
    # reuse trials recorded for the old network.
    revision: ClassVar[int] = 0

    @property
    def label(self) -> str:
        """What headers and messages call the family: its `name`, or its class's where a family of yours sets none."""
        return self.name or type(self).__name__

    def baseline(self, depth: int, width: int, input_shape: InputShape) -> Spec:
        return LayerStack((width,) * depth)

    def widen(self, spec: Any, width: int) -> Spec:
        """`spec` with every layer at `width`: the width stage's candidate."""
        return replace(spec, widths=(width,) * spec.depth)

    def deepen(self, spec: Any, width: int, input_shape: InputShape) -> Spec:
        """`spec` with one more layer, of `width`, on top (nearest the output)."""
        return replace(spec, widths=(*spec.widths, width))

    def build(self, spec: Any, input_shape: InputShape, outputs: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__}.build: a family builds the nn.Module of a spec")

    def grow(
        self, parent: Any, state: dict[str, torch.Tensor], child: Any, input_shape: InputShape, outputs: int,
        generator: torch.Generator, inputs: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
        """The child's initial weights grown from the parent's `state`, and notes where the function is not kept exactly.
        `inputs`: a fixed sample of normalised training inputs (to calibrate normalisation layers)."""
        raise NotImplementedError(f"{type(self).__name__} cannot grow a network's weights")

    def spec_from_dict(self, data: dict) -> Spec:
        return LayerStack.from_dict(data)

    def settings(self) -> dict[str, Any]:
        """The family's settings (a dataclass's fields; override otherwise): recorded, and part of every trial key."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def identity(self) -> dict[str, Any]:
        """What rebuilds the family elsewhere (`family_from`): its class's import path and its settings."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **self.settings()}

    def key_part(self) -> dict[str, Any] | None:
        """What trial keys hash of the family besides the spec (None: the spec says everything, as the CNN's does)."""
        return self.identity() | ({"revision": self.revision} if self.revision else {})


class FamilyError(Exception):
    """A `model` setting names no usable family; the message says which setting and what to do."""


def family_from(settings: dict[str, Any]) -> Family:
    """The family `settings` describe: `_target_` (a class's import path) called with the other keys."""
    settings = dict(settings)
    found = family_class(settings.pop("_target_", None))
    if dataclasses.is_dataclass(found):
        known = {f.name for f in dataclasses.fields(found)}
        for key in settings:
            if key not in known:
                raise FamilyError(f"model.{key} is not a setting of {found.__name__} (it has: {', '.join(sorted(known)) or 'none'}); check the spelling.")
        try:
            hints = typing.get_type_hints(found)
        except Exception:  # (annotations this module cannot resolve: nothing to check against)
            hints = {}
        for key, value in settings.items():
            if key in hints and not fits(value, hints[key]):
                raise FamilyError(
                    f"model.{key}={value!r} is not {type_name(hints[key])} ({found.__name__}.{key}); set it to one."
                )
    try:
        return found(**settings)
    except (TypeError, ValueError) as error:
        raise FamilyError(f"model: {found.__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())}) was refused: {error}") from None


def fits(value: Any, hint: Any) -> bool:
    """Is `value` (from YAML or the command line) of the type a family's field declares? A check before anything
    trains, so `+model.kernel=abc` is one sentence, not a TypeError in the baseline; types it cannot read pass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin in (tuple, list) or hint in (tuple, list):
        return isinstance(value, (tuple, list))
    return True


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(hint))
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def family_class(target: Any) -> type[Family]:
    """The Family subclass at import path `target` (e.g. my_package.MyFamily)."""
    if not isinstance(target, str) or "." not in target:
        raise FamilyError(f"model._target_={target!r} is not a class path; set it to one, e.g. searcher.model.mlp.MLP or my_package.MyFamily.")
    module_name, _, class_name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise FamilyError(
            f"model._target_={target} cannot be imported ({type(error).__name__}: {error}); check the spelling and that "
            "its module is importable from here (installed, or its folder on PYTHONPATH)."
        ) from None
    if not (isinstance(found, type) and issubclass(found, Family)):
        raise FamilyError(f"model._target_={target} is not a searcher.Family subclass; subclass searcher.Family and write build().")
    return found


_INITIALISING = threading.Lock()  # torch's layers draw their initial weights from the process's one generator


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The process's random generator, seeded and this thread's alone until the block ends (then as it was).
    Everything that initialises layers in a process where trials train in threads does it in here."""
    with _INITIALISING, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def initialising(seed: int | None) -> AbstractContextManager[Any]:
    """Where a network's layers draw their initial weights: `seeded(seed)`, or (None) wherever the process's generator
    stands, but not while another thread draws a seeded network's weights."""
    return _INITIALISING if seed is None else seeded(seed)


def build_network(family: Family, spec: Any, input_shape: InputShape, outputs: int, seed: int | None = None) -> nn.Module:
    """The family's network for `spec`, its initial weights drawn from `seed` (None: wherever the process's generator stands)."""
    with initialising(seed):
        return family.build(spec, input_shape, outputs)


class SeededDropout(nn.Module):
    """Dropout whose masks come from `generator` (the trial's), not from the process's shared generator: trials
    training side by side in threads then draw what each would draw alone. Use it in a family of your own where
    `nn.Dropout` would go; the trainer gives every SeededDropout in a network the trial's generator."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None  # None: the process's (a loaded model in eval mode draws nothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, device=x.device, generator=self.generator) >= self.p
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
