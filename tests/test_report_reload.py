"""What the report's reload example and the summary's model line tell a user to do, for each kind of model: a
regression table's (N,) values, a table's classes by model.class_names, one-hot sequences. The example is run against
a really logged and reloaded model, so an example that would raise or mislead fails here."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from searcher.app import model_inputs
from searcher.data import DatasetOptions, load_dataset
from searcher.data.dataset import ImageDataset
from searcher.model.classifier import Classifier
from searcher.model.family import Family
from searcher.model.mlp import MLP
from searcher.model.transformer import Transformer
from searcher.report.content import input_kind, model_words, reload
from searcher.report.document import Code, Paragraph
from searcher.tracking.empty_store import copy_empty_store
from searcher.tracking.model import log_classifier
from searcher.tracking.records import ModelRecord, SearchRecord
from searcher.tracking.schema import Tags
from searcher.train.metrics import choose_metric


def table_frame(rows: int = 120, regression: bool = False) -> pd.DataFrame:
    """Two numbers and a category; the target `y` a value (regression) or one of three words."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    y = 500 + 80 * a + 20 * b if regression else np.array(["low", "mid", "high"])[(a > 0).astype(int) + (colour == "red")]
    return pd.DataFrame({"a": a, "b": b, "colour": colour, "y": y})


def logged(dataset: ImageDataset, family: Family, folder, monkeypatch) -> tuple[Classifier, SearchRecord]:
    """An untrained final model built and logged as a search logs it (tracking/model.py final_model, app.py's tags),
    in a new SQLite store under `folder`, and the search record the report is built from."""
    monkeypatch.chdir(folder)  # (MLflow's artifacts: ./mlruns)
    model = Classifier(
        family.baseline(1, 8, dataset.input_shape), dataset.input_shape, dataset.mean, dataset.std, range(dataset.num_classes), family,
        dataset.feature_names, dataset.class_names, str(dataset.train.images.dtype).removeprefix("torch."),
        (dataset.target_mean, dataset.target_std) if dataset.task == "regression" else None, dataset.columns,
    )
    uri, previous = f"sqlite:///{folder / 'mlflow.db'}", mlflow.get_tracking_uri()
    copy_empty_store(uri)  # (as a search makes its store: no migrations to wait for)
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as run:
            info = log_classifier(model, dataset.val.images[:2].numpy())
    finally:
        mlflow.set_tracking_uri(previous)
    tags = {
        Tags.DATASET: dataset.name,
        Tags.INPUT: json.dumps({"channels": dataset.channels, "size": dataset.size, "input_shape": dataset.input_shape, "classes": dataset.num_classes}),
        Tags.METRIC: json.dumps(choose_metric("auto", "auto", dataset.task).describe()),
    }
    record = SearchRecord(run.info.run_id, "s", "0", uri, "FINISHED", 0, 1, tags, {}, {}, (), ModelRecord(info.model_uri))
    return model, record


def run_example(record: SearchRecord, **inputs) -> tuple[str, object]:
    """The reload section's words, and what its example computes (`predictions`) given the inputs it names."""
    blocks = reload(record)
    (code,) = [block.text for block in blocks if isinstance(block, Code)]
    namespace = dict(inputs)
    exec(code, namespace)  # noqa: S102  (the report's own example, as a user would paste it)
    words = " ".join(block.text for block in blocks if isinstance(block, Paragraph))
    return code + words, namespace["predictions"]


def signature(record: SearchRecord) -> tuple[dict, dict]:
    """The logged pyfunc's input and output tensor specs: what the report's mlflow.pyfunc sentence describes."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(record.tracking_uri)
    try:
        found = mlflow.models.get_model_info(record.model.uri).signature
    finally:
        mlflow.set_tracking_uri(previous)
    return found.inputs.to_dict()[0]["tensor-spec"], found.outputs.to_dict()[0]["tensor-spec"]


def test_a_regression_tables_example_makes_rows_from_a_frame_and_returns_values_in_the_targets_units(tmp_path, monkeypatch):
    frame = table_frame(regression=True)
    frame.to_csv(tmp_path / "prices.csv", index=False)
    table = load_dataset(DatasetOptions("table", path=tmp_path / "prices.csv", target="y"))
    model, record = logged(table, MLP(), tmp_path, monkeypatch)
    said, predictions = run_example(record, frame=frame.drop(columns=["y"]))
    assert "model.rows(frame)" in said and "argmax" not in said and "uint8" not in said and "predictions in the target's units" in said
    with torch.no_grad():
        assert torch.allclose(predictions, model(model.rows(frame)))  # (N,): the target's units, mean ~500 here
    assert predictions.shape == (len(frame),)
    assert signature(record) == ({"dtype": "float32", "shape": (-1, 5)}, {"dtype": "float32", "shape": (-1,)})
    assert model_inputs(table) == "float32 rows (model.rows(frame) makes them from the file's columns) in, predictions in the target's units out"


def test_a_table_classifiers_example_names_each_rows_class_by_the_target_columns_values(tmp_path, monkeypatch):
    frame = table_frame()
    frame.to_csv(tmp_path / "kinds.csv", index=False)
    table = load_dataset(DatasetOptions("table", path=tmp_path / "kinds.csv", target="y"))
    model, record = logged(table, MLP(), tmp_path, monkeypatch)
    said, predictions = run_example(record, frame=frame)  # (the target's column ignored)
    assert "model.class_names" in said and "model.labels" not in said and "uint8" not in said
    assert len(predictions) == len(frame) and set(predictions) <= {"low", "mid", "high"}
    assert signature(record) == ({"dtype": "float32", "shape": (-1, 5)}, {"dtype": "float32", "shape": (-1, 3)})
    assert model_inputs(table) == "float32 rows (model.rows(frame) makes them from the file's columns) in, logits out"


def test_a_sequence_models_example_and_summary_say_it_takes_one_hot_float32_sequences(tmp_path, monkeypatch):
    sequences = load_dataset(DatasetOptions("sequences", sequence_length=10, vocabulary=5, train_size=200, test_size=50))
    model, record = logged(sequences, Transformer(heads=2), tmp_path, monkeypatch)
    rows = sequences.val.images[:7]
    said, predictions = run_example(record, rows=rows)
    assert "float32 tensor (N, 10, 5), each token one-hot" in said and "float32 one-hot sequences" in said and "uint8" not in said
    assert predictions.shape == (7,) and set(predictions.tolist()) <= set(range(sequences.num_classes))
    assert signature(record)[0] == {"dtype": "float32", "shape": (-1, 10, 5)}
    assert model_inputs(sequences) == "float32 one-hot sequences (N, 10, 5) in, logits out"


@pytest.mark.parametrize(
    ("shape", "table", "regression", "says"),
    [
        ((1, 8, 8), False, False, "uint8 images in, logits out"),
        ((7,), False, True, "float32 rows (N, 7) in, predictions in the target's units out"),  # an .npz file's rows
        ((7,), True, False, "float32 rows (model.rows(frame) makes them from the file's columns) in, logits out"),
        ((24, 9), False, False, "float32 one-hot sequences (N, 24, 9) in, logits out"),
    ],
)
def test_the_summarys_model_line_says_what_each_kind_of_model_takes_and_gives(shape, table, regression, says):
    assert model_words(input_kind(shape, table), shape, regression) == says
