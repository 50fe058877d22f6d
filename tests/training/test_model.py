from __future__ import annotations

import pytest
import torch

from training.model import (
    HIDDEN_ACTIVATIONS,
    MLP,
    MNIST_MEAN,
    MNIST_STD,
    ModelConfig,
    count_parameters,
    dead_unit_fraction,
)
from training.presets import PRESETS


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("pigeon", 28 * 28 * 30 + 30 + 30 * 1 + 1),
        ("mnist-nn", 39_760),
        ("fast", 784 * 512 + 512 + 512 * 256 + 256 + 2570),
        ("distorted", 784 * 800 + 800 + 800 * 800 + 800 + 8010),  # 1,276,810
    ],
)
def test_preset_parameter_counts_match_the_textbook(preset: str, expected: int) -> None:
    assert count_parameters(MLP(PRESETS[preset].model)) == expected


def test_pigeon_is_23581_parameters() -> None:
    assert count_parameters(MLP(PRESETS["pigeon"].model)) == 23_581


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_output_shape_for_every_activation_and_head(activation: str, head: str) -> None:
    model = MLP(ModelConfig(hidden=(16, 8), activation=activation, head=head))
    out = model(torch.rand(5, 784))
    assert out.shape == (5, 10 if head == "softmax" else 1)
    assert torch.isfinite(out).all()


def test_maxout_has_k_pieces_per_unit() -> None:
    model = MLP(ModelConfig(hidden=(20,), activation="maxout", maxout_pieces=3))
    assert count_parameters(model) == 784 * 60 + 60 + 20 * 10 + 10


def test_no_hidden_layer_is_logistic_regression() -> None:
    assert count_parameters(MLP(ModelConfig(hidden=()))) == 784 * 10 + 10


def test_normalization_is_inside_the_model() -> None:
    model = MLP(ModelConfig(hidden=()))
    x = torch.rand(3, 784)
    expected = model.head((x - MNIST_MEAN) / MNIST_STD)
    torch.testing.assert_close(model(x), expected)


def test_dead_unit_fraction_counts_units_never_active() -> None:
    model = MLP(ModelConfig(hidden=(10,), activation="relu"))
    with torch.no_grad():
        model.hidden[0][0].bias[:4] = -1e4  # 4 of 10 units can never fire
        model.hidden[0][0].bias[4:] = 1e4  # the rest always fire
    assert dead_unit_fraction(model, torch.rand(50, 784)) == pytest.approx(0.4)


def test_dead_unit_fraction_is_undefined_for_tanh() -> None:
    assert dead_unit_fraction(MLP(ModelConfig(hidden=(10,), activation="tanh")), torch.rand(5, 784)) is None


@pytest.mark.parametrize(
    ("activation", "reference"),
    [
        ("relu", torch.relu),
        ("leaky_relu", lambda z: torch.nn.functional.leaky_relu(z, 0.05)),
        ("tanh", torch.tanh),
        ("sigmoid", torch.sigmoid),
    ],
)
def test_each_activation_is_the_function_it_is_named_after(activation: str, reference) -> None:
    model = MLP(ModelConfig(hidden=(12,), activation=activation, leaky_slope=0.05))
    linear = model.hidden[0][0]
    z = torch.randn(6, 784)
    torch.testing.assert_close(model.hidden[0](z), reference(linear(z)))


def test_maxout_keeps_the_largest_piece_of_each_unit() -> None:
    model = MLP(ModelConfig(hidden=(4,), activation="maxout", maxout_pieces=3))
    layer = model.hidden[0]
    z = torch.randn(5, 784)
    pieces = layer.linear(z).view(5, 4, 3)
    torch.testing.assert_close(layer(z), pieces.max(dim=-1).values)


def test_dropout_follows_every_hidden_layer_and_only_in_training() -> None:
    torch.manual_seed(0)
    model = MLP(ModelConfig(hidden=(32, 32, 32), activation="tanh", dropout=0.5))  # tanh: no unit outputs 0
    x = torch.rand(64, 784)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    outputs: list[torch.Tensor] = []  # what each hidden layer made, then what the next module was given
    given: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for layer in model.hidden]
    nexts = [*model.hidden[1:], model.head]
    hooks += [m.register_forward_pre_hook(lambda _m, args: given.append(args[0])) for m in nexts]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    assert len(outputs) == len(given) == 3
    for i, (out, fed) in enumerate(zip(outputs, given, strict=True)):
        dropped = fed == 0
        assert 0.3 < dropped.float().mean() < 0.7, i  # about half of this layer's units dropped
        torch.testing.assert_close(fed[~dropped], 2 * out[~dropped])  # the rest scaled by 1 / (1 - p)
