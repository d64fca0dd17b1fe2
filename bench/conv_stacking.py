"""Would LeNet-5 train faster stacked? K LeNet-5s as one grouped-convolution network against K
apart, forward and backward of one batch of 60 MNIST-sized images, one thread.

LeNet-5 trains alone (training.SingleModule): the fully connected stacks of training.StackedLinear
have no convolutional counterpart. The obvious one stacks the K models' channels and convolves
with groups=K (what torch.func.vmap of a convolution over weights does too); this times it
against the K models one after another, interleaved, and prints the ratio.

    python bench/conv_stacking.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F  # noqa: N812

STACK, BATCH, REPEATS = 15, 60, 20


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).requires_grad_()

    images = torch.randn(STACK, BATCH, 1, 28, 28, generator=generator)
    conv1, bias1, conv2, bias2 = (
        tensor(STACK, 6, 1, 5, 5),
        tensor(STACK, 6),
        tensor(STACK, 16, 6, 5, 5),
        tensor(STACK, 16),
    )
    fc = [tensor(STACK, 400, 120), tensor(STACK, 120, 84), tensor(STACK, 84, 10)]

    def dense(hidden: torch.Tensor, k: slice | int) -> torch.Tensor:
        for index, weight in enumerate(fc):
            hidden = torch.matmul(hidden, weight[k])
            hidden = torch.relu(hidden) if index < len(fc) - 1 else hidden
        return hidden

    def apart() -> None:
        for k in range(STACK):
            hidden = F.max_pool2d(F.relu(F.conv2d(images[k], conv1[k], bias1[k], padding=2)), 2)
            hidden = F.max_pool2d(F.relu(F.conv2d(hidden, conv2[k], bias2[k])), 2)
            dense(hidden.flatten(1), k).sum().backward()

    def grouped() -> None:
        hidden = images.transpose(0, 1).reshape(BATCH, STACK, 28, 28)
        weight1, weight2 = conv1.reshape(STACK * 6, 1, 5, 5), conv2.reshape(STACK * 16, 6, 5, 5)
        hidden = F.max_pool2d(F.relu(F.conv2d(hidden, weight1, bias1.reshape(-1), padding=2, groups=STACK)), 2)
        hidden = F.max_pool2d(F.relu(F.conv2d(hidden, weight2, bias2.reshape(-1), groups=STACK)), 2)
        dense(hidden.reshape(BATCH, STACK, 400).transpose(0, 1), slice(None)).sum().backward()

    timings: dict[str, list[float]] = {"apart": [], "grouped": []}
    for _ in range(3):  # interleaved, so that a slower spell of the machine hits both
        for name, step in (("apart", apart), ("grouped", grouped)):
            step()
            started = time.perf_counter()
            for _ in range(REPEATS):
                step()
            timings[name].append((time.perf_counter() - started) / REPEATS / STACK * 1000)
    best = {name: min(values) for name, values in timings.items()}
    print(f"LeNet-5, batch {BATCH}, forward + backward, 1 thread, ms per model-step (best of 3):")
    print(f"  {STACK} models one after another  {best['apart']:.2f}")
    print(f"  {STACK} models grouped (groups={STACK})  {best['grouped']:.2f}")
    print(f"  grouped over apart: {best['apart'] / best['grouped']:.2f}x")


if __name__ == "__main__":
    main()
