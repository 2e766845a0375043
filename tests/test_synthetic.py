"""The generated dataset: shapes and classes as configured, deterministic under its seed, not linearly separable."""

from __future__ import annotations

import numpy as np
import torch

from searcher.data import DatasetOptions, load_dataset
from searcher.data.synthetic import generate


def test_shape_class_count_balance_and_sizes():
    train_images, train_labels, test_images, test_labels = generate(12, 2, 7, 70, 21, seed=0)
    assert train_images.shape == (70, 2, 12, 12) and test_images.shape == (21, 2, 12, 12) and train_images.dtype == np.uint8
    assert np.bincount(train_labels).tolist() == [10] * 7 and np.bincount(test_labels).tolist() == [3] * 7
    assert train_images.std() > 10  # not a blank image


def test_deterministic_under_its_seed_and_different_across_seeds():
    a, b, c = generate(16, 3, 10, 200, 50, seed=3), generate(16, 3, 10, 200, 50, seed=3), generate(16, 3, 10, 200, 50, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0][:50], a[2])  # train and test are different draws


def test_through_load_dataset_with_identity_naming_its_shape():
    options = DatasetOptions(name="synthetic", image_size=16, channels=1, num_classes=4, train_size=80, test_size=20, data_seed=1)
    dataset = load_dataset(options)
    assert (dataset.channels, dataset.size, dataset.num_classes, dataset.flip) == (1, 16, 4, False)
    assert "image_size=16" in dataset.identity and "data_seed=1" in dataset.identity
    assert torch.equal(load_dataset(options).train.images, dataset.train.images)


def test_a_linear_model_on_pixels_stays_near_chance():
    """Random phase and position flatten every class's mean image: classes need non-linear features."""
    from sklearn.linear_model import RidgeClassifier

    train_images, train_labels, test_images, test_labels = generate(16, 3, 4, 3000, 1000, seed=0)
    model = RidgeClassifier(alpha=1.0).fit(train_images.reshape(3000, -1) / 255, train_labels)
    assert model.score(train_images.reshape(3000, -1) / 255, train_labels) > 0.3  # it does fit the training noise
    accuracy = model.score(test_images.reshape(1000, -1) / 255, test_labels)
    assert accuracy < 0.25 + 0.05, accuracy  # chance is 0.25
