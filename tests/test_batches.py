"""The device-resident pipeline: seeded augmentation is reproducible and never mixes up labels."""

from __future__ import annotations

import torch

from searcher.data.batches import DeviceSplit
from searcher.data.dataset import Split


def split_with_signatures(n: int = 200) -> Split:
    """Image i is filled with the value i + 1 (never 0, the crop padding), so every output pixel names its source."""
    values = torch.arange(1, n + 1, dtype=torch.uint8)
    images = values.view(n, 1, 1, 1).expand(n, 3, 8, 8).clone()
    images[:, :, :, :4] //= 2  # left half darker: a flip is visible
    return Split(images, torch.arange(n) % 7)


def epoch(split: DeviceSplit, seed: int, padding: int = 2, flip: bool = True):
    return list(split.shuffled_batches(64, torch.Generator().manual_seed(seed), padding, flip))


def test_same_seed_same_batches_other_seed_other_batches():
    split = DeviceSplit(split_with_signatures(), (0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    first, again, other = epoch(split, 0), epoch(split, 0), epoch(split, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][0], other[0][0])


def test_crops_and_flips_keep_each_image_with_its_label():
    source = split_with_signatures()
    split = DeviceSplit(source, (0.0,) * 3, (1 / 255,) * 3, torch.device("cpu"))  # normalise() becomes the identity
    seen, flipped, shifted = [], 0, 0
    for images, labels in epoch(split, 0):
        pixels = images.round().to(torch.uint8)
        for image, label in zip(pixels, labels, strict=True):
            index = int(image.max()) - 1  # the brighter right half holds the signature value
            assert label == source.labels[index]
            seen.append(index)
            reference = source.images[index]
            flipped += bool(image[0, 4, 0] > image[0, 4, 7])  # bright half on the left: mirrored
            shifted += bool((image == 0).any())
            assert (image[image > 0] == reference[0].unique().view(-1, 1)).any(0).all()  # only the source's own values
    assert sorted(seen) == list(range(len(source)))  # every image exactly once per epoch
    assert 40 < flipped < 160 and shifted > 100  # flips about half, most crops move the window
