"""Warm starts for the runners: trained weights kept by trial key, grown into a child's initial weights.

A stage names a trial's parent by key (`TrialRequest.parent`); the runner
remembers every finished trial's best-epoch weights (`TrainResult.state`, on
the CPU) and, when a child comes, grows them with `searcher.model.growth.grow`
into weights for the child's architecture that compute the parent's function.
The grown weights are seeded by the child's seed, so a warm trial is as
reproducible as a cold one. If the parent's weights are not at hand (a resumed
search whose parent finished in an earlier process) or cannot be grown, the
child trains from scratch and its record says so (`searcher.warm_start=false`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from searcher.data.batches import DeviceData
from searcher.search.trials import TrialOutcome, TrialRequest

CALIBRATION_IMAGES = 512  # training images whose statistics set a new layer's BatchNorm
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmStart:
    state: dict[str, torch.Tensor]
    notes: tuple[str, ...]  # where the growth did not preserve the function exactly, and why (none: exact)

    @property
    def note(self) -> str:
        return "; ".join(self.notes) or "exact"


class WarmStarts:
    """The trained weights of finished trials, by key, and the grown initial weights of their children."""

    def __init__(self, data: DeviceData):
        self.data = data
        self.finished: dict[str, TrialOutcome] = {}
        self._inputs: torch.Tensor | None = None

    def remember(self, outcome: TrialOutcome) -> None:
        if outcome.status == "ok" and outcome.result is not None and outcome.result.state is not None:
            self.finished[outcome.request.key] = outcome

    def calibration_inputs(self) -> torch.Tensor:
        """A fixed random sample of normalised training images (never validation or test)."""
        if self._inputs is None:
            split = self.data.train
            count = min(CALIBRATION_IMAGES, len(split))
            index = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:count].to(split.images.device)
            self._inputs = split.normalise(split.images[index]).cpu()
        return self._inputs

    def for_request(self, request: TrialRequest) -> WarmStart | None:
        """The child's grown initial weights, or None: train from scratch."""
        if request.parent is None:
            return None
        parent = self.finished.get(request.parent)
        if parent is None or parent.result is None or parent.result.state is None:
            log.warning("%s: the weights of parent trial %s are not at hand; training from scratch", request.label, request.parent)
            return None
        try:
            state, notes = request.family.grow(
                parent.request.arch,
                parent.result.state,
                request.arch,
                self.data.dataset.input_shape,
                self.data.dataset.num_classes,
                generator=torch.Generator().manual_seed(request.seed),
                inputs=self.calibration_inputs(),
            )
        except Exception as error:  # (GrowthError, or a family's own growth failing): the child still trains, from scratch
            log.warning("%s: cannot grow from parent trial %s (%s); training from scratch", request.label, request.parent, error)
            return None
        return WarmStart(state, notes)
