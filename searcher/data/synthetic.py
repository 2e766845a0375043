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
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK = 4096  # images rendered per vectorised step (about 50 MB of float32 at 32x32x3)
MAX_DISTRACTORS = 7  # distractor parts per image at difficulty 1
PART_VOCABULARY = 10  # relational classes: up to this many parts, more only where they cannot make enough pairs
MAX_PAINTERS = 8  # threads painting chunks; drawing the random numbers, one stream in order, bounds what more would add


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
    margin = min(recipe.sigma, size / 4)

    def draw(chunk: np.ndarray) -> tuple:
        """The chunk's random numbers, drawn in the order the images were always drawn in."""
        n = len(chunk)
        sides = []
        for side, (low, high) in enumerate(((margin, size / 2), (size / 2, size - margin))):
            jitter = rng.normal(0, np.pi / 36, n)  # +-5 degrees
            centre_x, centre_y = rng.uniform(low, high, n), rng.uniform(margin, size - margin, n)
            phase = rng.uniform(0, 2 * np.pi, n)
            sides.append((recipe.pairs[chunk, side], jitter, centre_x, centre_y, phase, rng.uniform(0.6, 1.0, (n, 1, 1))))
        clutter = (rng.uniform(0, np.pi, n), rng.uniform(size / 10, size / 2.5, n), rng.uniform(0, 2 * np.pi, n))
        weights = rng.uniform(-1, 1, (n, channels, 1, 1))
        return sides, clutter, weights, rng.standard_normal((n, channels, size, size), dtype=np.float32)

    def paint(drawn: tuple) -> np.ndarray:
        sides, clutter, weights, noise = drawn
        picture = np.zeros(noise.shape, dtype=np.float32)
        for part, jitter, centre_x, centre_y, phase, contrast in sides:
            pattern = grating(axis, recipe.orientation[part] + jitter, recipe.wavelength[part], phase)
            pattern *= envelope(axis, centre_x, centre_y, recipe.sigma)
            pattern *= contrast.astype(np.float32)
            picture += pattern[:, None] * recipe.colour[part][:, :, None, None].astype(np.float32)
        picture += 0.2 * grating(axis, *clutter)[:, None] * weights.astype(np.float32)
        picture *= 0.35
        picture += 0.5 + noise * 0.06
        return np.rint(np.clip(picture, 0, 1, out=picture) * 255)

    return in_parallel(labels, (channels, size, size), draw, paint)


def in_parallel(labels: np.ndarray, shape: tuple[int, int, int], draw: Callable[[np.ndarray], Any], paint: Callable[[Any], np.ndarray]) -> np.ndarray:
    """(N, *shape) uint8 images, CHUNK at a time: each chunk's random numbers drawn here, in order (one stream:
    the images do not depend on how many threads paint them), and painted by a pool of threads (numpy's array
    arithmetic leaves the interpreter's lock), a few chunks ahead at most (each holds ~50 MB of noise)."""
    out = np.empty((len(labels), *shape), dtype=np.uint8)
    painters = max(1, min(MAX_PAINTERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

    def paint_into(start: int, drawn: Any) -> None:
        out[start : start + CHUNK] = paint(drawn)

    with ThreadPoolExecutor(painters) as pool:
        pending: deque[Future] = deque()
        for start in range(0, len(labels), CHUNK):
            drawn = draw(labels[start : start + CHUNK])
            pending.append(pool.submit(paint_into, start, drawn))
            if len(pending) > painters:
                pending.popleft().result()
        for future in pending:
            future.result()
    return out


def grating(axis: np.ndarray, theta: np.ndarray, wavelength: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """(N, S, S) cos(k . (x, y) + phase), built from 1-D factors: cos(a + b) = cos a cos b - sin a sin b."""
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

    def draw(chunk: np.ndarray) -> tuple:
        """The chunk's random numbers, drawn in the order the images were always drawn in."""
        n = len(chunk)
        swap = rng.random(n) < 0.5  # which of the pair sits at the anchor: the class is the unordered pair
        anchor = (rng.uniform(0, size, n), rng.uniform(0, size, n))
        distractors = []
        for _ in range(recipe.distractors):
            looks = (rng.integers(0, parts, n), rng.integers(0, parts, n), rng.normal(size=(n, channels)))
            distractors.append((*looks, rng.uniform(0, size, n), rng.uniform(0, size, n)))
        patterns = [(rng.normal(0, np.pi / 36, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(0.6, 1.0, (n, 1))) for _ in range(2 + recipe.distractors)]
        background = (rng.uniform(0, np.pi, n), rng.uniform(size / 10, size / 2.5, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 1, (n, channels)))
        noise = rng.standard_normal((n, channels, size, size), dtype=np.float32)
        return chunk, swap, anchor, distractors, patterns, background, noise

    def paint(drawn: tuple) -> np.ndarray:
        chunk, swap, (x, y), distractors, patterns, background, noise = drawn
        n = len(chunk)
        a, b, arrangement = recipe.classes[chunk].T
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        centres_x = [x, (x + np.where(arrangement == 0, size / 2, 0)) % size]
        centres_y = [y, (y + np.where(arrangement == 1, size / 2, 0)) % size]
        theta = [recipe.orientation[a], recipe.orientation[b]]
        wavelength = [recipe.wavelength[a], recipe.wavelength[b]]
        colour = [recipe.colour[a], recipe.colour[b]]
        for which_orientation, which_wavelength, random_colour, centre_x, centre_y in distractors:  # half-way orientations, any colour
            theta.append(recipe.orientation[which_orientation] + np.pi / (2 * parts))
            wavelength.append(recipe.wavelength[which_wavelength])
            colour.append(random_colour / np.abs(random_colour).max(1, keepdims=True))
            centres_x.append(centre_x)
            centres_y.append(centre_y)
        rows, columns, colours = [], [], []
        for k, (jitter, phase, contrast) in enumerate(patterns):
            angle = theta[k] + jitter  # +-5 degrees of jitter
            frequency = (2 * np.pi / wavelength[k])[:, None]
            dx, dy = wrapped(axis, centres_x[k], size), wrapped(axis, centres_y[k], size)
            phase_x = frequency * np.cos(angle)[:, None] * dx + phase[:, None]
            phase_y = frequency * np.sin(angle)[:, None] * dy
            gx, gy = np.exp(-(dx**2) / (2 * recipe.sigma**2)), np.exp(-(dy**2) / (2 * recipe.sigma**2))
            columns += [np.cos(phase_x) * gx, np.sin(phase_x) * gx]
            rows += [np.cos(phase_y) * gy, -np.sin(phase_y) * gy]
            colours += [colour[k] * contrast] * 2
        # the background grating, as in difficulty 0: cos(kx x + ky y + phase), one random weight per channel
        angle, background_wavelength, phase, weights = background
        frequency = 2 * np.pi / background_wavelength
        phase_x = frequency[:, None] * np.cos(angle)[:, None] * axis + phase[:, None]
        phase_y = frequency[:, None] * np.sin(angle)[:, None] * axis
        columns += [np.cos(phase_x), np.sin(phase_x)]
        rows += [np.cos(phase_y), -np.sin(phase_y)]
        colours += [0.2 * weights] * 2
        left = (
            np.stack(colours, 2).astype(np.float32)[:, :, None, :] * np.stack(rows, 2).astype(np.float32)[:, None, :, :]
        )  # (N, C, S, T)
        picture = np.matmul(left.reshape(n, channels * size, -1), np.stack(columns, 1).astype(np.float32))
        picture = picture.reshape(n, channels, size, size)
        picture *= 0.35
        picture += 0.5 + noise * 0.06
        return np.rint(np.clip(picture, 0, 1, out=picture) * 255)

    return in_parallel(labels, (channels, size, size), draw, paint)


def wrapped(axis: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """(N, S) signed distance from each centre along one axis of a wrap-around canvas, in [-S/2, S/2)."""
    return (axis - centre[:, None] + size / 2) % size - size / 2
