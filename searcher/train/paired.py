"""The paired tests two networks' per-example validation values are compared with (search/evidence.py explains
why paired, and why these): pure arithmetic, below the search so that a trial's rungs (train/rungs.py) use the same."""

from __future__ import annotations

import math

import numpy as np


def mcnemar_p_value(wins: int, losses: int) -> float:
    """Two-sided exact McNemar test on the discordant counts (1.0 when there are none)."""
    n = wins + losses
    if n == 0:
        return 1.0
    low = min(wins, losses)
    log_half = n * math.log(0.5)
    terms = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half for k in range(low + 1)]
    top = max(terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in terms)
    return min(1.0, 2 * tail)


def paired_t_p_value(differences: np.ndarray) -> float:
    """Two-sided p-value that the mean of paired differences is zero (normal approximation: hundreds of images)."""
    n = len(differences)
    if n < 2:
        return 1.0
    spread = float(np.std(differences, ddof=1))
    if spread == 0:
        return 1.0 if float(np.mean(differences)) == 0 else 0.0
    z = float(np.mean(differences)) / (spread / math.sqrt(n))
    return math.erfc(abs(z) / math.sqrt(2))


def unpack(bits: bytes, images: int) -> np.ndarray:
    """Packed correctness bits (the trainer's `pack_bits`) -> a bool per validation image."""
    return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=images).astype(bool)


def unpack_values(packed: bytes) -> np.ndarray:
    """Per-example metric values (the trainer's `pack_values`, float32) -> float64 for the tests."""
    return np.frombuffer(packed, dtype=np.float32).astype(np.float64)
