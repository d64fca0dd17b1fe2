"""The masked training loop.

Pruned weights stay exactly zero: weights are masked once before training and gradients before
every optimizer step, so SGD's momentum and Adam's moments stay exactly zero at pruned positions
and their updates there are exactly zero (no weight decay is used). After training, every masked
entry is checked for non-zero pruned weights, so a leak can never pass silently.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # text bars: visible in papermill logs and in notebooks alike

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.data import Splits
from lthutils.pruning import Mask

EVAL_BATCH_SIZE = 2000


@dataclass
class TrainResult:
    """What one training run measured. Accuracies are fractions; iterations count steps."""

    iterations: int
    test_acc: float = math.nan
    val_loss: float = math.nan
    early_stop_iter: int = 0
    test_acc_at_early_stop: float = math.nan
    best_val_loss: float = math.inf
    examples: int = 0  # training examples processed (an example seen twice counts twice)
    train_seconds: float = 0.0  # optimizer steps only
    eval_seconds: float = 0.0
    nonzero_weights: int = 0
    nonzero_by_layer: dict[str, int] = field(default_factory=dict)
    diverged: bool = False  # a validation loss was NaN or infinite: the run's accuracies mean nothing
    # (iteration, val_loss, test_acc); test_acc is only measured at new validation minima and at the end
    history: list[tuple[int, float, float]] = field(default_factory=list)
    rewind_state: dict[str, torch.Tensor] | None = None

    def needs_test(self, step: int, val_loss: float) -> bool:
        """The test set is only needed at a new validation minimum and at the end."""
        return val_loss < self.best_val_loss or step == self.iterations

    def record(self, step: int, val_loss: float, test_acc: float) -> None:
        """Log an evaluation; the least validation loss so far sets the early-stopping point."""
        self.history.append((step, val_loss, test_acc))
        self.diverged = self.diverged or not math.isfinite(val_loss)
        if val_loss < self.best_val_loss:
            self.best_val_loss = val_loss
            self.early_stop_iter, self.test_acc_at_early_stop = step, test_acc
        self.val_loss, self.test_acc = val_loss, test_acc

    def finish(self, model: nn.Module, mask: Mask, train_seconds: float, eval_seconds: float) -> None:
        """Record the times and the non-zero weights, checking that the mask held (a diverged run's
        NaN gradients, times the mask's zeros, are NaN: its weights are not checked, nor its final
        accuracy kept)."""
        self.train_seconds, self.eval_seconds = train_seconds, eval_seconds
        if self.diverged:
            self.test_acc = math.nan
            self.nonzero_by_layer = mask.alive()
        else:
            self.nonzero_by_layer = check_mask_holds(model, mask)
        self.nonzero_weights = sum(self.nonzero_by_layer.values())


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available[name]:
        raise ConfigError("device", name, "an available device: " + ", ".join(d for d, ok in available.items() if ok))
    return torch.device(name)


def total_iterations(config: ExperimentConfig, num_train: int) -> int:
    """Steps per training run: `iterations`, or `epochs` passes of ceil(num_train / batch) steps."""
    if config.iterations is not None:
        return config.iterations
    return config.epochs * math.ceil(num_train / config.batch_size)


def make_optimizer(params: list[nn.Parameter], config: ExperimentConfig) -> torch.optim.Optimizer:
    """A fresh fused optimizer (fused Adam avoids the slow sqrt of exact zeros at pruned weights)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, fused=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, fused=True)


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (fraction) over a whole split."""
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
        logits = model(images[start : start + EVAL_BATCH_SIZE])
        target = labels[start : start + EVAL_BATCH_SIZE]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss_sum.item() / len(labels), correct.item() / len(labels)


def train(
    model: nn.Module,
    mask: Mask,
    splits: Splits,
    config: ExperimentConfig,
    data_seed: int,
    rewind_iteration: int | None = None,
    description: str = "train",
    optimizer: torch.optim.Optimizer | None = None,
) -> TrainResult:
    """Train `model` in place under `mask` on `splits` (all on the model's device).

    `config` must be resolved. The data order comes from `data_seed` alone. Validation loss and
    test accuracy are measured every `config.eval_every` steps and at the end; the early-stopping
    iteration is the one of least validation loss. With `rewind_iteration`, the weights after
    that many steps are returned as `rewind_state`. `optimizer` defaults to a fresh one
    (make_optimizer); pass one to inspect its state afterwards.
    """
    params = dict(model.named_parameters())
    masked = [params[name] for name in mask]
    masks = [m.to(p.device) for p, m in zip(masked, mask.values())]
    with torch.no_grad():
        torch._foreach_mul_(masked, masks)
    optimizer = optimizer or make_optimizer(list(params.values()), config)
    num_train = len(splits.train_labels)
    iterations = total_iterations(config, num_train)
    generator = torch.Generator().manual_seed(data_seed)
    result = TrainResult(iterations)
    eval_seconds = 0.0

    def record(step: int) -> None:
        nonlocal eval_seconds
        started_eval = time.perf_counter()
        val_loss, _ = evaluate(model, splits.val_images, splits.val_labels)
        test_acc = math.nan
        if result.needs_test(step, val_loss):
            _, test_acc = evaluate(model, splits.test_images, splits.test_labels)
        result.record(step, val_loss, test_acc)
        eval_seconds += time.perf_counter() - started_eval

    started = time.perf_counter()
    step = 0
    with tqdm(total=iterations, desc=description, disable=config.quiet, mininterval=1.0) as bar:
        while step < iterations:
            order = torch.randperm(num_train, generator=generator).to(splits.train_images.device)
            for start in range(0, num_train, config.batch_size):
                batch = order[start : start + config.batch_size]
                loss = F.cross_entropy(model(splits.train_images[batch]), splits.train_labels[batch])
                optimizer.zero_grad(set_to_none=True)  # backward then writes, not adds, the gradients
                loss.backward()
                with torch.no_grad():
                    torch._foreach_mul_([p.grad for p in masked], masks)
                    optimizer.step()
                step += 1
                result.examples += len(batch)
                bar.update()
                if step == rewind_iteration:
                    result.rewind_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                if (config.eval_every and step % config.eval_every == 0) or step == iterations:
                    record(step)
                if step == iterations:
                    break
    result.finish(model, mask, time.perf_counter() - started - eval_seconds, eval_seconds)
    return result


def check_mask_holds(model: nn.Module, mask: Mask) -> dict[str, int]:
    """Non-zero weights per masked entry; raises RuntimeError if any pruned weight is non-zero."""
    params = dict(model.named_parameters())
    nonzero = {}
    for name, m in mask.items():
        weight = params[name].detach()
        leaked = int(((weight != 0) & (m.to(weight.device) == 0)).sum())
        if leaked:
            raise RuntimeError(f"mask leak: {leaked} pruned weights of {name} are non-zero after training")
        nonzero[name] = int((weight != 0).sum())
    return nonzero
