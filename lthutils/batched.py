"""Train K fully connected models of one architecture in one vectorized step.

Each model keeps its own mask, initial weights, optimizer state and data order. The K weight
matrices of a layer are stacked into one [K, out, in] tensor and multiplied with
`torch.baddbmm`; Adam and SGD act elementwise, so one optimizer over the stacked tensors is K
independent optimizers, and the summed loss gives each model exactly its own gradient. The
results equal training the models one by one with `training.train` (up to float rounding).
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm import tqdm

from lthutils.config import ExperimentConfig
from lthutils.data import Splits
from lthutils.pruning import Mask
from lthutils.training import EVAL_BATCH_SIZE, TrainResult, make_optimizer, total_iterations


def supports(model: nn.Module) -> bool:
    """True for the fully connected models (fc, lenet300): Flatten, Linear and ReLU only."""
    return isinstance(model, nn.Sequential) and all(isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU)) for m in model)


def _forward(weights: list[torch.Tensor], biases: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Logits [K, B, classes] of K stacked models on images [K, B, ...]."""
    hidden = images.flatten(2)
    for index, (weight, bias) in enumerate(zip(weights, biases)):
        hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))
        if index < len(weights) - 1:
            hidden = torch.relu(hidden)
    return hidden


def _batch(images: list[torch.Tensor], start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of each model's images as [K, rows, ...] (a broadcast view when shared)."""
    if all(image is images[0] for image in images):
        return images[0][start:stop].unsqueeze(0).expand(len(images), *images[0][start:stop].shape)
    return torch.stack([image[start:stop] for image in images])


@torch.inference_mode()
def _evaluate(
    weights: list[torch.Tensor], biases: list[torch.Tensor], images: list[torch.Tensor], labels: list[torch.Tensor]
) -> tuple[list[float], list[float]]:
    """Per model: mean cross-entropy loss and accuracy (fraction) over its split."""
    count = len(labels[0])
    loss_sum = torch.zeros(len(images), device=images[0].device)
    correct = torch.zeros(len(images), device=images[0].device, dtype=torch.long)
    for start in range(0, count, EVAL_BATCH_SIZE):
        logits = _forward(weights, biases, _batch(images, start, start + EVAL_BATCH_SIZE))
        target = _batch(labels, start, start + EVAL_BATCH_SIZE)
        loss_sum += F.cross_entropy(logits.transpose(1, 2), target, reduction="none").sum(1)
        correct += (logits.argmax(2) == target).sum(1)
    return (loss_sum / count).tolist(), (correct / count).tolist()


def train_batched(
    models: list[nn.Module],
    masks: list[Mask],
    splits: list[Splits],
    config: ExperimentConfig,
    data_seeds: list[int],
    rewind_iteration: int | None = None,
    description: str = "train",
) -> list[TrainResult]:
    """Train K models in place, each under its mask on its splits with its data order.

    All models share one fully connected architecture (see `supports`) and device, and their
    splits hold the same number of examples. `config` must be resolved. Each result is what
    `training.train` returns for that model alone; train_seconds and eval_seconds are the batched
    run's times shared equally among the K models.
    """
    if len(models) == 1:  # a batch of one takes another matmul path: a twin keeps results equal to any K >= 2
        twin = copy.deepcopy(models[0])
        return train_batched(
            [models[0], twin], masks * 2, splits * 2, config, data_seeds * 2, rewind_iteration, description
        )[:1]
    names = [name for name, _ in models[0].named_parameters()]
    stacked = [torch.stack([dict(m.named_parameters())[name].detach() for m in models]) for name in names]
    stacked = [tensor.clone().requires_grad_() for tensor in stacked]
    weights, biases = stacked[0::2], stacked[1::2]
    masked = [
        (tensor, torch.stack([mask[name] for mask in masks]).to(tensor.device))
        for name, tensor in zip(names, stacked)
        if name in masks[0]
    ]
    masked_tensors, mask_tensors = [t for t, _ in masked], [m for _, m in masked]
    with torch.no_grad():
        torch._foreach_mul_(masked_tensors, mask_tensors)
    optimizer = make_optimizer(stacked, config)
    num_train = len(splits[0].train_labels)
    if any(len(s.train_labels) != num_train for s in splits):
        raise ValueError("batched models must train on the same number of examples")
    iterations = total_iterations(config, num_train)
    generators = [torch.Generator().manual_seed(seed) for seed in data_seeds]
    count = len(models)
    results = [TrainResult(iterations) for _ in models]
    device = stacked[0].device
    batch_images = torch.empty(count, config.batch_size, *splits[0].train_images.shape[1:], device=device)
    batch_labels = torch.empty(count, config.batch_size, dtype=torch.long, device=device)
    eval_seconds = 0.0

    def record(step: int) -> None:
        nonlocal eval_seconds
        started_eval = time.perf_counter()
        val_loss, _ = _evaluate(weights, biases, [s.val_images for s in splits], [s.val_labels for s in splits])
        needed = [result.needs_test(step, loss) for result, loss in zip(results, val_loss)]
        test_acc = [math.nan] * count
        if any(needed):
            _, test_acc = _evaluate(weights, biases, [s.test_images for s in splits], [s.test_labels for s in splits])
        for result, loss, accuracy, need in zip(results, val_loss, test_acc, needed):
            result.record(step, loss, accuracy if need else math.nan)
        eval_seconds += time.perf_counter() - started_eval

    started = time.perf_counter()
    step = 0
    with tqdm(total=iterations, desc=f"{description} (x{count})", disable=config.quiet, mininterval=1.0) as bar:
        while step < iterations:
            orders = [torch.randperm(num_train, generator=g).to(device) for g in generators]
            for start in range(0, num_train, config.batch_size):
                size = min(config.batch_size, num_train - start)
                for k, (split, order) in enumerate(zip(splits, orders)):
                    torch.index_select(split.train_images, 0, order[start : start + size], out=batch_images[k, :size])
                    torch.index_select(split.train_labels, 0, order[start : start + size], out=batch_labels[k, :size])
                logits = _forward(weights, biases, batch_images[:, :size])
                loss = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), batch_labels[:, :size].reshape(-1), reduction="sum"
                )
                optimizer.zero_grad(set_to_none=True)  # backward then writes, not adds, the gradients
                (loss / size).backward()
                with torch.no_grad():
                    torch._foreach_mul_([t.grad for t in masked_tensors], mask_tensors)
                    optimizer.step()
                step += 1
                for result in results:
                    result.examples += size
                bar.update()
                if step == rewind_iteration:
                    for k, result in enumerate(results):
                        result.rewind_state = {n: t[k].detach().cpu().clone() for n, t in zip(names, stacked)}
                if (config.eval_every and step % config.eval_every == 0) or step == iterations:
                    record(step)
                if step == iterations:
                    break
    elapsed = time.perf_counter() - started
    with torch.no_grad():
        for k, model in enumerate(models):
            for name, tensor in zip(names, stacked):
                dict(model.named_parameters())[name].copy_(tensor[k])
    for model, mask, result in zip(models, masks, results):
        result.finish(model, mask, (elapsed - eval_seconds) / count, eval_seconds / count)
    return results
