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
from typing import TYPE_CHECKING, Any

from searcher.model.classifier import DESCRIPTION_FILE, WEIGHTS_FILE, Classifier, load_classifier, save_classifier

if TYPE_CHECKING:
    import numpy as np

    from searcher.data import ImageDataset
    from searcher.search import SearchResult

EXTRA_FILES = "extra_files"  # where mlflow.pytorch keeps `extra_files` inside a model


def final_model(result: SearchResult, dataset: ImageDataset, classes: list[int] | None) -> tuple[Classifier, np.ndarray]:
    """The final stage's best-validation model as users get it (uint8 images in, model/classifier.py), with two
    validation images as the input example from which MLflow infers the signature."""
    (best,) = result.final.winner_outcomes
    assert best.result is not None and best.result.state is not None  # (the final stage keeps its winner's weights)
    labels = classes or range(dataset.num_classes)
    request = best.request
    model = Classifier(request.arch, dataset.input_shape, dataset.mean, dataset.std, labels, request.family, dataset.feature_names, dataset.class_names,
        str(dataset.train.images.dtype).removeprefix("torch."),
        (dataset.target_mean, dataset.target_std) if dataset.task == "regression" else None, dataset.columns,
    )
    model.network.load_state_dict(best.result.state)
    return model.eval(), dataset.val.images[:2].numpy()


class ModelNotLoadable(Exception):
    """The URI names no model searcher can rebuild; the message says what to do instead."""


def log_classifier(model: Classifier, input_example: Any) -> Any:
    """Logs `model` to the active run as "model" (pytorch flavour + pyfunc, plus the files that rebuild it); returns ModelInfo.

    What `mlflow.pytorch.log_model` does, with the pyfunc flavour served on the CPU (`ServedOnCpu`)."""
    import warnings

    import mlflow
    import torch

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        # MLflow checks the input example by loading the exported program back, and torch 2.11's loader warns that it
        # reads weights from a read-only buffer (torch/export/pt2_archive: a copy would silence it; nothing is written)
        warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)
        files = save_classifier(model, Path(folder))
        return mlflow.models.Model.log(
            artifact_path=None,  # (deprecated for `name`, but still a required argument)
            name="model",
            flavor=ServedOnCpu,
            flavor_name="mlflow.pytorch",
            pytorch_model=model.cpu(),
            input_example=input_example,
            extra_files=[str(path) for path in files],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # skips slow requirement inference
            serialization_format="pt2",  # a torch.export program (mlflow.pytorch's default outside Databricks)
        )


class ServedOnCpu:
    """mlflow.pytorch's `save_model`, with the pyfunc flavour set to load the program on the CPU wherever it is served.

    The pytorch flavour is a torch.export program, and an exported program keeps the device its weights were
    exported on: it cannot be moved. MLflow's pyfunc loader puts a model on CUDA whenever CUDA is there, so a
    program exported on the CPU failed to load on a GPU machine ("weights / buffers on 'cpu' device, it can't be
    loaded on 'cuda' device"), and log_model's check of the input example printed that as a long warning at the end
    of every search on a GPU. Exported on the CPU and served on the CPU, the model loads alike on a CPU-only machine
    and on a GPU (a small CNN predicts fast enough there); `searcher.load_model` gives the module to move anywhere."""

    @staticmethod
    def save_model(path: str, mlflow_model: Any, **kwargs: Any) -> None:
        import mlflow.pytorch
        from mlflow import pyfunc
        from mlflow.models.model import MLMODEL_FILE_NAME

        mlflow.pytorch.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.flavors[pyfunc.FLAVOR_NAME][pyfunc.MODEL_CONFIG] = {"device": "cpu"}
        mlflow_model.save(str(Path(path) / MLMODEL_FILE_NAME))


def load_model(model_uri: str, tracking_uri: str | None = None) -> Classifier:
    """The Classifier logged at `model_uri` (models:/searcher-digits/1, models:/<model id>, ...), on the CPU, in eval mode."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from searcher.uris import redact

    store = tracking_uri or mlflow.get_tracking_uri()
    missing_store(model_uri, store)
    with tempfile.TemporaryDirectory() as folder:
        try:
            location = model_location(model_uri, store)
            for name in (DESCRIPTION_FILE, WEIGHTS_FILE):  # only these two: the exported program is not needed
                local = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{EXTRA_FILES}/{name}", dst_path=folder, tracking_uri=store)
                if Path(local) != Path(folder) / name:
                    Path(local).replace(Path(folder) / name)
        except (MlflowException, OSError) as error:
            raise ModelNotLoadable(
                f"{model_uri} in {redact(store)} is not a model searcher can rebuild ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]}): check the model URI and the tracking URI; a model logged by an "
                "earlier searcher, without extra_files/classifier.json, loads only with mlflow.pytorch.load_model."
            ) from None
        return load_classifier(Path(folder))


def missing_store(model_uri: str, tracking_uri: str) -> None:
    """Raises ModelNotLoadable when `tracking_uri` is a SQLite store whose file does not exist: MLflow would create an
    empty one (a read must not) and then report the model as missing. A relative path is relative to this directory."""
    from searcher.uris import local_file

    path = local_file(tracking_uri) if tracking_uri.startswith("sqlite:") else None
    if path is not None and not (file := Path(path).expanduser().absolute()).is_file():
        raise ModelNotLoadable(
            f"{model_uri}: the tracking store {tracking_uri} does not exist (there is no file {file}); run from the folder "
            f"the search ran in, or pass the store's absolute path: tracking_uri='sqlite:////path/to/{file.name}'."
        )


def model_location(model_uri: str, tracking_uri: str) -> str:
    """Where a model's files are. MLflow resolves models:/ URIs, and the logged model a runs:/ URI names, in its global
    tracking URI whatever a call is told (and creates ./mlflow.db doing so), so both are resolved here in
    `tracking_uri`; other URIs (paths, file:) are locations already."""
    if not model_uri.startswith(("models:/", "runs:/")):
        return model_uri.rstrip("/")
    from mlflow import MlflowClient
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if model_uri.startswith("runs:/"):
        return run_model_location(client, model_uri)
    name = model_uri.removeprefix("models:/").strip("/")
    if "/" not in name and "@" not in name and registered(client, name):  # (MLflow would look for a logged model of that id)
        raise ModelNotLoadable(f"{model_uri} names a registered model without a version; add one: models:/{name}/latest or models:/{name}/1.")
    found = get_model_name_and_version(client, model_uri)  # (model id,) or (name, version); aliases and stages too
    if len(found) == 1:
        return client.get_logged_model(found[0]).artifact_location
    return client.get_model_version_download_uri(*found)


def run_model_location(client: Any, model_uri: str) -> str:
    """runs:/<run id>/<name>: the model logged under `name` by that run (MLflow 3 keeps a model's files apart from
    its run's), else the run's own artifacts at that path."""
    run_id, _, path = model_uri.removeprefix("runs:/").strip("/").partition("/")
    run = client.get_run(run_id)
    name, _, inside = path.partition("/")
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}' AND source_run_id = '{run_id}'", max_results=1
    )
    if logged:
        return "/".join(part for part in (logged[0].artifact_location.rstrip("/"), inside) if part)
    return f"{run.info.artifact_uri.rstrip('/')}/{path}".rstrip("/")


def registered(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True
