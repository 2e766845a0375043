"""The final model in MLflow: one logged model, usable three ways.

- `searcher.load_model(uri)`: the `Classifier` (an nn.Module in eval mode that takes uint8
  images and normalises them itself), rebuilt from the description and weights-only state
  dict stored with the model (`extra_files/`). No pickle and no torch.export: after the
  download it takes milliseconds.
- `mlflow.pyfunc.load_model(uri).predict(uint8 array)` and `mlflow models serve`: the
  pytorch flavour holds a torch.export program of the same Classifier, which needs only
  torch and mlflow where it is served (the signature says uint8 (-1, C, H, W) in, logits out).
- `mlflow.pytorch.load_model(uri)`: that program as a GraphModule, for those who want it
  (its eval behaviour is baked in; torch refuses `.eval()` and `.train()` on it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from searcher.model.classifier import DESCRIPTION_FILE, Classifier, load_classifier, save_classifier

EXTRA_FILES = "extra_files"  # where mlflow.pytorch keeps `extra_files` inside a model


class ModelNotLoadable(Exception):
    """The URI names no model searcher can rebuild; the message says what to do instead."""


def log_classifier(model: Classifier, input_example: Any) -> Any:
    """Logs `model` to the active run as "model" (pytorch flavour + pyfunc, plus the files that rebuild it); returns ModelInfo."""
    import mlflow.pytorch
    import torch

    with tempfile.TemporaryDirectory() as folder:
        files = save_classifier(model, Path(folder))
        return mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=input_example,
            extra_files=[str(path) for path in files],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # skips slow requirement inference
        )


def load_model(model_uri: str, tracking_uri: str | None = None) -> Classifier:
    """The Classifier logged at `model_uri` (models:/searcher-digits/1, models:/<model id>, ...), on the CPU, in eval mode."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from searcher.uris import redact

    with tempfile.TemporaryDirectory() as folder:
        try:  # the whole model (~100 KB for a small CNN): models:/<id> URIs take no sub-path
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder, tracking_uri=tracking_uri))
        except (MlflowException, OSError) as error:
            raise ModelNotLoadable(
                f"{model_uri} is not a model in {redact(tracking_uri or mlflow.get_tracking_uri())}: check the model URI and "
                f"the tracking URI ({type(error).__name__}: {str(error).splitlines()[0][:200]})."
            ) from None
        if not (local / EXTRA_FILES / DESCRIPTION_FILE).is_file():
            raise ModelNotLoadable(
                f"{model_uri} has no {EXTRA_FILES}/{DESCRIPTION_FILE}: it was logged by an earlier searcher; "
                "load it with mlflow.pytorch.load_model and feed it normalised float images."
            )
        return load_classifier(local / EXTRA_FILES)
