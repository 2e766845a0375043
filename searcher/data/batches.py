"""Device-resident batches with batched augmentation (the airbench recipe).

The images stay on the training device as uint8 (CIFAR-10 train: 150 MB). Each
batch is normalised and augmented on the device in a few tensor ops, so no
DataLoader workers, no host-to-device copies per step and no float copy of the
dataset.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from searcher.data.dataset import ImageDataset, Split


class DeviceSplit:
    """One split on the device, normalised batch by batch."""

    def __init__(self, split: Split, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.images = split.images.to(device)  # (N, C, H, W) uint8
        self.labels = split.labels.to(device)  # (N,) int64
        self.scale = (1 / (255 * torch.tensor(std, device=device))).view(1, -1, 1, 1)
        self.shift = (torch.tensor(mean, device=device) / torch.tensor(std, device=device)).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * self.scale - self.shift  # (x / 255 - mean) / std

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """In order, unaugmented: for evaluation."""
        for start in range(0, len(self), batch_size):
            yield self.normalise(self.images[start : start + batch_size]), self.labels[start : start + batch_size]

    def shuffled_batches(
        self, batch_size: int, generator: torch.Generator, crop_padding: int, flip: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch in a seeded random order, with random crops and flips; drops no image."""
        order = torch.randperm(len(self), generator=generator).to(self.labels.device)
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            images = self.images[index]
            if crop_padding > 0:
                images = random_crop(images, crop_padding, generator)
            if flip:
                images = random_flip(images, generator)
            yield self.normalise(images), self.labels[index]


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by `padding` zeros, then take one random HxW window per image (one gather)."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(images.device)
    rows = (offsets[0, :, None] + torch.arange(height, device=images.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (offsets[1, :, None] + torch.arange(width, device=images.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


class DeviceData:
    """Train and validation splits on the device; the test split only when asked for."""

    def __init__(self, dataset: ImageDataset, device: torch.device):
        self.dataset = dataset
        self.device = device
        self.train = DeviceSplit(dataset.train, dataset.mean, dataset.std, device)
        self.val = DeviceSplit(dataset.val, dataset.mean, dataset.std, device)
        self._test: DeviceSplit | None = None

    def test(self) -> DeviceSplit:
        if self._test is None:
            self._test = DeviceSplit(self.dataset.test(), self.dataset.mean, self.dataset.std, self.device)
        return self._test
