"""The final model as users get it: uint8 images in, normalisation inside, an nn.Module that reloads safely and serves."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.model import LayoutPolicy, build_model
from searcher.model.classifier import Classifier, load_classifier, save_classifier


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetOptions("digits"))


def trained_like(digits) -> Classifier:
    """A Classifier whose network has non-trivial weights and BatchNorm statistics (no training needed)."""
    torch.manual_seed(0)
    spec = LayoutPolicy(input_size=8).baseline(2, 16)
    model = Classifier(spec, digits.input_shape, digits.mean, digits.std, range(10))
    network = build_model(spec, 1, 10).train()
    with torch.no_grad():
        network(DeviceData(digits, torch.device("cpu")).train.normalise(digits.train.images[:512]))  # BatchNorm statistics
    model.network.load_state_dict(network.state_dict())
    return model.eval()


def test_it_normalises_uint8_images_exactly_as_the_trainer_did(digits):
    model = trained_like(digits)
    images = digits.val.images[:64]
    trainer_input = DeviceData(digits, torch.device("cpu")).val.normalise(images)
    with torch.no_grad():
        assert torch.equal(model(images), model.network(trainer_input))


def test_it_reloads_from_its_description_and_a_weights_only_state_dict(digits, tmp_path: Path):
    model = trained_like(digits)
    files = save_classifier(model, tmp_path)
    torch.load(files[1], weights_only=True)  # tensors only: loads without unpickling any code
    again = load_classifier(tmp_path)
    assert not again.training and again.labels == tuple(range(10)) and again.spec == model.spec
    with torch.no_grad():
        assert torch.equal(again(digits.val.images), model(digits.val.images))
    again.train()  # a plain nn.Module: both modes work
    again.eval()


def test_it_refuses_input_it_would_get_wrong(digits):
    model = trained_like(digits)
    with pytest.raises(TypeError, match="uint8 images on the 0-255 scale"):
        model(digits.val.images.float() / 255)
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\); got \(3, 8, 8\)"):
        model(digits.val.images[:3, 0])


def test_the_logged_model_serves_on_the_cpu_even_where_mlflow_would_put_it_on_cuda(digits, tmp_path: Path, monkeypatch):
    """On a GPU machine MLflow's pyfunc loader puts a model on CUDA, where a program exported on the CPU cannot go: logging
    warned that the input example failed to validate, and loading failed. This variable makes MLflow choose CUDA here too."""
    import logging

    import mlflow

    from searcher.tracking.model import log_classifier

    monkeypatch.setenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", "cuda")
    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    warnings: list[str] = []
    handler = Kept(logging.WARNING)
    logger = logging.getLogger("mlflow.models.model")  # (MLflow's loggers do not propagate to pytest's)
    logger.addHandler(handler)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        model = trained_like(digits)
        with mlflow.start_run():
            info = log_classifier(model, digits.val.images[:2].numpy())
        served = mlflow.pyfunc.load_model(info.model_uri).predict(digits.val.images[:16].numpy())
    finally:
        logger.removeHandler(handler)
        mlflow.set_tracking_uri(previous)
    assert not [w for w in warnings if "Failed to validate serving input" in w], warnings
    with torch.no_grad():
        np.testing.assert_allclose(served, model(digits.val.images[:16]).numpy(), atol=1e-5)


README_MARKER = "<!-- the README model snippet: tests/test_final_model.py runs it -->"


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(re.escape(README_MARKER) + r"\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its model snippet (or its marker)"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_snippet_loads_the_registered_model_and_reproduces_its_test_accuracy(quick_search, tmp_path):
    from mlflow.tracking import MlflowClient

    _, uri, _ = quick_search
    (tmp_path / "mlflow.db").symlink_to(uri.removeprefix("sqlite:///"))  # the snippet reads ./mlflow.db, as after `python -m searcher`
    result = subprocess.run(
        [sys.executable, "-c", readme_snippet()], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(re.search(r"test accuracy (\S+)", result.stdout).group(1))
    recorded = MlflowClient(tracking_uri=uri).get_model_version("searcher-digits", "1").tags["test_acc"]
    assert accuracy == pytest.approx(float(recorded), abs=1e-4)  # the registered model, fed as the README says, is that model


@pytest.mark.slow
def test_the_pyfunc_flavour_serves_the_same_logits_from_uint8_images(quick_search):
    import mlflow

    import searcher

    _, uri, _ = quick_search
    mlflow.set_tracking_uri(uri)
    module = searcher.load_model("models:/searcher-digits/1", tracking_uri=uri)
    images = load_dataset(DatasetOptions("digits")).test().images[:16]
    with torch.no_grad():
        expected = module(images).numpy()
    served = mlflow.pyfunc.load_model("models:/searcher-digits/1").predict(images.numpy())
    np.testing.assert_allclose(served, expected, atol=1e-5)
    request = json.dumps({"inputs": images.numpy().tolist()})  # what a client POSTs to `mlflow models serve`
    answer = mlflow.models.validate_serving_input("models:/searcher-digits/1", request)
    np.testing.assert_allclose(np.asarray(answer), expected, atol=1e-5)


@pytest.mark.slow
def test_a_uri_without_a_searcher_model_says_what_to_do(quick_search):
    import searcher
    from searcher.tracking.model import ModelNotLoadable

    _, uri, _ = quick_search
    with pytest.raises(ModelNotLoadable, match="models:/searcher-digits/99 in sqlite:///.* is not a model searcher can rebuild"):
        searcher.load_model("models:/searcher-digits/99", tracking_uri=uri)


def test_load_model_on_a_store_that_does_not_exist_creates_nothing_and_names_the_path(tmp_path, monkeypatch):
    """The relative URI a search prints, used from another folder: no empty mlflow.db is made there, and the error
    names the absolute path that was looked at."""
    import searcher
    from searcher.tracking.model import ModelNotLoadable

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotLoadable) as raised:
        searcher.load_model("models:/searcher-digits/1", tracking_uri="sqlite:///mlflow.db")
    assert f"the tracking store sqlite:///mlflow.db does not exist (there is no file {tmp_path / 'mlflow.db'}); run from the folder" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_runs_uri_loads_from_the_store_it_is_given_and_creates_nothing_here(quick_search, tmp_path, monkeypatch):
    """MLflow resolves the model a runs:/ URI names in its global store (by default ./mlflow.db, which it then creates);
    load_model must read the store it was told, as it does for models:/ URIs."""
    from mlflow.tracking import MlflowClient

    import searcher

    _, uri, _ = quick_search
    logged_by = MlflowClient(tracking_uri=uri).get_model_version("searcher-digits", "1").run_id
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)  # MLflow's default store: ./mlflow.db
    by_run = searcher.load_model(f"runs:/{logged_by}/model", tracking_uri=uri)
    registered = searcher.load_model("models:/searcher-digits/1", tracking_uri=uri)
    images = load_dataset(DatasetOptions("digits")).test().images[:8]
    with torch.no_grad():
        assert torch.equal(by_run(images), registered(images))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_registered_name_without_a_version_says_how_to_add_one(quick_search):
    import searcher
    from searcher.tracking.model import ModelNotLoadable

    _, uri, _ = quick_search
    with pytest.raises(ModelNotLoadable, match=r"models:/searcher-digits names a registered model without a version; add one: models:/searcher-digits/latest"):
        searcher.load_model("models:/searcher-digits", tracking_uri=uri)
    assert searcher.load_model("models:/searcher-digits/latest", tracking_uri=uri).spec == searcher.load_model("models:/searcher-digits/1", tracking_uri=uri).spec
