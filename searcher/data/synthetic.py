"""A procedurally generated image-classification dataset of any shape and class count.

For tests and GPU throughput runs where no real data is at hand, and, with
`difficulty` > 0, as a benchmark where the architecture matters.

difficulty 0 (the default): a class is an ordered pair of oriented textures
("parts": a Gabor patch with its own orientation, wavelength and colour): the
first part sits in the left half of the image, the second in the right half,
each at a random position with a random phase and contrast, over a random
full-image grating and pixel noise. Random phase and position make every
class's mean image flat grey, so a linear model on pixels is near chance;
telling class (a, b) from (b, a) needs features that see both halves.

difficulty in (0, 1]: relational classes. A class is an unordered pair of parts
{a, b} and an arrangement: b half the image away from a, horizontally or
vertically, on a canvas that wraps around (a torus, so every part's position is
uniform and says nothing about the class: only where the two parts are
relative to each other does). Seeing that relation takes a receptive field of
half the image; the baseline network's is about 12 pixels, so at 32x32 and
above it needs depth. Around the two parts lie round(7 x difficulty) distractor
parts: orientations half-way between the parts' own, any colour, anywhere,
which the network has to learn to ignore (width). Parts come from a vocabulary
of about min(num_classes, 10), more where that many cannot make enough pairs
(for 10 classes: 10 parts 18 degrees apart), so telling them apart takes many
filters. difficulty 1 is calibrated with scripts/calibrate_synthetic.py
(docs/datasets.md, docs/benchmarks/calibrate_synthetic*.json).

Deterministic: the parts and the classes come from `seed`; the train and test
images from two separate streams of the same seed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

CHUNK = 4096  # images rendered per vectorised step (about 50 MB of float32 at 32x32x3)
MAX_DISTRACTORS = 7  # distractor parts per image at difficulty 1
PART_VOCABULARY = 10  # relational classes: up to this many parts, more only where they cannot make enough pairs


@dataclass(frozen=True)
class Recipe:
    orientation: np.ndarray  # (M,) radians
    wavelength: np.ndarray  # (M,) pixels
    colour: np.ndarray  # (M, C), largest |entry| 1
    pairs: np.ndarray  # (K, 2) part indices: (left, right) per class
    sigma: float  # Gaussian envelope of a part, pixels


def part_looks(parts: int, channels: int, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each part's orientation (evenly spread, randomly rotated), wavelength (two sizes, alternating) and colour."""
    orientation = np.pi * np.arange(parts) / parts + rng.uniform(0, np.pi / parts)
    wavelength = np.maximum(2.5, image_size * np.where(np.arange(parts) % 2 == 0, 1 / 8, 1 / 5))
    colour = rng.normal(size=(parts, channels))
    colour /= np.abs(colour).max(1, keepdims=True)
    return orientation, wavelength, colour


def make_recipe(num_classes: int, channels: int, image_size: int, seed: int) -> Recipe:
    rng = np.random.default_rng([seed, 0])
    parts = max(3, math.ceil((1 + math.sqrt(1 + 4 * num_classes)) / 2))  # smallest M with M(M-1) >= K ordered pairs
    orientation, wavelength, colour = part_looks(parts, channels, image_size, rng)
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


def generate(
    image_size: int, channels: int, num_classes: int, train_size: int, test_size: int, seed: int, difficulty: float = 0.0
) -> tuple[np.ndarray, ...]:
    """(train images, train labels, test images, test labels); classes balanced to within one image.

    difficulty 0: ordered left/right pairs (the original images, unchanged); (0, 1]: relational
    classes with round(7 x difficulty) distractors per image (see the module docstring).
    """
    if not 0 <= difficulty <= 1:
        raise ValueError(f"difficulty={difficulty!r} is out of range; allowed: a number from 0 to 1.")
    if difficulty == 0:
        recipe = make_recipe(num_classes, channels, image_size, seed)
        draw = render
    else:
        recipe = make_relational_recipe(num_classes, channels, image_size, seed, difficulty)  # type: ignore[assignment]
        draw = render_relational  # type: ignore[assignment]
    arrays = []
    for stream, count in ((1, train_size), (2, test_size)):
        rng = np.random.default_rng([seed, stream])
        labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)
        arrays += [draw(recipe, labels, image_size, rng), labels]
    return tuple(arrays)


@dataclass(frozen=True)
class RelationalRecipe:
    orientation: np.ndarray  # (M,) radians; distractors sit half-way between these
    wavelength: np.ndarray  # (M,) pixels
    colour: np.ndarray  # (M, C), largest |entry| 1
    classes: np.ndarray  # (K, 3): part a, part b, arrangement (0: b half the image right of a, 1: below)
    sigma: float  # Gaussian envelope of a part, pixels
    distractors: int  # distractor parts per image


def make_relational_recipe(num_classes: int, channels: int, image_size: int, seed: int, difficulty: float) -> RelationalRecipe:
    rng = np.random.default_rng([seed, 0])
    pairs_needed = math.ceil(num_classes / 2)  # each unordered pair makes two classes: horizontal and vertical
    fewest = math.ceil((1 + math.sqrt(1 + 8 * pairs_needed)) / 2)  # smallest M with M(M-1)/2 >= pairs
    parts = max(fewest, min(2 * pairs_needed, PART_VOCABULARY))
    orientation, wavelength, colour = part_looks(parts, channels, image_size, rng)
    pairs = np.array(list(itertools.combinations(range(parts), 2)))
    pairs = pairs[rng.permutation(len(pairs))[:pairs_needed]]
    classes = np.array([(a, b, arrangement) for a, b in pairs for arrangement in (0, 1)])[:num_classes]
    return RelationalRecipe(
        orientation,
        wavelength.astype(np.float64),
        colour,
        classes,
        sigma=image_size / 8,
        distractors=round(MAX_DISTRACTORS * difficulty),
    )


def render_relational(recipe: RelationalRecipe, labels: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """(N, C, S, S) uint8 images of the given relational classes, on a wrap-around canvas.

    Every pattern (a Gabor part, or the background grating) is a sum of two products of 1-D
    factors, cos(ax) gx cos(ay) gy - sin(ax) gx sin(ay) gy, so an image is one small batched
    matrix product: (colour x row factors) @ (column factors), over all patterns at once.
    """
    size, channels = image_size, recipe.colour.shape[1]
    parts = len(recipe.orientation)
    axis = np.arange(size, dtype=np.float64)
    out = np.empty((len(labels), channels, size, size), dtype=np.uint8)
    for start in range(0, len(labels), CHUNK):
        chunk = labels[start : start + CHUNK]
        n = len(chunk)
        a, b, arrangement = recipe.classes[chunk].T
        swap = rng.random(n) < 0.5  # which of the pair sits at the anchor: the class is the unordered pair
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        x, y = rng.uniform(0, size, n), rng.uniform(0, size, n)
        centres_x = [x, (x + np.where(arrangement == 0, size / 2, 0)) % size]
        centres_y = [y, (y + np.where(arrangement == 1, size / 2, 0)) % size]
        theta = [recipe.orientation[a], recipe.orientation[b]]
        wavelength = [recipe.wavelength[a], recipe.wavelength[b]]
        colour = [recipe.colour[a], recipe.colour[b]]
        for _ in range(recipe.distractors):
            theta.append(recipe.orientation[rng.integers(0, parts, n)] + np.pi / (2 * parts))
            wavelength.append(recipe.wavelength[rng.integers(0, parts, n)])
            random_colour = rng.normal(size=(n, channels))
            colour.append(random_colour / np.abs(random_colour).max(1, keepdims=True))
            centres_x.append(rng.uniform(0, size, n))
            centres_y.append(rng.uniform(0, size, n))
        rows, columns, colours = [], [], []
        for k in range(len(theta)):
            angle = theta[k] + rng.normal(0, np.pi / 36, n)  # +-5 degrees of jitter
            frequency = (2 * np.pi / wavelength[k])[:, None]
            dx, dy = wrapped(axis, centres_x[k], size), wrapped(axis, centres_y[k], size)
            phase_x = frequency * np.cos(angle)[:, None] * dx + rng.uniform(0, 2 * np.pi, n)[:, None]
            phase_y = frequency * np.sin(angle)[:, None] * dy
            gx, gy = np.exp(-(dx**2) / (2 * recipe.sigma**2)), np.exp(-(dy**2) / (2 * recipe.sigma**2))
            columns += [np.cos(phase_x) * gx, np.sin(phase_x) * gx]
            rows += [np.cos(phase_y) * gy, -np.sin(phase_y) * gy]
            contrast = rng.uniform(0.6, 1.0, (n, 1))
            colours += [colour[k] * contrast] * 2
        # the background grating, as in difficulty 0: cos(kx x + ky y + phase), one random weight per channel
        angle, frequency = rng.uniform(0, np.pi, n), 2 * np.pi / rng.uniform(size / 10, size / 2.5, n)
        phase_x = frequency[:, None] * np.cos(angle)[:, None] * axis + rng.uniform(0, 2 * np.pi, n)[:, None]
        phase_y = frequency[:, None] * np.sin(angle)[:, None] * axis
        columns += [np.cos(phase_x), np.sin(phase_x)]
        rows += [np.cos(phase_y), -np.sin(phase_y)]
        colours += [0.2 * rng.uniform(-1, 1, (n, channels))] * 2
        left = (
            np.stack(colours, 2).astype(np.float32)[:, :, None, :] * np.stack(rows, 2).astype(np.float32)[:, None, :, :]
        )  # (N, C, S, T)
        picture = np.matmul(left.reshape(n, channels * size, -1), np.stack(columns, 1).astype(np.float32))
        picture = picture.reshape(n, channels, size, size)
        picture *= 0.35
        picture += 0.5 + rng.standard_normal(picture.shape, dtype=np.float32) * 0.06
        out[start : start + n] = np.rint(np.clip(picture, 0, 1, out=picture) * 255)
    return out


def wrapped(axis: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """(N, S) signed distance from each centre along one axis of a wrap-around canvas, in [-S/2, S/2)."""
    return (axis - centre[:, None] + size / 2) % size - size / 2
