"""CUDA graphs (searcher/train/steps.py): a replayed step computes what the eager step computes. Needs a GPU;
CI has none, so these run on the GPU machine (scripts/gpu_measure.sh runs them first)."""

from dataclasses import replace

import pytest
import torch

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.model import LayoutPolicy, build_model
from searcher.train import StabilityRule, TrainSettings, train_trial
from searcher.train.steps import WARM_UP_CALLS, EagerStep, GraphedStep
from searcher.train.trainer import make_optimizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
BATCH = 64


def step_on_cuda(optimizer: str, dropout: float = 0.0, seed: int = 0, own_generator: bool = False) -> EagerStep:
    spec = LayoutPolicy(input_size=16).baseline(2, 16).with_dropout(dropout)
    model = build_model(spec, 3, 10, seed=seed).to("cuda", memory_format=torch.channels_last)
    if own_generator:  # as the trainer gives every trial (model/build.py)
        model.dropout.generator = torch.Generator("cuda").manual_seed(seed)
    settings = TrainSettings(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3, batch_size=64, weight_decay=5e-4)  # type: ignore[arg-type]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return EagerStep(model.train(), make_optimizer(model, settings, graphed=True), autocast, label_smoothing=0.1)


def batches(count: int, size: int = BATCH) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator(device="cuda").manual_seed(1)
    return [
        (
            torch.randn(size, 3, 16, 16, device="cuda", generator=generator).contiguous(memory_format=torch.channels_last),
            torch.randint(0, 10, (size,), device="cuda", generator=generator),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_replayed_steps_compute_what_eager_steps_compute(optimizer):
    """Same start, same batches: the graphed run's losses and weights follow the eager run's, through a changed
    learning rate (captured again) and a short last batch (run eagerly)."""
    eager, graphed_eager = step_on_cuda(optimizer), step_on_cuda(optimizer)
    graphed = GraphedStep(graphed_eager, BATCH)
    data = batches(12) + batches(1, size=BATCH // 3)
    for index, (images, labels) in enumerate(data):
        if index == 8:  # the plateau schedule halves the rate
            for step in (eager, graphed_eager):
                for group in step.optimizer.param_groups:
                    group["lr"] *= 0.5
        expected, got = eager(images, labels).item(), graphed(images, labels).item()
        assert got == pytest.approx(expected, rel=2e-3), f"step {index}"
    assert graphed.eager_calls == WARM_UP_CALLS and graphed.captures == 2  # the first rate, then the halved one
    for name, tensor in eager.model.state_dict().items():
        torch.testing.assert_close(graphed_eager.model.state_dict()[name].float(), tensor.float(), rtol=2e-2, atol=2e-3, msg=name)


@pytest.mark.parametrize("own_generator", [False, True])
def test_dropout_draws_new_masks_on_every_replay(own_generator):
    """A graph replays its kernels, not their random numbers: dropout masks differ from replay to replay, drawn
    from the device's generator or from the trial's own (registered with the graph)."""
    step = step_on_cuda("sgd", dropout=0.5, own_generator=own_generator)
    graphed = GraphedStep(step, BATCH)
    (images, labels), = batches(1)
    for group in step.optimizer.param_groups:
        group["lr"] = 0.0  # the weights stay put: only the masks can change the loss
    losses = [graphed(images, labels).item() for _ in range(WARM_UP_CALLS + 4)]
    replayed = losses[WARM_UP_CALLS:]
    assert graphed.captures == 1 and len(set(replayed)) == len(replayed)


def test_a_graphed_trial_learns_as_an_eager_one():
    """The whole trainer, graphs on and off, on digits on the GPU: the same verdict territory and accuracy."""
    data = DeviceData(load_dataset(DatasetOptions("digits")), torch.device("cuda"))
    spec = LayoutPolicy(input_size=8).baseline(2, 16)
    settings = TrainSettings(optimizer="sgd", lr=0.05, batch_size=64, stability=StabilityRule(window=3, min_epochs=6, max_epochs=6))
    eager = train_trial(spec, data, replace(settings, cuda_graphs=False), seed=0)
    graphed = train_trial(spec, data, replace(settings, cuda_graphs=True), seed=0)
    assert len(graphed.history) == len(eager.history) == 6
    assert graphed.history[0].train_loss == pytest.approx(eager.history[0].train_loss, rel=0.02)
    assert abs(graphed.best_val_acc - eager.best_val_acc) < 0.03 and graphed.best_val_acc > 0.9
