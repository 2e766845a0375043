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


def sentence_count(vocabulary: int, levels: int, branching: int, rules: int) -> int:
    """How many sentences a grammar has: each class, times a rule for each of its 1 + branching + ... expansions."""
    return vocabulary * rules ** ((branching**levels - 1) // (branching - 1))


def grammar(
    vocabulary: int, levels: int, branching: int, rules: int, train_size: int, test_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sentences of a random hierarchical grammar (`+dataset=grammar`); the class is the symbol they were derived from.

    The random hierarchy model of Cagnetta et al., "How deep neural networks learn compositional data" (2024): at
    each of `levels` levels, each of `vocabulary` symbols has `rules` ways to expand into `branching` symbols of the
    level below (no two symbols share an expansion, so a sentence has one derivation); a class, one top symbol,
    expands level by level into a sentence of branching^levels tokens. Reading the class back means undoing the
    levels one at a time, so depth matters (on two of three grammars measured, one layer cannot: docs/datasets.md);
    more rules make it harder (at most vocabulary^(branching-1), so no expansion is shared). Same one-hot format as
    `generate`; labels 0..vocabulary-1. Train and test sentences are distinct draws from one grammar (`seed` fixes
    both): a test sentence is never a training one, so memorising scores nothing (at the default sizes, 6% of
    independent draws would repeat one).
    """
    rng = np.random.default_rng(seed)
    expansions = []  # per level, top first: (vocabulary, rules, branching) symbols of the level below
    for _ in range(levels):
        chosen = rng.choice(vocabulary**branching, size=vocabulary * rules, replace=False)
        symbols = np.stack([chosen // vocabulary**place % vocabulary for place in range(branching)], axis=1)
        expansions.append(symbols.reshape(vocabulary, rules, branching))
    count, available = train_size + test_size, sentence_count(vocabulary, levels, branching, rules)
    if count > available:
        raise ValueError(f"{count} distinct sentences asked for; the grammar has {available}")
    sentences, labels = np.empty((0, branching**levels), dtype=np.int64), np.empty(0, dtype=np.int64)
    while len(labels) < count:  # distinct sentences, in the order drawn: no test sentence is also a training one
        drawn = rng.integers(0, vocabulary, size=count)
        sentence = drawn[:, None]
        for level in expansions:
            sentence = level[sentence, rng.integers(0, rules, size=sentence.shape)].reshape(count, -1)
        both, both_labels = np.concatenate([sentences, sentence]), np.concatenate([labels, drawn])
        first = np.sort(np.unique(both, axis=0, return_index=True)[1])[:count]
        sentences, labels = both[first], both_labels[first]
    one_hot = np.eye(vocabulary, dtype=np.float32)[sentences]
    return one_hot[:train_size], labels[:train_size], one_hot[train_size:], labels[train_size:]
