"""Architecture specs and the modules built from them. Imports only PyTorch."""

from searcher.model.build import Network, build_model, count_parameters
from searcher.model.spec import ArchSpec, LayerSpec, LayoutPolicy

__all__ = ["ArchSpec", "LayerSpec", "LayoutPolicy", "Network", "build_model", "count_parameters"]
