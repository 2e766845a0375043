"""MLflow recording: the only package that imports mlflow."""

import os

# Before mlflow is imported: no "view run at URL" lines, no progress bars for the small files a search reads back.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from searcher.tracking.store import TrackingError, check_uri, import_in_background, open_recorder, ui_default_allowed_hosts  # noqa: E402

__all__ = ["TrackingError", "check_uri", "import_in_background", "open_recorder", "ui_default_allowed_hosts"]
