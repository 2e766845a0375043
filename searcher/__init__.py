"""searcher: the "start small and go deep" architecture search, staged, tracked in MLflow."""

__version__ = "0.1.0"
