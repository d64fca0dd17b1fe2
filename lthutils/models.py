"""The networks of the study: fully connected nets, LeNet-300-100, LeNet-5 (Frankle & Carbin's and
the original study's tanh variant), Conv-2/4/6, and at CIFAR scale OpenLTH's CIFAR ResNets
(cifar_resnet_<depth>[_<width>]) and VGG-11/13/16/19 with batch norm, and torchvision's ResNet-50.

The MNIST-scale models are `nn.Sequential`s of plain layers, so their prunable tensors are named
like `3.weight`; the ResNets are module trees (`blocks.0.conv1.weight`). Input shape and class
count come from the dataset. Weights get a seeded Gaussian Glorot initialization and biases zero,
as in Frankle & Carbin (2019), or N(0, 1) biases with `bias_init='normal'`, as in the original
study; the batch-norm models get OpenLTH's: Kaiming-normal weights (fan in) and batch-norm scales
uniform in [0, 1), shifts zero.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

from lthutils.config import CIFAR_RESNET, CUSTOM, ConfigError, ExperimentConfig, imported


def _fully_connected(in_features: int, hidden: list[int], num_classes: int) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    return layers + [nn.Linear(in_features, num_classes)]


def _conv_stack(in_channels: int, blocks: list[list[int]], kernel_size: int, padding: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for block in blocks:
        for channels in block:
            layers += [nn.Conv2d(in_channels, channels, kernel_size, padding=padding), nn.ReLU()]
            in_channels = channels
        layers.append(nn.MaxPool2d(2))
    return layers


def _flat_size(layers: list[nn.Module], input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return nn.Sequential(*layers)(torch.zeros(1, *input_shape)).numel()


VGG_PLANS = {  # OpenLTH's cifar_vgg plans: channels of each 3x3 conv, M a 2x2 max pool
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class ResidualBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers around an identity shortcut, or a strided 1x1 conv +
    batch norm where the block changes resolution or width (He et al.'s option B, as OpenLTH)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if downsample or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s ResNet for CIFAR as OpenLTH builds it: a 3x3 conv of `width` channels, three
    segments of (depth - 2) / 6 blocks of width, 2 width and 4 width channels (the last two
    halving the resolution), global average pooling and a linear output layer."""

    def __init__(self, in_channels: int, depth: int, width: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, channels = [], width
        for segment in range(3):
            for index in range((depth - 2) // 6):
                blocks.append(ResidualBlock(channels, width * 2**segment, downsample=segment > 0 and index == 0))
                channels = width * 2**segment
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


def _cifar_vgg(in_channels: int, depth: int, num_classes: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for spec in VGG_PLANS[depth]:
        if spec == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(in_channels, spec, 3, padding=1), nn.BatchNorm2d(spec), nn.ReLU()]
            in_channels = spec
    # OpenLTH averages the 2x2 map of a 32x32 input; adaptive pooling does the same there and
    # also takes 28x28 inputs
    return layers + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]


def _resnet50(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-50, unchanged for 32x32 inputs as the Morcos et al. replication uses it
    (its stride-2 stem and max pool leave a 1x1 map before the last segments' pooling)."""
    model = torchvision.models.resnet50(num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return model


def _alexnet(in_channels: int, num_classes: int) -> list[nn.Module]:
    """AlexNet for 32x32 images as bearpaw/pytorch-classification adapts it (2.47 M parameters at
    10 classes): five convs (11x11 stride 4, 5x5, three 3x3), three max pools, one linear layer.
    The last pool is adaptive (a 2x2 map at 32x32, as its 2x2 pool), so 28x28 inputs fit too."""
    return [
        nn.Conv2d(in_channels, 64, 11, stride=4, padding=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(256, num_classes),
    ]


def build_model(config: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """The config's architecture for this input shape, initialized from `seed` (CPU, float32)."""
    if CUSTOM.fullmatch(config.model):
        return _custom(config, input_shape, num_classes, seed)
    resnet = CIFAR_RESNET.fullmatch(config.model)
    if resnet or config.model == "resnet50":
        if resnet:
            model = CifarResNet(input_shape[0], int(resnet[1]), int(resnet[2] or 16), num_classes)
        else:
            model = _resnet50(input_shape[0], num_classes)
        return _initialized(model, config, seed, "kaiming")
    if config.model.startswith("cifar_vgg_"):
        model = nn.Sequential(*_cifar_vgg(input_shape[0], int(config.model.rsplit("_", 1)[1]), num_classes))
        return _initialized(model, config, seed, "kaiming")
    if config.model == "alexnet":
        return _initialized(nn.Sequential(*_alexnet(input_shape[0], num_classes)), config, seed, "kaiming")
    in_features = math.prod(input_shape)
    if config.model == "fc":
        layers = _fully_connected(in_features, [config.n_neurons] * config.n_layers, num_classes)
    elif config.model == "lenet300":
        layers = _fully_connected(in_features, [300, 100], num_classes)
    elif config.model == "lenet5_tanh":
        layers = _tanh_lenet5(input_shape, num_classes)
    else:
        if config.model == "lenet5":
            features = [
                nn.Conv2d(input_shape[0], 6, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            hidden = [120, 84]
        else:
            blocks = {"conv2": [[64, 64]], "conv4": [[64, 64], [128, 128]], "conv6": [[64, 64], [128, 128], [256, 256]]}
            features = _conv_stack(input_shape[0], blocks[config.model], kernel_size=3, padding=1)
            hidden = [256, 256]
        layers = features + _fully_connected(_flat_size(features, input_shape), hidden, num_classes)
    return _initialized(nn.Sequential(*layers), config, seed, "glorot")


def _custom(config: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """A user's factory(input_shape, num_classes), called under `seed` (parameters it draws itself
    are seeded too), then initialized as the built-in models (Kaiming if it has batch norm)."""
    factory = imported("model", config.model, "factory")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(tuple(input_shape), num_classes)
    if not isinstance(model, nn.Module):
        returned = type(model).__name__
        raise ConfigError("model", config.model, f"a factory returning an nn.Module (it returned {returned})")
    if not any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules()):
        raise ConfigError("model", config.model, "a network with a Linear or Conv2d layer to prune (it has none)")
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    return _initialized(model, config, seed, "kaiming" if batch_norm else "glorot")


def _initialized(model: nn.Module, config: ExperimentConfig, seed: int, weight_init: str) -> nn.Module:
    model.bias_init = config.bias_init  # every later initialize() of this model, or of a copy, draws so
    model.weight_init = weight_init
    initialize(model, seed)
    return model


def _tanh_lenet5(input_shape: tuple[int, ...], num_classes: int) -> list[nn.Module]:
    """The original study's LeNet-5: three 4x4 convolutions (6, 16, 120 channels) with tanh, the first
    two followed by 2x2 average pooling, then 120 -> 84 (tanh) -> classes; 43,272 weights on 28x28."""
    return [
        nn.Conv2d(input_shape[0], 6, 4),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 4),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 4),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    ]


def initialize(model: nn.Module, seed: int) -> None:
    """Gaussian Glorot weights (Kaiming for a model built with weight_init='kaiming') and zero
    biases (N(0, 1) for a model built with bias_init='normal'); batch-norm scales uniform in
    [0, 1), shifts zero, running statistics reset; all drawn from `seed` alone (in place)."""
    generator = torch.Generator().manual_seed(seed)
    normal_biases = getattr(model, "bias_init", "zeros") == "normal"
    kaiming = getattr(model, "weight_init", "glorot") == "kaiming"
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                if kaiming:
                    nn.init.kaiming_normal_(module.weight, generator=generator)
                else:
                    nn.init.xavier_normal_(module.weight, generator=generator)
                if module.bias is not None and normal_biases:
                    nn.init.normal_(module.bias, generator=generator)
                elif module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, generator=generator)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()


def layer_kinds(model: nn.Module) -> dict[str, str]:
    """'conv', 'fc' or 'output' for each weighted layer, by its module name."""
    weighted = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    kinds = {name: "conv" if isinstance(m, nn.Conv2d) else "fc" for name, m in weighted}
    kinds[weighted[-1][0]] = "output"
    return kinds


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of one example through the dense model."""
    flops = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal flops
        if isinstance(module, nn.Linear):
            flops += 2 * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            flops += 2 * per_output * output[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    training = model.training
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))  # eval: batch norm neither needs a batch nor updates its statistics
    model.train(training)
    for hook in hooks:
        hook.remove()
    return flops
