"""A generated sequence task where depth matters (`+dataset=sequences`), offline like the synthetic images.

Each example is a sequence of `length` tokens from a vocabulary of `vocabulary` (token 0 is a marker, the
others content); the marker appears exactly once, and the class is the content token right after it. Reading
that takes two steps (find where the marker is; look one position further), so a network needs depth or a lot
of width: two attention layers read it quickly (the "induction" pattern of transformers), one only after a long
plateau near chance (docs/design.md §2).

Tokens are stored one-hot, float32 (N, length, vocabulary): the input shape then carries the vocabulary, so a
family builds its embedding from `input_shape` alone, and the final model takes the same one-hot rows. Your own
sequences in this format: a float32 array (N, length, vocabulary) of one-hot rows, with labels 0..k-1.
"""

from __future__ import annotations

import numpy as np


def generate(length: int, vocabulary: int, train_size: int, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train tokens, labels, test tokens, labels); tokens one-hot (N, length, vocabulary) float32, labels 0..vocabulary-2."""
    rng = np.random.default_rng(seed)
    count = train_size + test_size
    tokens = rng.integers(1, vocabulary, size=(count, length))
    marker = rng.integers(0, length - 1, size=count)  # the marker's position: never last, a token always follows it
    tokens[np.arange(count), marker] = 0
    labels = tokens[np.arange(count), marker + 1] - 1
    one_hot = np.eye(vocabulary, dtype=np.float32)[tokens]
    return one_hot[:train_size], labels[:train_size], one_hot[train_size:], labels[train_size:]
