import pytest
import torch

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.models import build_model, initialize, layer_kinds
from lthutils.pruning import Mask


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


@pytest.mark.parametrize(  # OpenLTH's counts (models/test/test_cifar_*.py), torchvision's ResNet-50 at 10 classes
    # and bearpaw/pytorch-classification's CIFAR AlexNet (2.47 M in its README)
    "model, params",
    [
        ("cifar_resnet_20", 272_474),
        ("cifar_resnet_110", 1_730_714),
        ("cifar_resnet_14_128", 11_093_130),
        ("cifar_vgg_11", 9_231_114),
        ("cifar_vgg_13", 9_416_010),
        ("cifar_vgg_16", 14_728_266),
        ("cifar_vgg_19", 20_040_522),
        ("resnet50", 23_528_522),
        ("alexnet", 2_472_266),
    ],
)
def test_cifar_models_have_their_published_parameter_counts(model, params):
    network = build_model(ExperimentConfig(model=model, dataset="cifar10"), (3, 32, 32), 10, seed=0)
    assert count(network) == params
    assert network.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_conventions_global_pruning_batch_norm_never_pruned_vgg_output_dense():
    resnet = build_model(ExperimentConfig(model="cifar_resnet_20"), (3, 32, 32), 10, seed=0)
    mask = Mask.ones(resnet, prune_output=ExperimentConfig(model="cifar_resnet_20").resolved().prune_output)
    convs = [n for n, m in resnet.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 21  # 19 3x3 convs and the two 1x1 shortcuts, all pruned as OpenLTH does
    assert list(mask) == [f"{name}.weight" for name in convs] + ["fc.weight"]
    assert not any("bn" in name or "shortcut.1" in name for name in mask)  # batch norm: never
    vgg = ExperimentConfig(model="cifar_vgg_16").resolved()
    assert (vgg.prune_scope, vgg.prune_output, vgg.optimizer, vgg.batch_size) == ("global", False, "sgd", 128)
    network = build_model(vgg, (3, 32, 32), 10, seed=0)
    assert "47.weight" not in Mask.ones(network, prune_output=vgg.prune_output)  # the output layer stays dense
    assert len(Mask.ones(network, prune_output=vgg.prune_output)) == 13
    lenet = ExperimentConfig(model="lenet300").resolved()
    assert (lenet.prune_scope, lenet.prune_output) == ("layerwise", True)
    assert "prune_output" not in lenet.identity()  # earlier run ids unchanged
    for model, allowed in (("cifar_resnet_21", "6n\\+2"), ("cifar_vgg_12", "one of fc"), ("resnet", "one of fc")):
        with pytest.raises(ConfigError, match=f"model='{model}' is not allowed: expected.*{allowed}"):
            ExperimentConfig(model=model)


def test_batch_norm_models_get_openlth_initialization_from_the_seed():
    config = ExperimentConfig(model="cifar_resnet_20")
    first, again = (build_model(config, (3, 32, 32), 10, seed=3) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    conv = first.blocks[4].conv1.weight  # 32 -> 32 channels, 3x3: Kaiming normal, fan in 288
    assert conv.std().item() == pytest.approx((2 / 288) ** 0.5, rel=0.05)
    scales = torch.cat([m.weight for m in first.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert scales.min() >= 0 and scales.max() < 1 and scales.mean().item() == pytest.approx(0.5, abs=0.05)
    assert all(not m.bias.any() for m in first.modules() if isinstance(m, torch.nn.BatchNorm2d))
    other = build_model(config, (3, 32, 32), 10, seed=4)
    assert not torch.equal(first.conv.weight, other.conv.weight)


def small_cnn(input_shape, num_classes):
    """A user's own model: built by a factory at the top level of a module (tests/ is importable)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(input_shape[0], 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 16, num_classes),
    )


def no_prunable_layer(input_shape, num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LayerNorm(784))


def test_your_own_model_by_factory_or_by_path():
    config = ExperimentConfig(model=small_cnn)
    assert config.model == "test_models:small_cnn" and config.architecture == "small_cnn"
    assert ExperimentConfig(model="test_models:small_cnn") == config
    first, again = (build_model(config.resolved(), (1, 28, 28), 10, seed=2) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert first[0].weight.std().item() == pytest.approx((2 / 9) ** 0.5, rel=0.2)  # batch norm: Kaiming
    assert list(layer_kinds(first).values()) == ["conv", "output"]
    assert config.resolved().optimizer == "adam" and config.run_id().startswith("small_cnn-fashionmnist-adam-")
    for model, allowed in (
        ("no_such_module:factory", r"an importable 'module:factory' \(No module named 'no_such_module'\)"),
        ("test_models:count_of", r"an importable 'module:factory' \(module 'test_models' has no attribute"),
        (lambda shape, classes: None, "a factory defined at the top level of a module"),
    ):
        with pytest.raises(ConfigError, match=f"model=.* is not allowed: expected .*{allowed}"):
            ExperimentConfig(model=model)
    with pytest.raises(ConfigError, match="expected a network with a Linear or Conv2d layer to prune"):
        build_model(ExperimentConfig(model=no_prunable_layer).resolved(), (1, 28, 28), 10, seed=0)
