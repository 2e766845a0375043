"""Your own arrays (`+dataset=arrays`, `searcher.search(data=(inputs, labels))`): images, rows and sequences in an .npz file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, search_runs

import searcher
from searcher.data import DatasetError, DatasetOptions, load_dataset
from searcher.data.sequences import generate


def digits_images(rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    digits = load_dataset(DatasetOptions("digits"))
    return digits.train.images[:rows].numpy(), digits.train.labels[:rows].numpy()


def test_images_rows_and_sequences_are_read_from_an_npz_file_with_a_stratified_test_split(tmp_path):
    images, labels = digits_images()
    np.savez(tmp_path / "images.npz", inputs=images, labels=labels)
    found = load_dataset(DatasetOptions("arrays", path=tmp_path / "images.npz"))
    assert found.is_image and found.input_shape == (1, 8, 8) and found.num_classes == 10 and abs(len(found.test()) - 120) <= 5  # 20%, class by class
    assert not found.flip and load_dataset(DatasetOptions("arrays", path=tmp_path / "images.npz", flip=True)).flip
    train, train_labels, test, test_labels = generate(12, 6, 300, 100, seed=3)
    np.savez(tmp_path / "tokens.npz", inputs=train, labels=train_labels, test_inputs=test, test_labels=test_labels)
    tokens = load_dataset(DatasetOptions("arrays", path=tmp_path / "tokens.npz"))
    assert tokens.describe_input() == "12 tokens of 6" and len(tokens.test()) == 100 and not tokens.is_image
    np.savez(tmp_path / "rows.npz", inputs=np.random.default_rng(0).normal(size=(200, 5)), labels=np.linspace(0, 1, 200) ** 2)
    rows = load_dataset(DatasetOptions("arrays", path=tmp_path / "rows.npz"))
    assert rows.task == "regression" and rows.input_shape == (5,) and rows.train.images.dtype == torch.float32
    np.savez(tmp_path / "images.npz", inputs=images[:-1], labels=labels[:-1])  # the same name, other contents: other data
    assert load_dataset(DatasetOptions("arrays", path=tmp_path / "images.npz")).identity != found.identity


@pytest.mark.parametrize(
    ("arrays", "says"),
    [
        ({"inputs": np.zeros((4, 3), np.float32)}, "has no array 'labels'; it holds ['inputs']"),
        ({"inputs": np.zeros((4, 1, 2, 2), np.float32), "labels": np.zeros(4, np.int64)}, "inputs are float32 images; give them as uint8"),
        ({"inputs": np.zeros((4, 3), np.float32), "labels": np.zeros(3, np.int64)}, "labels must be one per example (4)"),
        ({"inputs": np.zeros((4, 3), np.float32), "labels": np.array([0, 1, -1, 0])}, "labels must be class indices 0..k-1 or float values"),
        ({"inputs": np.zeros((4,), np.float32), "labels": np.zeros(4, np.int64)}, "give images (N, C, H, W), rows (N, F) or sequences (N, L, V)"),
        ({"inputs": np.zeros((4, 3), np.float32), "labels": np.zeros(4, np.int64), "test_inputs": np.zeros((2, 3))}, "give both test_inputs and test_labels"),
    ],
)
def test_arrays_that_cannot_be_searched_say_why(tmp_path, arrays, says):
    np.savez(tmp_path / "a.npz", **arrays)
    with pytest.raises(DatasetError) as raised:
        load_dataset(DatasetOptions("arrays", path=tmp_path / "a.npz"))
    assert says in str(raised.value)


def test_image_tensors_are_searched_from_python_with_the_cnn_and_the_same_tensors_resume(tmp_path):
    images, labels = digits_images()
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    settings = (*TINY, "execution=serial", f"tracking.uri={uri}", f"data_dir={tmp_path / 'data'}")
    found = searcher.search(*settings, data=(torch.from_numpy(images), torch.from_numpy(labels)), output_dir=tmp_path / "one")
    assert found.metric == "accuracy" and 0.5 < found.test_acc <= 1 and found.model.images  # the cnn, taking uint8 images
    assert [path.suffix for path in (tmp_path / "data" / "arrays").iterdir()] == [".npz"]
    with torch.no_grad():
        assert found.model(torch.from_numpy(images[:3])).shape == (3, 10)
    again = searcher.search(*settings, data=(images, labels), output_dir=tmp_path / "two")  # numpy arrays, the same content
    assert again.run_id == found.run_id and len(search_runs(uri, "tags.`searcher.role` = 'search'")) == 1
    with pytest.raises(searcher.SearchError, match="data= images must be uint8 on the 0..255 scale, got float32"):
        searcher.search(*settings, data=(images.astype(np.float32) / 255, labels))
