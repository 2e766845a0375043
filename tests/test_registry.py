"""The final model in the model registry: registered per search, tagged, and it reloads to the same predictions."""

import json

import pytest
import torch
from conftest import SOURCE_CLASSES
from mlflow.tracking import MlflowClient

from searcher.data import DatasetOptions, load_dataset

pytestmark = pytest.mark.slow


def test_the_final_model_is_registered_tagged_and_reloads_to_its_recorded_accuracy(transfer_search):
    import mlflow

    import searcher

    _, uri, name, stdout = transfer_search
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("searcher")
    (search,) = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'search'")
    (version,) = client.search_model_versions(f"run_id = '{search.info.run_id}'")
    assert version.name == "searcher-digits"
    assert version.tags["searcher.search_name"] == name
    assert abs(float(version.tags["test_acc"]) - search.data.metrics["test_acc"]) < 1e-5
    assert f"models:/searcher-digits/{version.version}" in stdout

    registered = searcher.load_model(f"models:/searcher-digits/{version.version}", tracking_uri=uri)
    assert not registered.training and registered.labels == tuple(SOURCE_CLASSES)  # output i is digit SOURCE_CLASSES[i]
    (logged,) = client.search_logged_models(experiment_ids=[experiment.experiment_id], filter_string=f"source_run_id = '{search.info.run_id}'")
    mlflow.set_tracking_uri(uri)  # get_model_info reads MLflow's global tracking URI
    info = mlflow.models.get_model_info(f"models:/{logged.model_id}")
    assert info.signature is not None and "uint8" in str(info.signature.inputs) and "8, 8" in str(info.signature.inputs)

    # the model must be the final stage's best-validation seed: same test accuracy as that trial recorded
    dataset = load_dataset(DatasetOptions("digits", classes=tuple(SOURCE_CLASSES)))
    shape = json.loads(search.data.tags["searcher.input"])
    assert shape["mean"] == list(dataset.mean) and shape["std"] == list(dataset.std) and shape["size"] == 8
    test = dataset.test()  # uint8, as stored: the model normalises them itself
    with torch.no_grad():
        predictions = registered(test.images).argmax(1)
    accuracy = (predictions == test.labels).float().mean().item()
    (final_stage,) = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{search.info.run_id}' and tags.`searcher.stage` = 'final'")
    finals = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{final_stage.info.run_id}'", order_by=["attributes.start_time ASC"])
    chosen = max(finals, key=lambda run: run.data.metrics["best_val_acc"])  # ties: the earlier, as the final stage picks
    assert abs(accuracy - chosen.data.metrics["test_acc"]) < 1e-6
