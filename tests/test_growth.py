"""Net2Net growth: the grown network computes its parent's function; warm starts are wired through the search."""

from dataclasses import replace

import pytest
import torch
from conftest import FakeRunner, arch_score, make_plan, memory_studies

from searcher.data import DatasetOptions, DeviceData, load_dataset
from searcher.model import LayoutPolicy, build_model
from searcher.model.growth import GrowthError, grow, grow_with_report
from searcher.search import run_search
from searcher.train import StabilityRule, TrainSettings, train_trial
from searcher.train.trainer import evaluate

TOLERANCE = 1e-5  # fp32, eval mode
CLASSES = 10


@pytest.fixture(scope="module")
def digits():
    return DeviceData(load_dataset(DatasetOptions("digits")), torch.device("cpu"))


def digits_batch(digits, split="train", count=256):
    source = getattr(digits, split)
    return source.normalise(source.images[:count])


def random_parent(spec, in_channels, seed=0):
    """A parent with non-trivial BatchNorm statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(spec, in_channels, CLASSES)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.3, 3)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def child_model(spec, state, in_channels):
    model = build_model(spec, in_channels, CLASSES)
    model.load_state_dict(state)  # strict: the grown state has exactly the child's tensors
    return model.eval()


def largest_change(parent, child, x):
    with torch.no_grad():
        return float((child(x) - parent(x)).abs().max())


LAYOUTS = [  # (block, input size, channels, layout): kernels 1, 3, 5 and 7 in every position the stages use
    ("plain", 8, 1, LayoutPolicy(input_size=8)),
    ("residual", 8, 1, LayoutPolicy(input_size=8)),
    ("plain", 8, 3, LayoutPolicy(input_size=8, kernel_policy="uniform")),
    ("residual", 8, 3, LayoutPolicy(input_size=8, large_kernel=7, large_layers=3)),
    ("plain", 16, 3, LayoutPolicy(input_size=16, large_kernel=1, large_layers=3, min_resolution=8)),
    ("residual", 16, 3, LayoutPolicy(input_size=16, large_kernel=5, large_layers=3, min_resolution=8)),
]


@pytest.mark.parametrize("block,size,channels,layout", LAYOUTS)
def test_widening_preserves_the_function_on_random_inputs(block, size, channels, layout):
    parent_spec = layout.baseline(2, 8, block)
    parent = random_parent(parent_spec, channels)
    x = torch.randn(32, channels, size, size)
    for width in (9, 16, 40):
        child_spec = parent_spec.with_width(width)
        state = grow(parent_spec, parent.state_dict(), child_spec, channels, CLASSES, generator=torch.Generator().manual_seed(width))
        assert largest_change(parent, child_model(child_spec, state, channels), x) < TOLERANCE


@pytest.mark.parametrize("block,size,channels,layout", LAYOUTS)
def test_deepening_preserves_the_function_on_random_inputs(block, size, channels, layout):
    parent_spec = layout.baseline(2, 16, block)
    parent = random_parent(parent_spec, channels)
    x = torch.randn(32, channels, size, size)
    for width in (16, 24, 32, 12):  # as wide, wider, twice as wide, narrower (but at least the 10 classes)
        child_spec = layout.deepen(parent_spec, width)
        assert not child_spec.layers[-1].halves  # the halving case is below
        state, report = grow_with_report(parent_spec, parent.state_dict(), child_spec, channels, CLASSES, inputs=x)
        assert report.exact, report.notes
        assert child_spec.layers[-1].kernel == layout.kernel_for(2)
        assert largest_change(parent, child_model(child_spec, state, channels), x) < TOLERANCE


@pytest.mark.parametrize("block", ["plain", "residual"])
def test_growth_preserves_the_function_on_real_digits(block, digits):
    layout = LayoutPolicy(input_size=8)
    parent_spec = layout.baseline(2, 16, block)
    parent = build_model(parent_spec, 1, CLASSES)
    parent.load_state_dict(train_trial(parent_spec, digits, TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64, stability=StabilityRule(2, 3, 3)), seed=0).state)
    parent.eval()
    calibration, val = digits_batch(digits, "train"), digits_batch(digits, "val")
    children = [parent_spec.with_width(32), *(layout.deepen(parent_spec, w) for w in (10, 16, 32)), layout.deepen(parent_spec.with_width(24), 48)]
    for child_spec in children:
        state, report = grow_with_report(parent_spec, parent.state_dict(), child_spec, 1, CLASSES, inputs=calibration)
        assert report.exact
        assert largest_change(parent, child_model(child_spec, state, 1), val) < TOLERANCE, child_spec.describe()


def test_widening_is_exact_in_train_mode_too():
    """Copies share every BatchNorm statistic, so even batch statistics agree: the first training step sees the parent."""
    spec = LayoutPolicy(input_size=8).baseline(3, 8, "residual")
    parent = random_parent(spec, 1).train()
    child_spec = spec.with_width(20)
    child = build_model(child_spec, 1, CLASSES)
    child.load_state_dict(grow(spec, parent.state_dict(), child_spec, 1, CLASSES))
    x = torch.randn(64, 1, 8, 8)
    assert largest_change(parent, child.train(), x) < TOLERANCE


def test_a_new_residual_block_is_the_identity_in_train_mode():
    spec = LayoutPolicy(input_size=8).baseline(2, 8, "residual")
    parent = random_parent(spec, 1)
    child_spec = LayoutPolicy(input_size=8).deepen(spec, 8)
    child = child_model(child_spec, grow(spec, parent.state_dict(), child_spec, 1, CLASSES), 1)
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        below = parent.blocks(x)
        assert torch.equal(child.blocks[-1].train()(below), below)  # zero last BatchNorm: the body adds nothing


def test_what_a_halving_new_layer_preserves_is_said_and_kept():
    layout = LayoutPolicy(input_size=32)
    for block in ("plain", "residual"):
        spec = layout.baseline(2, 8, block)
        child_spec = layout.deepen(spec, 8)
        assert child_spec.layers[-1].halves
        parent = random_parent(spec, 3)
        x = torch.randn(8, 3, 32, 32)
        state, report = grow_with_report(spec, parent.state_dict(), child_spec, 3, CLASSES, inputs=x)
        assert not report.exact and "max-pool" in report.notes[0]
        child = child_model(child_spec, state, 3)
        with torch.no_grad():
            below = parent.blocks(x)
            new = child.blocks[-1]
            before_pool = new.body(below) if block == "plain" else torch.relu(new.body(below) + new.shortcut(below))
            assert (before_pool - below).abs().max() < TOLERANCE  # exact up to the pool
            assert torch.equal(new.pool(before_pool), torch.nn.functional.max_pool2d(below, 2))


def test_a_new_layer_narrower_than_the_classes_cannot_preserve_and_says_so():
    spec = LayoutPolicy(input_size=8).baseline(2, 16)
    x = torch.randn(32, 1, 8, 8)
    _, report = grow_with_report(spec, random_parent(spec, 1).state_dict(), LayoutPolicy(input_size=8).deepen(spec, 8), 1, CLASSES, inputs=x)
    assert not report.exact and "rank 8" in report.notes[0]
    with pytest.raises(GrowthError, match="inputs"):  # a narrower layer is calibrated on data
        grow(spec, random_parent(spec, 1).state_dict(), LayoutPolicy(input_size=8).deepen(spec, 12), 1, CLASSES)


def test_transitions_that_are_not_growth_are_refused():
    layout = LayoutPolicy(input_size=8)
    spec = layout.baseline(2, 16)
    state = build_model(spec, 1, CLASSES).state_dict()
    with pytest.raises(GrowthError):
        grow(spec, state, spec.with_width(8), 1, CLASSES)  # narrower
    with pytest.raises(GrowthError):
        grow(spec, state, replace(spec, block="residual"), 1, CLASSES)
    with pytest.raises(GrowthError):
        grow(layout.deepen(spec, 16), state, spec, 1, CLASSES)  # shallower


def copies_spread(noise: float, digits) -> tuple[float, float]:
    """After a few SGD steps on a widened net: (gradient norm into the new units, how far copies drifted from originals)."""
    spec = LayoutPolicy(input_size=8).baseline(2, 8)
    parent = random_parent(spec, 1)
    child_spec = spec.with_width(16)
    state = grow(spec, parent.state_dict(), child_spec, 1, CLASSES, noise=noise, generator=torch.Generator().manual_seed(0))
    child = child_model(child_spec, state, 1).train()
    optimizer = torch.optim.SGD(child.parameters(), lr=0.05)
    x, y = digits_batch(digits, count=128), digits.train.labels[:128]
    gradient = 0.0
    for step in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(child(x), y).backward()
        if step == 1:
            gradient = float(child.blocks[0].body[0].weight.grad[8:].norm())
        optimizer.step()
    weight = child.blocks[0].body[0].weight.detach()  # layer 0: units 8..15 copy units 0..7 (in some order)
    spread = min(float((weight[j] - weight[k]).abs().max()) for j in range(8, 16) for k in range(8) if torch.equal(state["blocks.0.body.0.weight"][j], state["blocks.0.body.0.weight"][k]))
    return gradient, spread


def test_gradients_reach_new_units_and_noise_breaks_the_copies_apart(digits):
    gradient, spread = copies_spread(0.05, digits)
    assert gradient > 0 and spread > 1e-4
    _, stuck = copies_spread(0.0, digits)  # without noise a copy and its original get the same gradient forever
    assert stuck < 1e-6


def test_a_warm_started_trial_starts_at_its_parents_accuracy(digits):
    layout = LayoutPolicy(input_size=8)
    settings = TrainSettings(optimizer="sgd", lr=0.05, batch_size=64, stability=StabilityRule(window=2, min_epochs=3, max_epochs=4))
    parent_spec = layout.baseline(2, 16)
    parent = train_trial(parent_spec, digits, settings, seed=0)
    calibration = digits_batch(digits, count=512)
    for child_spec in (parent_spec.with_width(32), layout.deepen(parent_spec, 32)):
        state = grow(parent_spec, parent.state, child_spec, 1, CLASSES, inputs=calibration)
        _, grown_accuracy, _, _ = evaluate(child_model(child_spec, state, 1), digits.val, torch.autocast("cpu", enabled=False), False)
        assert grown_accuracy == pytest.approx(parent.best_val_acc, abs=1e-9)  # epoch 0: exactly the parent's predictions
        child = train_trial(child_spec, digits, settings, seed=0, initial_state=state)
        assert child.initial_val_acc == pytest.approx(parent.best_val_acc, abs=1e-9)
        assert child.history[0].lr == pytest.approx(settings.lr * settings.warm_lr_factor)
        assert child.history[0].val_acc > parent.best_val_acc - 0.05  # the first epoch keeps what the parent learned
        assert len(child.history) >= settings.stability.min_epochs  # and it still trains until stable


def test_stages_name_each_trials_parent_by_key_and_repeat():
    def score(arch):
        return 0.9 + 0.01 * arch.depth - (0.001 if arch.widths[0] > 16 else 0.0)  # width never helps, depth does once

    runner = FakeRunner(arch_score(lambda a: min(score(a), 0.93)))
    plan = make_plan(width_cap=64, depth_cap=4, repeats=2, regularization_trials=2, warm_start=True)
    result = run_search(plan, memory_studies(plan), runner)
    by_key = {r.key: r for r in runner.requests}
    for request in runner.requests:
        if request.stage in ("width", "depth"):
            parent = by_key[request.parent]
            assert parent.repeat == request.repeat and parent.arch.depth == request.arch.depth - (request.stage == "depth")
        else:
            assert request.parent is None  # baseline, regularization and final train from scratch
    width = [r for r in runner.requests if r.stage == "width"]
    assert {by_key[r.parent].stage for r in width} == {"baseline"}
    depth4 = [r for r in runner.requests if r.stage == "depth" and r.arch.depth == 4]
    assert {by_key[r.parent].arch for r in depth4} == {result.stages[2].winner.arch}  # the accepted d3 child
    # the depth winner was warm-started, so the unregularized first regularization trial is retrained from scratch
    regularization = [r for r in runner.requests if r.stage == "regularization"]
    assert [r.params for r in regularization[:2]] == [(("dropout", 0.0), ("weight_decay", 0.0))] * 2
    assert len(regularization) == 2 * (1 + plan.regularization_trials)  # still that many Optuna trials after it
    cold = FakeRunner(arch_score(lambda a: min(score(a), 0.93)))
    run_search(replace(plan, warm_start=False), memory_studies(plan), cold)
    assert all(r.parent is None for r in cold.requests)
    assert {r.key for r in cold.requests if r.stage == "width"}.isdisjoint({r.key for r in width})  # warm is another trial


@pytest.mark.slow
def test_warm_started_trials_are_tagged_in_mlflow(tmp_path):
    from conftest import REPO
    from hydra import compose, initialize_config_dir
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf
    from rich.console import Console

    from searcher.app import run
    from searcher.config import validate

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        "search=quick",
        f"tracking.uri={uri}",
        "search.name=warm",
        "search.warm_start=true",
        "device=cpu",
        "search.depth.cap=3",
        "search.regularization.trials=1",
        "search.final.seeds=1",
        "train.stability.window=2",
        "train.stability.min_epochs=3",
        "train.stability.max_epochs=5",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = validate(OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=False))
    assert run(config, dataset_chosen=False, console=Console(quiet=True)).exit_code == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("searcher")
    trials = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'trial'", max_results=100)
    keys = {t.data.tags["searcher.trial_key"]: t for t in trials}
    warm = [t for t in trials if t.data.tags["searcher.warm_start"] == "true"]
    assert {t.data.tags["searcher.stage"] for t in warm} == {"width", "depth"}
    for trial in warm:
        parent = keys[trial.data.tags["searcher.parent_trial"]]
        assert trial.info.run_name.endswith(" (warm)") and trial.data.tags["searcher.growth"] == "exact"
        assert trial.data.metrics["initial_val_acc"] == pytest.approx(parent.data.metrics["best_val_acc"], abs=1e-6)
    cold = [t for t in trials if t.data.tags["searcher.warm_start"] == "false"]
    assert {t.data.tags["searcher.stage"] for t in cold} - {"width", "depth"} == {"baseline", "regularization", "final"}
    # the only cold trials of the growth stages: extra seeds of the (cold) baseline that a comparison asked for
    assert all(t.info.run_name.startswith("w16 d2 r") for t in cold if t.data.tags["searcher.stage"] in ("width", "depth"))
    assert all("searcher.parent_trial" not in t.data.tags for t in cold)


def test_a_warm_starts_tiny_first_loss_is_no_yardstick_for_divergence():
    from searcher.train.stability import judge

    rule = StabilityRule()
    assert judge(rule, [0.01, 0.12], [0.99, 0.98]) is None  # 12x a near-zero first loss: training, not diverging
    assert judge(rule, [0.01, 0.9], [0.99, 0.4]) == "diverged"
    assert judge(rule, [2.0, 25.0], [0.1, 0.1]) == "diverged"


def test_a_warm_child_that_collapses_is_a_failed_trial_not_a_rejected_one(digits):
    """A rate far too high for a warm start (as batch 512 at lr 0.2 did on a GPU) wipes out the grown function: failed, with why."""
    from searcher.execution.work import outcome_of
    from searcher.search.trials import TrialRequest
    from searcher.train.trainer import collapsed

    assert collapsed([0.2, 0.19, 0.2], start=0.95, chance=0.1, window=3)  # lost more than half of 0.85 above chance
    assert not collapsed([0.2, 0.19, 0.6], start=0.95, chance=0.1, window=3)  # won it back within the window
    assert not collapsed([0.2, 0.19], start=0.95, chance=0.1, window=3)  # not yet a whole window
    assert not collapsed([0.2, 0.19, 0.2], start=None, chance=0.1, window=3)  # a cold trial is merely bad
    layout = LayoutPolicy(input_size=8)
    parent_spec = layout.baseline(2, 16)
    parent = train_trial(parent_spec, digits, TrainSettings(optimizer="sgd", lr=0.05, batch_size=64, stability=StabilityRule(2, 3, 4)), seed=0)
    child_spec = layout.deepen(parent_spec, 32)
    state = grow(parent_spec, parent.state, child_spec, 1, CLASSES, inputs=digits_batch(digits, count=512))
    reckless = TrainSettings(optimizer="adamw", lr=20.0, batch_size=64, warm_up_epochs=0, stability=StabilityRule(window=3, min_epochs=4, max_epochs=8))
    result = train_trial(child_spec, digits, reckless, seed=0, initial_state=state)
    assert result.behavior == "diverged" and result.initial_val_acc > 0.9
    request = TrialRequest("depth", "d3 +w32", child_spec, reckless, 0, "digits", parent="p")
    outcome = outcome_of(request, result)
    assert outcome.status == "failed" and outcome.error.startswith("diverged: collapsed: grown from a parent at val_acc")
