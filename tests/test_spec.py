import json

import pytest
import torch

from searcher.model import ArchSpec, LayoutPolicy, build_model, count_parameters


def test_key_is_stable_and_distinguishes_specs():
    layout = LayoutPolicy(input_size=32)
    a, b = layout.baseline(2, 16), layout.baseline(2, 16)
    assert a == b and a.key() == b.key()
    assert a.key() != a.with_width(32).key()
    assert a.key() != layout.deepen(a, 16).key()
    assert a.key() != a.with_dropout(0.1).key()
    assert ArchSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_resolution_halving_adapts_to_input_size():
    digits = LayoutPolicy(input_size=8, min_resolution=4).baseline(4, 16)
    assert [layer.halves for layer in digits.layers] == [True, False, False, False]  # 8 -> 4 once
    cifar = LayoutPolicy(input_size=32, min_resolution=4).baseline(5, 16)
    assert [layer.halves for layer in cifar.layers] == [True, True, True, False, False]  # 32 -> 16 -> 8 -> 4


def test_kernel_policies():
    large = LayoutPolicy(input_size=32, kernel_policy="large_to_small", large_kernel=7, large_layers=2).baseline(4, 8)
    assert large.kernels == (7, 7, 3, 3)
    uniform = LayoutPolicy(input_size=32, kernel_policy="uniform").baseline(4, 8)
    assert uniform.kernels == (3, 3, 3, 3)


def test_deepen_adds_one_layer_on_top_with_the_given_width():
    layout = LayoutPolicy(input_size=32)
    spec = layout.baseline(2, 16)
    deeper = layout.deepen(spec, 48)
    assert deeper.depth == 3 and deeper.widths == (16, 16, 48) and deeper.layers[:2] == spec.layers


@pytest.mark.parametrize("block", ["plain", "residual"])
@pytest.mark.parametrize("shape,classes", [((1, 8, 8), 10), ((3, 32, 32), 100)])
def test_builder_shapes(block, shape, classes):
    layout = LayoutPolicy(input_size=shape[1])
    spec = layout.deepen(layout.baseline(3, 16, block), 32)
    model = build_model(spec, in_channels=shape[0], num_classes=classes).eval()
    x = torch.randn(5, *shape)
    assert model(x).shape == (5, classes)
    assert model.features(x).shape == (5, 32)
    assert count_parameters(model) > 0
