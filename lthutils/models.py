"""The networks of the study: fully connected nets, LeNet-300-100, LeNet-5 (Frankle & Carbin's and
the original study's tanh variant) and Conv-2/4/6.

Every model is an `nn.Sequential` of plain layers, so its prunable tensors are named like
`3.weight`. Input shape and class count come from the dataset; weights get a seeded Gaussian
Glorot initialization and biases zero, as in Frankle & Carbin (2019), or N(0, 1) biases with
`bias_init='normal'`, as in the original study.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lthutils.config import ExperimentConfig


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


def build_model(config: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Sequential:
    """The config's architecture for this input shape, initialized from `seed` (CPU, float32)."""
    in_features = 1
    for size in input_shape:
        in_features *= size
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
    model = nn.Sequential(*layers)
    model.bias_init = config.bias_init  # every later initialize() of this model, or of a copy, draws biases so
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
    """Gaussian Glorot weights and zero biases (N(0, 1) biases for a model built with
    bias_init='normal'), drawn from `seed` alone (in place)."""
    generator = torch.Generator().manual_seed(seed)
    normal_biases = getattr(model, "bias_init", "zeros") == "normal"
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                nn.init.xavier_normal_(module.weight, generator=generator)
                if normal_biases:
                    nn.init.normal_(module.bias, generator=generator)
                else:
                    nn.init.zeros_(module.bias)


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
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return flops
