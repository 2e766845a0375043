"""execution=threads: trials side by side in this process's threads train exactly as each would alone; a stop ends them."""

import threading
import time
from dataclasses import replace

import pytest
import torch

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.execution.in_threads import ThreadBackend
from searcher.execution.threads import torch_threads
from searcher.execution.work import TrialTask, run_task
from searcher.model import LayoutPolicy, build_model
from searcher.search.trials import TrialRequest
from searcher.train import StabilityRule, TrainSettings
from searcher.train.trainer import TrialStopped


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetOptions("digits"))


def request(dataset, seed: int, epochs: int, dropout: float = 0.3) -> TrialRequest:
    arch = replace(LayoutPolicy(input_size=8).baseline(2, 8), dropout=dropout)
    settings = TrainSettings(optimizer="sgd", lr=0.05, batch_size=64, augment=1.0, stability=StabilityRule(window=2, min_epochs=epochs, max_epochs=epochs))
    return TrialRequest("test", f"s{seed}", arch, settings, seed, dataset.identity)


def curves(outcome) -> list[tuple[float, float, float]]:
    return [(record.train_loss, record.val_loss, record.val_acc) for record in outcome.result.history]


def test_trials_in_threads_train_exactly_as_alone_dropout_included(digits):
    """Initial weights, dropout masks, shuffling and crops are each trial's own, however the threads interleave;
    a network initialised in another thread meanwhile (as the search's own process may) changes nothing."""
    requests = [request(digits, seed, epochs=3) for seed in (1, 2, 3)]
    with torch_threads(1):
        alone = [run_task(DeviceData(digits, torch.device("cpu")), TrialTask(r))[0] for r in requests]
        backend = ThreadBackend(digits, ["cpu", "cpu", "cpu"])
        try:
            shown: list[tuple[str, str, int]] = []  # the live line's epochs: (trial, thread, epoch)

            def show(seed: str):
                return lambda record: shown.append((seed, threading.current_thread().name, record.epoch))

            futures = [backend.submit(TrialTask(r), show=show(r.candidate)) for r in requests]
            while not all(f.done() for f in futures):
                build_model(requests[0].arch, 1, 10)  # draws from the process's generator, unseeded, beside them
            together = [backend.result(f)[0] for f in futures]
        finally:
            backend.close()
    assert [o.status for o in together] == ["ok"] * 3, [o.error for o in together]
    assert [curves(o) for o in together] == [curves(o) for o in alone]
    for r in requests:  # each epoch before the verdict reached the live line (the last is the trial's finished line), from its own thread
        assert [epoch for seed, _, epoch in shown if seed == r.candidate] == [1, 2]
    assert {thread for _, thread, _ in shown} <= {f"searcher-trial_{n}" for n in range(3)}
    assert curves(alone[0]) != curves(alone[1])  # (the seeds do differ)


def test_dropout_masks_are_the_trials_own_and_new_every_step():
    spec = replace(LayoutPolicy(input_size=8).baseline(1, 8), dropout=0.5)
    model = build_model(spec, 1, 10, seed=0).train()
    model.dropout.generator = torch.Generator().manual_seed(7)
    features = torch.ones(4, 8)
    first, second = model.dropout(features), model.dropout(features)
    assert not torch.equal(first, second)
    assert set(first.unique().tolist()) <= {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    model.dropout.generator = torch.Generator().manual_seed(7)
    torch.manual_seed(123)  # the process's generator is not what the masks come from
    assert torch.equal(model.dropout(features), first)
    assert torch.equal(model.eval().dropout(features), features)


def test_a_stop_ends_a_trial_in_a_thread_at_its_next_step_and_queued_ones_never_start(digits):
    backend = ThreadBackend(digits, ["cpu"])
    long, queued = request(digits, 0, epochs=10_000), request(digits, 1, epochs=10_000)
    running, waiting = backend.submit(TrialTask(long)), backend.submit(TrialTask(queued))
    time.sleep(1.0)
    started = time.monotonic()
    backend.close(cancel=True)
    assert time.monotonic() - started < 2
    with pytest.raises(TrialStopped):  # (nobody reads it: the search is over)
        backend.result(running)
    assert waiting.cancelled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_graphed_trials_in_threads_share_one_gpu_and_learn_as_alone(digits):
    """Three graphed dropout trials at once on one GPU, each on its own stream (captures one at a time, in CUDA's
    thread-local mode): each learns as it does alone (GPU sums are not bit-exact run to run; close is the contract)."""
    requests = [request(digits, seed, epochs=4) for seed in (1, 2, 3)]
    cuda = torch.device("cuda")
    alone = [run_task(DeviceData(digits, cuda), TrialTask(r))[0] for r in requests]
    backend = ThreadBackend(digits, ["cuda:0"] * 3)
    try:
        together = [backend.result(f)[0] for f in [backend.submit(TrialTask(r)) for r in requests]]
    finally:
        backend.close()
    assert [o.status for o in together] == ["ok"] * 3, [o.error for o in together]
    for one, other in zip(alone, together, strict=True):
        assert other.result.history[0].train_loss == pytest.approx(one.result.history[0].train_loss, rel=0.02)
        assert abs(other.result.best_val_acc - one.result.best_val_acc) < 0.03
