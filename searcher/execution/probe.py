"""The transfer stage's work: probe a trained trial's frozen features on the target's data."""

from __future__ import annotations

from searcher.data.batches import DeviceData
from searcher.execution.local import Work
from searcher.search.trials import TrialRequest
from searcher.train.linear_probe import ProbeSettings, probe_trial
from searcher.train.trainer import EpochCallback, TrainResult


def probe_work(settings: ProbeSettings | None = None) -> Work:
    """A Work for LocalRunner: each transfer request carries the weights it probes."""
    settings = settings or ProbeSettings()

    def probe(data: DeviceData, request: TrialRequest, on_epoch: EpochCallback, checkpoint: object = None, initial_state: object = None) -> TrainResult:
        # probes are short (no checkpoints) and start from the probed trial's weights (request.source_state)
        if request.source_state is None:
            raise ValueError(f"{request.label}: the source trial's weights are not in memory; nothing to probe")
        return probe_trial(request.arch, request.source_state, data, settings, request.seed, on_epoch=on_epoch)

    return probe
