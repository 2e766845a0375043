"""MLflow recording: the only package that imports mlflow."""

from searcher.tracking.store import TrackingError, check_uri, open_recorder

__all__ = ["TrackingError", "check_uri", "open_recorder"]
