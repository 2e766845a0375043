"""searcher: the "start small and go deep" architecture search, staged, tracked in MLflow."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from searcher.model.classifier import Classifier

__version__ = "0.1.0"
__all__ = ["load_model"]


def load_model(model_uri: str, tracking_uri: str | None = None) -> Classifier:
    """A searched model (e.g. "models:/searcher-digits/1") as an nn.Module in eval mode, on the CPU: it takes uint8
    images (N, C, H, W) on the 0-255 scale, as searcher's datasets store them, and returns logits.

    Rebuilt from its architecture and a weights-only state dict (no pickle). `tracking_uri`: the store the search
    used (default: MLflow's current one)."""
    from searcher.tracking.model import load_model as load

    return load(model_uri, tracking_uri)
