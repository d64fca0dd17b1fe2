import pytest
import torch

from lthutils.config import ExperimentConfig
from lthutils.models import build_model, initialize, layer_kinds


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "overrides, params, kinds",
    [
        ({"model": "lenet300"}, 266_610, ["fc", "fc", "output"]),
        (
            {"model": "fc", "n_layers": 3, "n_neurons": 50},
            784 * 50 + 50 + 2 * (50 * 50 + 50) + 510,
            ["fc"] * 3 + ["output"],
        ),
        ({"model": "fc", "n_layers": 1, "n_neurons": 10}, 784 * 10 + 10 + 110, ["fc", "output"]),
        ({"model": "lenet5"}, 61_706, ["conv", "conv", "fc", "fc", "output"]),
        ({"model": "lenet5_tanh"}, 43_272 + 6 + 16 + 120 + 84 + 10, ["conv", "conv", "conv", "fc", "output"]),
        ({"model": "conv2"}, None, ["conv", "conv", "fc", "fc", "output"]),
        ({"model": "conv4"}, None, ["conv"] * 4 + ["fc", "fc", "output"]),
        ({"model": "conv6"}, None, ["conv"] * 6 + ["fc", "fc", "output"]),
    ],
)
def test_architectures(overrides, params, kinds):
    model = build_model(ExperimentConfig(**overrides), (1, 28, 28), 10, seed=0)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert list(layer_kinds(model).values()) == kinds
    if params is not None:
        assert count(model) == params


def test_seeded_gaussian_glorot_init():
    config = ExperimentConfig(model="lenet300")
    first = build_model(config, (1, 28, 28), 10, seed=5)
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), build_model(config, (1, 28, 28), 10, seed=5).parameters())
    )
    other = build_model(config, (1, 28, 28), 10, seed=6)
    assert not torch.equal(first[1].weight, other[1].weight)
    weight = first[1].weight  # 784 -> 300
    assert weight.std().item() == pytest.approx((2 / (784 + 300)) ** 0.5, rel=0.02)
    assert weight.mean().item() == pytest.approx(0, abs=1e-3)
    assert torch.count_nonzero(first[1].bias) == 0


def test_normal_biases_for_the_original_study():
    config = ExperimentConfig(model="lenet300", bias_init="normal")
    model = build_model(config, (1, 28, 28), 10, seed=5)
    biases = torch.cat([model[1].bias, model[3].bias, model[5].bias])  # 410 draws of N(0, 1)
    assert biases.mean().item() == pytest.approx(0, abs=0.15) and biases.std().item() == pytest.approx(1, abs=0.1)
    zeros = build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=5)
    assert torch.equal(model[1].weight, zeros[1].weight)  # weights drawn first, as before
    copy = build_model(config, (1, 28, 28), 10, seed=0)
    initialize(copy, 5)  # a re-initialization keeps the model's bias init
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), copy.parameters()))
