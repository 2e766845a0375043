"""searcher: the "start small and go deep" architecture search, staged, tracked in MLflow."""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from searcher.api import Searched, SearchError, search

if TYPE_CHECKING:
    from searcher.model.classifier import Classifier

__version__ = "0.1.0"
__all__ = ["Family", "LayerStack", "SearchError", "Searched", "SeededDropout", "build_network", "load_model", "search"]
FAMILY_API = ("Family", "LayerStack", "SeededDropout", "InputShape", "Spec", "build_network")  # searcher/model/family.py, imported when first used


def __getattr__(name: str) -> Any:
    """`searcher.Family` and its companions, imported on first use: `import searcher` stays free of torch."""
    if name in FAMILY_API:
        from searcher.model import family

        return getattr(family, name)
    raise AttributeError(f"module 'searcher' has no attribute {name!r}")


def load_model(model_uri: str, tracking_uri: str | None = None) -> Classifier:
    """A searched model (e.g. "models:/searcher-digits/1") as an nn.Module in eval mode, on the CPU: it takes uint8
    images (N, C, H, W) on the 0-255 scale, as searcher's datasets store them (a table's model: float32 feature rows
    (N, F), `model.feature_names`), and returns logits.

    Rebuilt from its architecture and a weights-only state dict (no pickle). `tracking_uri`: the store the search
    used (default: MLflow's current one)."""
    from searcher.tracking.model import load_model as load

    return load(model_uri, tracking_uri)


class _Package(types.ModuleType):
    """`searcher.search` is the function above, also once the subpackage of the same name (the search layer,
    searcher/search/) is imported: Python binds a subpackage to its parent's attribute on first import, which made
    the function a module after the first search. The subpackage is still what `from searcher.search import ...`
    and `import searcher.search.stages` reach (they go through sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "search" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
