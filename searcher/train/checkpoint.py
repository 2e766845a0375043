"""Within-trial checkpoints: a long trial interrupted mid-way resumes from its last epoch, not epoch 0.

Everything that decides what the next epoch computes is saved (weights, optimizer
and scheduler state, both random generators, the curves so far, the best
weights), so a resumed trial continues exactly as the uninterrupted one would.
Files are written to a temporary name and renamed, and read back with
`weights_only=True`: tensors and plain containers, never arbitrary pickles.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class TrialCheckpointError(Exception):
    """A trial checkpoint file is unreadable; the message names the file and what to do."""


@dataclass
class Checkpointing:
    path: Path
    every_seconds: float = 60.0  # at most one save per this much wall time: free for short trials
    last_saved: float = field(default_factory=time.perf_counter)

    def due(self) -> bool:
        return time.perf_counter() - self.last_saved >= self.every_seconds

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".part")
        torch.save(state, partial)
        os.replace(partial, self.path)  # atomic: a kill never leaves half a checkpoint under the real name
        self.last_saved = time.perf_counter()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise TrialCheckpointError(
                f"trial checkpoint {self.path} is unreadable or was tampered with ({type(error).__name__}: {error}); "
                "delete it to retrain that trial from its first epoch."
            ) from None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
