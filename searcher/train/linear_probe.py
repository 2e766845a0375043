"""A linear probe: how good are a trained network's frozen features on another dataset?

The network's pooled features (`Network.features`) are computed once for the
target's train and validation splits; a linear head (multinomial logistic
regression on standardised features, full-batch L-BFGS with an L2 penalty) is
then fitted on them, a few L-BFGS iterations per "epoch", until its curves are
stable like any trial's, and scored on the target's validation split.
Only the head trains, so a probe costs two forward passes plus milliseconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from searcher.data.batches import DeviceData, DeviceSplit
from searcher.model.build import Network, build_model
from searcher.model.spec import ArchSpec
from searcher.train.stability import Behavior, StabilityRule, judge
from searcher.train.trainer import EpochCallback, EpochRecord, TrainResult


class ProbeError(ValueError):
    """The trained network cannot read the target's images (e.g. 1 channel vs 3)."""


@dataclass(frozen=True)
class ProbeSettings:
    l2: float = 1e-3  # penalty on the head's weights: a regularised logistic regression
    iterations_per_epoch: int = 5  # L-BFGS iterations between two evaluations
    stability: StabilityRule = StabilityRule(
        window=3, min_epochs=5, max_epochs=40, loss_tolerance=0.01, metric_tolerance=0.002, overfit_margin=0.05
    )


def network_from(spec: ArchSpec, state: dict[str, torch.Tensor], channels: int) -> Network:
    """The trained network, its head sized from the weights (the source's classes), in eval mode."""
    source_classes, source_channels = state["head.weight"].shape[0], state["blocks.0.body.0.weight"].shape[1]
    if source_channels != channels:
        raise ProbeError(f"the network was trained on {source_channels}-channel images, the target has {channels} channels")
    model = build_model(spec, channels, source_classes)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def features_of(model: Network, split: DeviceSplit) -> torch.Tensor:
    """(N, width of the last block) pooled features, in evaluation mode."""
    return torch.cat([model.features(images).float() for images, _ in split.batches(1024)])


def probe_trial(
    spec: ArchSpec,
    state: dict[str, torch.Tensor],
    data: DeviceData,
    settings: ProbeSettings,
    seed: int,
    *,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a linear head on frozen features of `data` (the target); best_val_acc is the transfer accuracy."""
    started = time.perf_counter()
    device = data.device
    torch.manual_seed(seed)
    model = network_from(spec, state, data.dataset.channels).to(device)
    train_x, val_x = features_of(model, data.train), features_of(model, data.val)
    extract_seconds = time.perf_counter() - started
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    train_y, val_y = data.train.labels, data.val.labels

    head = nn.Linear(train_x.shape[1], data.dataset.num_classes).to(device)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=settings.iterations_per_epoch, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(head(train_x), train_y) + settings.l2 * head.weight.square().sum()
        loss.backward()
        return loss

    history: list[EpochRecord] = []
    losses: list[float] = []
    scores: list[float] = []
    best_val_acc, best_epoch = -math.inf, 0
    behavior: Behavior | None = None
    stopped_early = False
    while behavior is None:
        optimizer.step(objective)
        with torch.no_grad():
            train_loss = nn.functional.cross_entropy(head(train_x), train_y).item()
            logits = head(val_x)
            val_loss = nn.functional.cross_entropy(logits, val_y).item()
            val_acc = (logits.argmax(1) == val_y).float().mean().item()
        record = EpochRecord(len(history) + 1, train_loss, val_loss, val_acc, 1.0, time.perf_counter() - started)
        history.append(record)
        losses.append(train_loss)
        scores.append(val_acc)
        if val_acc > best_val_acc:
            best_val_acc, best_epoch = val_acc, record.epoch
        behavior = judge(settings.stability, losses, scores)
        if behavior is None and on_epoch is not None and on_epoch(record):
            behavior, stopped_early = "pruned", True
    return TrainResult(
        behavior=behavior,
        history=tuple(history),
        best_val_acc=max(best_val_acc, 0.0),
        best_epoch=best_epoch,
        train_seconds=time.perf_counter() - started,
        images_per_second=(len(train_y) + len(val_y)) / max(extract_seconds, 1e-9),  # feature extraction
        stopped_early=stopped_early,
    )
