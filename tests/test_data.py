import numpy as np
import pytest
import torch

from searcher.data import DatasetError, DatasetOptions, DeviceData, load_dataset
from searcher.data.batches import crop_and_flip, draw_crops


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
    cropped = crop_and_flip(images, 1, *draw_crops(2, 1, False, torch.Generator().manual_seed(0)))
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for n in range(2):
        windows = [padded[n, :, r : r + 4, c : c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(cropped[n], w) for w in windows)
    assert np.isin(cropped.numpy(), np.append(images.numpy(), 0)).all()


def test_cross_validation_folds_partition_the_training_and_validation_images():
    dataset = load_dataset(DatasetOptions("digits"))
    pool = len(dataset.train) + len(dataset.val)
    assert dataset.fold(0, 5) is dataset  # fold 0 is the plain split: the same trials as without cross-validation
    held_out = [dataset.val.images.reshape(len(dataset.val), -1)]
    for index in range(1, 5):
        fold = dataset.fold(index, 5)
        assert len(fold.train) + len(fold.val) == pool
        assert abs(len(fold.val) - len(dataset.val)) <= 2  # as large as the validation split
        counts = torch.bincount(fold.val.labels, minlength=10)
        assert int(counts.max() - counts.min()) <= 3  # stratified
        assert torch.equal(fold.val.images, load_dataset(DatasetOptions("digits")).fold(index, 5).val.images)  # fixed
        assert fold.mean == dataset.mean and fold.test() is dataset._test
        held_out.append(fold.val.images.reshape(len(fold.val), -1))
    rows = torch.cat(held_out)
    assert len(rows) == pool  # every image is judged in exactly one fold...
    train_rows = {bytes(r.numpy()) for r in dataset.fold(2, 5).train.images.reshape(-1, 64)}
    assert not any(bytes(r.numpy()) in train_rows for r in dataset.fold(2, 5).val.images.reshape(-1, 64))  # ...never trained on there
    data = DeviceData(dataset, torch.device("cpu"))
    assert data.fold(0, 5) is data and data.fold(3, 5) is data.fold(3, 5)
    assert len(data.fold(3, 5).val) == len(dataset.fold(3, 5).val)
