"""The generated dataset: shapes and classes as configured, deterministic under its seed, not linearly separable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


# ---- difficulty ---------------------------------------------------------------------------------

# generate(16, 3, 10, 20, 10, seed=0) before `difficulty` existed: labels, and each image's pixel sum and
# standard deviation (train then test). Sums allow a few rounding flips: float32 trigonometry may differ
# in the last bit across CPUs and numpy builds; any real change to the images moves them by hundreds.
BEFORE_LABELS = ([0, 0, 5, 3, 9, 4, 1, 9, 7, 1, 3, 8, 7, 6, 6, 4, 8, 2, 2, 5], [8, 2, 1, 0, 5, 6, 7, 4, 3, 9])
BEFORE_SUMS = [98026, 98110, 98300, 97595, 98220, 98400, 97996, 98041, 97694, 97804, 97641, 97588, 97764, 99222, 98183]
BEFORE_SUMS += [97961, 97919, 97787, 97408, 97547, 97910, 98653, 98396, 97963, 98052, 97649, 98017, 97414, 98041, 97624]
BEFORE_STDS = [21.63, 19.93, 20.59, 19.89, 20.46, 21.15, 20.43, 21.9, 20.59, 21.66, 17.64, 19.31, 20.46, 21.02, 19.38]
BEFORE_STDS += [21.76, 20.31, 20.83, 20.3, 19.53, 21.79, 19.31, 19.4, 19.01, 19.08, 19.55, 21.24, 18.56, 20.23, 21.52]


def test_difficulty_zero_is_the_default_and_the_images_from_before_it_existed():
    default, zero = generate(16, 3, 10, 20, 10, seed=0), generate(16, 3, 10, 20, 10, seed=0, difficulty=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(default, zero, strict=True))
    train_images, train_labels, test_images, test_labels = zero
    assert (train_labels.tolist(), test_labels.tolist()) == BEFORE_LABELS
    pixels = np.concatenate([train_images, test_images]).reshape(30, -1).astype(np.float64)
    assert np.abs(pixels.sum(1) - BEFORE_SUMS).max() <= 3
    assert np.abs(pixels.std(1) - BEFORE_STDS).max() <= 0.01


def test_hard_is_deterministic_balanced_and_differs_from_easy_and_across_seeds():
    a, b = generate(16, 3, 10, 200, 50, seed=3, difficulty=1.0), generate(16, 3, 10, 200, 50, seed=3, difficulty=1.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape == (200, 3, 16, 16) and a[0].dtype == np.uint8 and a[2].shape == (50, 3, 16, 16)
    assert np.bincount(a[1]).tolist() == [20] * 10 and np.bincount(a[3]).tolist() == [5] * 10
    assert np.array_equal(a[1], generate(16, 3, 10, 200, 50, seed=3)[1])  # the same labels, other images
    assert not np.array_equal(a[0], generate(16, 3, 10, 200, 50, seed=3)[0])
    assert not np.array_equal(a[0], generate(16, 3, 10, 200, 50, seed=4, difficulty=1.0)[0])
    assert not np.array_equal(a[0], generate(16, 3, 10, 200, 50, seed=3, difficulty=0.5)[0])  # fewer distractors
    assert a[0].std() > 10


def test_hard_works_for_any_class_count_and_channels():
    for classes in (2, 3, 7, 100):
        train_images, train_labels, _, test_labels = generate(12, 1, classes, 4 * classes, classes, seed=0, difficulty=1.0)
        assert train_images.shape == (4 * classes, 1, 12, 12) and np.bincount(train_labels).tolist() == [4] * classes


def test_hard_classes_are_relations_a_linear_model_on_pixels_stays_near_chance():
    """Every part lands anywhere on the wrap-around canvas: no pixel says anything about the class by itself."""
    from sklearn.linear_model import RidgeClassifier

    train_images, train_labels, test_images, test_labels = generate(16, 3, 4, 3000, 1000, seed=0, difficulty=1.0)
    model = RidgeClassifier(alpha=1.0).fit(train_images.reshape(3000, -1) / 255, train_labels)
    accuracy = model.score(test_images.reshape(1000, -1) / 255, test_labels)
    assert accuracy < 0.25 + 0.05, accuracy  # chance is 0.25


def test_difficulty_out_of_range_is_refused():
    import pytest

    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="difficulty"):
            generate(8, 1, 2, 4, 2, seed=0, difficulty=bad)


def test_difficulty_setting_is_validated_and_reaches_the_identity():
    import pytest
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from searcher.config import ConfigError, validate

    def config(*overrides: str):
        with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
            return validate(OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=False))

    assert config("+dataset=synthetic").dataset.difficulty == 0.0
    hard = config("+dataset=synthetic_hard").dataset
    assert (hard.difficulty, hard.image_size, hard.train_size) == (1.0, 16, 10000)
    assert config("+dataset=synthetic", "+dataset.difficulty=0.5").dataset.difficulty == 0.5
    with pytest.raises(ConfigError, match=r"dataset.difficulty=2.0 is out of range; allowed: a number from 0 to 1"):
        config("+dataset=synthetic", "+dataset.difficulty=2")
    with pytest.raises(ConfigError, match=r"dataset.difficulty=1.0 is out of range; allowed: 0 except for synthetic"):
        config("+dataset=cifar10", "+dataset.difficulty=1")
    options = DatasetOptions(name="synthetic_hard", image_size=16, num_classes=4, train_size=80, test_size=20, difficulty=1.0)
    dataset = load_dataset(options)
    assert "difficulty=1.0" in dataset.identity and dataset.identity.startswith("synthetic_hard|")
    assert (
        "difficulty"
        not in load_dataset(DatasetOptions(name="synthetic", image_size=16, num_classes=4, train_size=80, test_size=20)).identity
    )
    assert torch.equal(dataset.train.images, load_dataset(DatasetOptions(**{**vars(options), "name": "synthetic"})).train.images)


@pytest.mark.parametrize("difficulty", [0.0, 1.0])
def test_the_images_do_not_depend_on_how_many_threads_paint_them(monkeypatch, difficulty):
    """Chunks are painted in parallel from random numbers drawn in order: one painter or several, the same images."""
    from searcher.data import synthetic

    many = generate(16, 3, 10, 2 * synthetic.CHUNK + 100, 50, seed=2, difficulty=difficulty)
    monkeypatch.setattr(synthetic, "MAX_PAINTERS", 1)
    one = generate(16, 3, 10, 2 * synthetic.CHUNK + 100, 50, seed=2, difficulty=difficulty)
    assert all(np.array_equal(x, y) for x, y in zip(many, one, strict=True))
