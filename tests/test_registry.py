"""The final model in the model registry: registered per search, tagged, and it reloads to the same predictions."""

import json

import pytest
import torch
from conftest import SOURCE_CLASSES
from mlflow.tracking import MlflowClient

from searcher.data import DatasetOptions, DeviceData, load_dataset

pytestmark = pytest.mark.slow


def test_the_final_model_is_registered_tagged_and_reloads_to_its_recorded_accuracy(transfer_search):
    import mlflow.pytorch

    _, uri, name, stdout = transfer_search
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("searcher")
    (search,) = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'search'")
    (version,) = client.search_model_versions(f"run_id = '{search.info.run_id}'")
    assert version.name == "searcher-digits"
    assert version.tags["searcher.search_name"] == name
    assert abs(float(version.tags["test_acc"]) - search.data.metrics["test_acc"]) < 1e-5
    assert f"models:/searcher-digits/{version.version}" in stdout

    mlflow.set_tracking_uri(uri)
    registered = mlflow.pytorch.load_model(f"models:/searcher-digits/{version.version}")  # an exported graph, already in eval mode
    (logged,) = client.search_logged_models(experiment_ids=[experiment.experiment_id], filter_string=f"source_run_id = '{search.info.run_id}'")
    info = mlflow.models.get_model_info(f"models:/{logged.model_id}")
    assert info.signature is not None and "8, 8" in str(info.signature.inputs)

    # the model must be the final stage's best-validation seed: same test accuracy as that trial recorded
    dataset = load_dataset(DatasetOptions("digits", classes=tuple(SOURCE_CLASSES)))
    shape = json.loads(search.data.tags["searcher.input"])  # what the report tells users to normalise with
    assert shape["mean"] == list(dataset.mean) and shape["std"] == list(dataset.std) and shape["size"] == 8
    test = DeviceData(dataset, torch.device("cpu")).test()  # normalised exactly as the trainer did
    with torch.no_grad():
        predictions = registered(test.normalise(test.images)).argmax(1)
        again = mlflow.pytorch.load_model(f"models:/{logged.model_id}")(test.normalise(test.images)).argmax(1)
    assert torch.equal(predictions, again)
    accuracy = (predictions == test.labels).float().mean().item()
    (final_stage,) = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{search.info.run_id}' and tags.`searcher.stage` = 'final'")
    finals = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{final_stage.info.run_id}'", order_by=["attributes.start_time ASC"])
    chosen = max(finals, key=lambda run: run.data.metrics["best_val_acc"])  # ties: the earlier, as the final stage picks
    assert abs(accuracy - chosen.data.metrics["test_acc"]) < 1e-6
