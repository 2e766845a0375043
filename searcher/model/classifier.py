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
from typing import Any

import torch
from torch import nn

from searcher.columns import ClassName, Column, encode
from searcher.model.cnn import CNN
from searcher.model.family import Family, Spec, build_network, family_from

DESCRIPTION_FILE = "classifier.json"  # the architecture spec and the input it takes
WEIGHTS_FILE = "classifier_weights.pt"  # a state dict of tensors only (torch.load(weights_only=True))


class Classifier(nn.Module):
    """Inputs as searcher's datasets store them -> (N, classes) logits; output i is original class `labels[i]`.
    A regression model (`target`: the training target's mean and std) returns (N,) predictions in the target's units.

    Images: uint8 (N, C, H, W) on the 0..255 scale. Tables: float32 (N, F) features, one-hot columns included
    (`feature_names` says which is which), in their own units: the model standardises them itself; `rows(frame)`
    makes them from a DataFrame of the file's own columns, as training did (`columns`)."""

    scale: torch.Tensor  # buffers (normalisation as x * scale - shift), declared for the type checker
    shift: torch.Tensor

    def __init__(
        self,
        spec: Spec,
        input_shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        labels: Sequence[int],
        family: Family | None = None,
        feature_names: Sequence[str] = (),
        class_names: Sequence[ClassName] = (),
        input_dtype: str | None = None,
        target: Sequence[float] | None = None,
        columns: Sequence[Column] = (),
    ):
        super().__init__()
        self.spec, self.family, self.input_shape = spec, family or CNN(), tuple(int(size) for size in input_shape)
        self.mean, self.std, self.labels, self.feature_names = tuple(mean), tuple(std), tuple(labels), tuple(feature_names)
        self.class_names = tuple(class_names)  # a table's: output i is the target column's value class_names[i]
        self.input_dtype = input_dtype or ("uint8" if len(self.input_shape) == 3 else "float32")  # (descriptions before tables: images)
        self.images = self.input_dtype == "uint8"
        self.target = tuple(float(x) for x in target) if target is not None else None  # regression: (mean, std) of the training target
        self.columns = tuple(columns)  # a table: how the file's columns became `feature_names` (searcher/columns.py)
        self.network = build_network(self.family, spec, self.input_shape, len(self.labels))
        # (x / 255 - mean) / std as x * scale - shift: the trainer's own arithmetic (data/batches.py), so logits match bit for bit
        std_tensor, shape = torch.tensor(self.std), (1, -1) + (1,) * (len(self.input_shape) - 1)
        self.register_buffer("scale", (1 / ((255 if self.images else 1) * std_tensor)).view(shape), persistent=False)
        self.register_buffer("shift", (torch.tensor(self.mean) / std_tensor).view(shape), persistent=False)
        self.eval()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        expected = torch.uint8 if self.images else torch.float32
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"the model takes a torch tensor; got {type(inputs).__name__} (convert with torch.from_numpy(x) or torch.tensor(x))")
        if inputs.dtype != expected:
            hint = "(convert with e.g. (x * 255).round().to(torch.uint8) for floats in 0..1)" if self.images else "(convert with .float())"
            what = "uint8 images on the 0-255 scale, as searcher's datasets store them" if self.images else "float32 rows (table features, or one-hot tokens)"
            raise TypeError(f"the model takes {what}; got {inputs.dtype} {hint}")
        if tuple(inputs.shape[1:]) != self.input_shape or inputs.dim() != len(self.input_shape) + 1:
            raise ValueError(f"the model takes inputs of shape (N, {', '.join(map(str, self.input_shape))}); got {tuple(inputs.shape)}")
        outputs = self.network(inputs.float() * self.scale - self.shift)
        if self.target is not None:  # the network predicts the standardised target (data/batches.py)
            return outputs[:, 0] * self.target[1] + self.target[0]
        return outputs

    def rows(self, frame: Any) -> torch.Tensor:
        """A table's new rows (a pandas DataFrame with the training file's columns; others, the target's among them,
        ignored) as the float32 features this model takes: numbers as they are, gaps the training median, categories
        one-hot as in training. A value training never saw, or a missing column, raises ValueError naming it."""
        if not self.columns:
            raise ValueError("rows() encodes a table's columns; this model was not searched on a table (+dataset=table), so give it tensors.")
        return torch.from_numpy(encode(self.columns, frame))

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def size(self) -> int:
        """Image side in pixels (0 for a table)."""
        return self.input_shape[-1] if self.images else 0

    def description(self) -> dict:
        return {
            "arch": self.spec.to_dict(),
            "family": self.family.identity(),
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "labels": list(self.labels),
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "input_dtype": self.input_dtype,
            "columns": [column.to_dict() for column in self.columns],
        } | ({"target": list(self.target)} if self.target is not None else {})

    @classmethod
    def from_description(cls, data: dict) -> Classifier:
        """Rebuilds the model a description names; a family of your own is imported by its class path (installed, or on PYTHONPATH)."""
        family = family_from(data["family"]) if "family" in data else CNN()  # (descriptions before families: the cnn)
        shape = data.get("input_shape") or (data["channels"], data["size"], data["size"])
        spec = family.spec_from_dict(data["arch"])
        return cls(
            spec, shape, data["mean"], data["std"], data["labels"], family, data.get("feature_names", ()), data.get("class_names", ()),
            data.get("input_dtype"), data.get("target"), tuple(Column.from_dict(column) for column in data.get("columns", ())),
        )


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
    state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or not all(key.endswith(".bias") for key in missing):
        model.load_state_dict(state)  # raises, naming what does not match
    with torch.no_grad():  # a bias the saved network did not have (an mlp saved before MLP.revision 1): zero is that network
        for key in missing:
            model.get_parameter(key).zero_()
    return model.eval()
