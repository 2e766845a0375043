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


def one_batch_at_a_time(split: DeviceSplit, batch_size: int, generator: torch.Generator, padding: int, flip: bool):
    """The pipeline as it was before chunks: gathered and augmented batch by batch (the reference)."""
    from searcher.data.batches import crop_and_flip, draw_crops

    order = torch.randperm(len(split), generator=generator)
    starts = range(0, len(split), batch_size)
    draws = [draw_crops(min(batch_size, len(split) - start), padding, flip, generator) for start in starts]
    offsets, mirrored = torch.cat([o for o, _ in draws], 1), torch.cat([m for _, m in draws])
    for start in starts:
        index = order[start : start + batch_size]
        images = crop_and_flip(split.images.index_select(0, index), padding, offsets[:, start : start + len(index)], mirrored[start : start + len(index)])
        yield split.normalise(images), split.labels.index_select(0, index)


def test_chunks_of_batches_give_exactly_the_batches_made_one_at_a_time(monkeypatch):
    import searcher.data.batches as batches

    split = DeviceSplit(split_with_signatures(200), (0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    monkeypatch.setattr(batches, "CHUNK_BYTES", 3 * 64 * split.images[0].numel())  # 3 batches a chunk: 200 = 192 + 8
    for padding, flip in [(2, True), (2, False), (0, True)]:
        chunked = list(split.shuffled_batches(64, torch.Generator().manual_seed(4), padding, flip))
        reference = list(one_batch_at_a_time(split, 64, torch.Generator().manual_seed(4), padding, flip))
        assert [len(labels) for _, labels in chunked] == [64, 64, 64, 8]
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(chunked, reference, strict=True))
