"""Architecture specs, the modules built from them, and function-preserving growth. Imports only PyTorch."""

from searcher.model.build import Network, build_model, count_parameters
from searcher.model.growth import GrowthError, GrowthReport, grow, grow_with_report
from searcher.model.spec import ArchSpec, LayerSpec, LayoutPolicy

__all__ = [
    "ArchSpec",
    "GrowthError",
    "GrowthReport",
    "LayerSpec",
    "LayoutPolicy",
    "Network",
    "build_model",
    "count_parameters",
    "grow",
    "grow_with_report",
]
