"""The searched network as users get it: images in as searcher's datasets store them, logits out.

A trained `Network` expects images normalised with its dataset's per-channel mean and
std, which a user of the registered model cannot guess (searcher stores digits as
uint8 0..255; scikit-learn hands them out as floats 0..16). `Classifier` carries that
step, the input shape it was trained on and the original class of each output, and it
refuses input it would silently get wrong. `save_classifier`/`load_classifier` write a
JSON description and a weights-only state dict: rebuilding one needs neither pickle
nor torch.export, so it is safe to load and takes milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from searcher.model.build import build_model
from searcher.model.spec import ArchSpec

DESCRIPTION_FILE = "classifier.json"  # the architecture spec and the input it takes
WEIGHTS_FILE = "classifier_weights.pt"  # a state dict of tensors only (torch.load(weights_only=True))


class Classifier(nn.Module):
    """uint8 images (N, C, H, W), 0..255 -> (N, classes) logits; output i is original class `labels[i]`."""

    scale: torch.Tensor  # buffers (normalisation as x * scale - shift), declared for the type checker
    shift: torch.Tensor

    def __init__(
        self,
        spec: ArchSpec,
        channels: int,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        labels: Sequence[int],
    ):
        super().__init__()
        self.spec, self.channels, self.size = spec, channels, size
        self.mean, self.std, self.labels = tuple(mean), tuple(std), tuple(labels)
        self.network = build_model(spec, channels, len(self.labels))
        # (x / 255 - mean) / std as x * scale - shift: the trainer's own arithmetic (data/batches.py), so logits match bit for bit
        std_tensor = torch.tensor(self.std)
        self.register_buffer("scale", (1 / (255 * std_tensor)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", (torch.tensor(self.mean) / std_tensor).view(1, -1, 1, 1), persistent=False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(
                f"the model takes uint8 images on the 0-255 scale, as searcher's datasets store them; got {images.dtype} "
                "(convert with e.g. (x * 255).round().to(torch.uint8) for floats in 0..1)"
            )
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.channels, self.size, self.size):
            raise ValueError(f"the model takes images of shape (N, {self.channels}, {self.size}, {self.size}); got {tuple(images.shape)}")
        return self.network(images.float() * self.scale - self.shift)

    def description(self) -> dict:
        return {
            "arch": self.spec.to_dict(),
            "channels": self.channels,
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "labels": list(self.labels),
        }

    @classmethod
    def from_description(cls, data: dict) -> Classifier:
        return cls(ArchSpec.from_dict(data["arch"]), data["channels"], data["size"], data["mean"], data["std"], data["labels"])


def save_classifier(model: Classifier, folder: Path) -> list[Path]:
    """The two files that rebuild `model`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    description, weights = folder / DESCRIPTION_FILE, folder / WEIGHTS_FILE
    description.write_text(json.dumps(model.description(), indent=1))
    torch.save({key: value.detach().cpu() for key, value in model.state_dict().items()}, weights)
    return [description, weights]


def load_classifier(folder: Path) -> Classifier:
    """The Classifier saved in `folder`, on the CPU and in eval mode; the weights are read without unpickling code."""
    model = Classifier.from_description(json.loads((folder / DESCRIPTION_FILE).read_text()))
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval()
