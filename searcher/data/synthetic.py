"""A procedurally generated image-classification dataset of any shape and class count.

For tests and GPU throughput runs where no real data is at hand. A class is an
ordered pair of oriented textures ("parts": a Gabor patch with its own
orientation, wavelength and colour): the first part sits in the left half of
the image, the second in the right half, each at a random position with a
random phase and contrast, over a random full-image grating and pixel noise.
Random phase and position make every class's mean image flat grey, so a linear
model on pixels is near chance; telling class (a, b) from (b, a) needs features
that see both halves, which is where depth and width start to matter.

Deterministic: the parts and the pairing come from `seed`; the train and test
images from two separate streams of the same seed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

CHUNK = 4096  # images rendered per vectorised step (about 50 MB of float32 at 32x32x3)


@dataclass(frozen=True)
class Recipe:
    orientation: np.ndarray  # (M,) radians
    wavelength: np.ndarray  # (M,) pixels
    colour: np.ndarray  # (M, C), largest |entry| 1
    pairs: np.ndarray  # (K, 2) part indices: (left, right) per class
    sigma: float  # Gaussian envelope of a part, pixels


def make_recipe(num_classes: int, channels: int, image_size: int, seed: int) -> Recipe:
    rng = np.random.default_rng([seed, 0])
    parts = max(3, math.ceil((1 + math.sqrt(1 + 4 * num_classes)) / 2))  # smallest M with M(M-1) >= K ordered pairs
    orientation = np.pi * np.arange(parts) / parts + rng.uniform(0, np.pi / parts)
    wavelength = np.maximum(2.5, image_size * np.where(np.arange(parts) % 2 == 0, 1 / 8, 1 / 5))
    colour = rng.normal(size=(parts, channels))
    colour /= np.abs(colour).max(1, keepdims=True)
    all_pairs = np.array(list(itertools.permutations(range(parts), 2)))
    pairs = all_pairs[rng.permutation(len(all_pairs))[:num_classes]]
    return Recipe(orientation, wavelength.astype(np.float64), colour, pairs, sigma=image_size / 8)


def render(recipe: Recipe, labels: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """(N, C, S, S) uint8 images of the given classes."""
    size, channels = image_size, recipe.colour.shape[1]
    axis = np.arange(size, dtype=np.float32)
    out = np.empty((len(labels), channels, size, size), dtype=np.uint8)
    margin = min(recipe.sigma, size / 4)
    for start in range(0, len(labels), CHUNK):
        chunk = labels[start : start + CHUNK]
        n = len(chunk)
        picture = np.zeros((n, channels, size, size), dtype=np.float32)
        for side, (low, high) in enumerate(((margin, size / 2), (size / 2, size - margin))):
            part = recipe.pairs[chunk, side]
            theta = recipe.orientation[part] + rng.normal(0, np.pi / 36, n)  # +-5 degrees of jitter
            centre = (rng.uniform(low, high, n), rng.uniform(margin, size - margin, n))
            pattern = grating(axis, theta, recipe.wavelength[part], rng) * envelope(axis, *centre, recipe.sigma)
            pattern *= rng.uniform(0.6, 1.0, (n, 1, 1)).astype(np.float32)
            picture += pattern[:, None] * recipe.colour[part][:, :, None, None].astype(np.float32)
        clutter = grating(axis, rng.uniform(0, np.pi, n), rng.uniform(size / 10, size / 2.5, n), rng)
        picture += 0.2 * clutter[:, None] * rng.uniform(-1, 1, (n, channels, 1, 1)).astype(np.float32)
        picture *= 0.35
        picture += 0.5 + rng.standard_normal(picture.shape, dtype=np.float32) * 0.06
        out[start : start + n] = np.rint(np.clip(picture, 0, 1, out=picture) * 255)
    return out


def grating(axis: np.ndarray, theta: np.ndarray, wavelength: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, S, S) cos(k . (x, y) + phase) with random phase, built from 1-D factors: cos(a + b) = cos a cos b - sin a sin b."""
    phase = rng.uniform(0, 2 * np.pi, len(theta))
    k = (2 * np.pi / wavelength)[:, None]
    along_x = (k * np.cos(theta)[:, None] * axis).astype(np.float32)  # (N, S)
    along_y = (k * np.sin(theta)[:, None] * axis + phase[:, None]).astype(np.float32)
    return np.cos(along_y)[:, :, None] * np.cos(along_x)[:, None, :] - np.sin(along_y)[:, :, None] * np.sin(along_x)[:, None, :]


def envelope(axis: np.ndarray, cx: np.ndarray, cy: np.ndarray, sigma: float) -> np.ndarray:
    """(N, S, S) Gaussian bumps centred at (cx, cy): a product of two 1-D Gaussians."""
    gx = np.exp(-((axis - cx[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
    gy = np.exp(-((axis - cy[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
    return gy[:, :, None] * gx[:, None, :]


def generate(image_size: int, channels: int, num_classes: int, train_size: int, test_size: int, seed: int) -> tuple[np.ndarray, ...]:
    """(train images, train labels, test images, test labels); classes balanced to within one image."""
    recipe = make_recipe(num_classes, channels, image_size, seed)
    arrays = []
    for stream, count in ((1, train_size), (2, test_size)):
        rng = np.random.default_rng([seed, stream])
        labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)
        arrays += [render(recipe, labels, image_size, rng), labels]
    return tuple(arrays)
