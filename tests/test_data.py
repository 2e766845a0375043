import numpy as np
import pytest
import torch

from searcher.data import DatasetError, DatasetOptions, DeviceData, load_dataset
from searcher.data.batches import random_crop


def test_digits_splits_are_fixed_disjoint_and_stratified():
    a, b = load_dataset(DatasetOptions("digits")), load_dataset(DatasetOptions("digits"))
    assert len(a.train) + len(a.val) + len(a._test) == 1797
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a._test.labels, b._test.labels)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (1, 8, 8)
    assert set(a.val.labels.tolist()) == set(range(10)) and a.num_classes == 10
    assert not a.flip  # digits are never flipped
    other = load_dataset(DatasetOptions("digits", split_seed=1))
    assert not torch.equal(a.val.images, other.val.images)
    assert torch.equal(a._test.images, other._test.images)  # the test split never moves


def test_test_split_is_read_only_when_asked():
    dataset = load_dataset(DatasetOptions("digits"))
    data = DeviceData(dataset, torch.device("cpu"))
    assert dataset.test_reads == 0
    data.test()
    assert dataset.test_reads == 1


def test_class_subset_is_remapped():
    dataset = load_dataset(DatasetOptions("digits", classes=(5, 6, 7, 8, 9)))
    assert dataset.num_classes == 5
    assert sorted(set(dataset.train.labels.tolist())) == [0, 1, 2, 3, 4]
    with pytest.raises(DatasetError, match="dataset.classes"):
        load_dataset(DatasetOptions("digits", classes=(3, 11)))


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DatasetError, match="dataset.name='nope' is unknown; choose one of .*digits"):
        load_dataset(DatasetOptions("nope"))


def test_augmentation_is_deterministic_and_keeps_labels():
    data = DeviceData(load_dataset(DatasetOptions("digits")), torch.device("cpu"))
    first = list(data.train.shuffled_batches(100, torch.Generator().manual_seed(3), crop_padding=1, flip=True))
    again = list(data.train.shuffled_batches(100, torch.Generator().manual_seed(3), crop_padding=1, flip=True))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(first, again, strict=True))
    assert sum(len(y) for _, y in first) == len(data.train)
    plain = list(data.train.shuffled_batches(100, torch.Generator().manual_seed(3), crop_padding=0, flip=False))
    assert all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(first, plain, strict=True))  # same order, same labels


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    cropped = random_crop(images, 1, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for n in range(2):
        windows = [padded[n, :, r : r + 4, c : c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(cropped[n], w) for w in windows)
    assert np.isin(cropped.numpy(), np.append(images.numpy(), 0)).all()
