"""One masked training loop for one model or K stacked models, with early stopping.

A `ModelStack` presents K models of one architecture as one: fully connected models are stacked
into [K, in, out] weight tensors and multiplied with `torch.baddbmm` (`StackedLinear`); any
other model trains alone as a stack of one (`SingleModule`). Adam and SGD act elementwise, so
one optimizer over the stacked tensors is K independent optimizers, and the summed loss gives
each model exactly its own gradient. A model's numbers do not depend on K or on the other
models of its stack (tests/test_training.py checks this bitwise), so how runs are grouped,
scheduled or resumed never changes what they produce.

Pruned weights stay exactly zero: weights are masked once before training and gradients before
every optimizer step, so SGD's momentum and Adam's moments stay exactly zero at pruned positions
and their updates there are exactly zero (weight decay adds weight_decay * 0 there). After
training, every masked entry is checked for non-zero pruned weights, so a leak can never pass
silently.

Evaluation: the validation split before training and every `eval_every` steps (the learning
curve; the least loss after training started picks the early-stopping step, whose weights are kept
in memory), the test set twice at the end: on those kept weights (accuracy at early stop) and on
the final ones. The learning rate is constant, decays in steps or along a cosine (each optionally
warmed up linearly), or follows torch's OneCycleLR (`lr_schedule`); the loss a step descends is
its batch's mean or sum (`loss_reduction`); a batch's images are cropped and flipped at random
where `augment='crop_flip'` (CIFAR's default), each model with its own data order's generator, so
augmentation keeps results independent of K. With `precision='bf16'` the matrix products of
training and evaluation run in bfloat16; weights, optimizer state, masks and the loss stay
float32.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from lthutils import monitor
from lthutils.config import ConfigError, ExperimentConfig
from lthutils.data import Splits, augment_batch
from lthutils.pruning import Mask

# Rows per model per evaluation product, fixed so that a loss sum's order never varies. 512 is as fast
# as any size for fully connected models and twice as fast as 2000 for LeNet-5 (activations stay in cache).
EVAL_BATCH_SIZE = 512
MAX_STACKED_MODELS = 16  # 16 LeNet-300-100s: 6 x 266,200 floats each (weights, gradients, Adam, mask, snapshot), 100 MB


@dataclass
class TrainResult:
    """What one training run measured. Accuracies are fractions; iterations count steps."""

    iterations: int  # optimizer steps this run took (T, or T - k for a ticket rewound to step k)
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
    history: list[tuple[int, float]] = field(default_factory=list)  # (iteration, val loss) once training began
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (iteration, val loss, val acc) from the start
    rewind_state: dict[str, torch.Tensor] | None = None

    @property
    def converged(self) -> bool:
        """Early stopping found its point: a finite run whose least validation loss came before
        its last evaluation (at its last step), so more training was not making it better."""
        return not self.diverged and bool(self.history) and 0 < self.early_stop_iter < self.history[-1][0]

    def record(self, step: int, val_loss: float, val_acc: float) -> bool:
        """Log an evaluation after training began; True when its loss is the least so far (the new
        early-stopping point)."""
        self.curve.append((step, val_loss, val_acc))
        self.history.append((step, val_loss))
        self.diverged = self.diverged or not math.isfinite(val_loss)
        self.val_loss = val_loss
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.early_stop_iter = val_loss, step
            return True
        return False

    def finish(self, model: nn.Module, mask: Mask) -> None:
        """Record the non-zero weights of the trained `model`, checking that the mask held (a
        diverged run's NaN gradients, times the mask's zeros, are NaN: its weights are not
        checked, nor its final accuracy kept)."""
        if self.diverged:
            self.test_acc = math.nan
            self.nonzero_by_layer = mask.alive()
        else:
            self.nonzero_by_layer = check_mask_holds(model, mask)
        self.nonzero_weights = sum(self.nonzero_by_layer.values())


class ModelStack:
    """K models of one architecture as one trainable whole.

    `leaves` are the tensors the optimizer updates, `masked_leaves` those under a mask and
    `leaf_masks` their masks (same shapes);
    `views` hold one tensor per parameter of the models, in `names` order, whose first dimension
    indexes the models (views of the leaves, without autograd). `forward` maps images [K, B, ...]
    to float logits [K, B, classes] with the current weights or with `weights` (tensors shaped
    like `views`, such as a snapshot).
    """

    models: list[nn.Module]
    names: list[str]
    leaves: list[torch.Tensor]
    masked_leaves: list[torch.Tensor]
    leaf_masks: list[torch.Tensor]
    views: list[torch.Tensor]
    precision: str

    @property
    def count(self) -> int:
        return len(self.models)

    def forward(self, images: torch.Tensor, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def model_state(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's parameters, as its nn.Module names and shapes them (copies, on the CPU)."""
        raise NotImplementedError

    def write_back(self) -> None:
        """Copy the trained weights into the models (a no-op where they are the models' own)."""


class SingleModule(ModelStack):
    """Any model, alone: a stack of one whose leaves are the model's own parameters. Its views
    also hold the model's buffers (batch norm's running statistics), so a snapshot, a rewind
    state and an evaluation with `weights` carry them."""

    def __init__(self, model: nn.Module, mask: Mask, precision: str):
        params = dict(model.named_parameters())
        self.models, self.precision = [model], precision
        self.names = list(params) + [name for name, _ in model.named_buffers()]
        self.leaves = list(params.values())
        self.masked_leaves = [params[name] for name in mask]
        self.leaf_masks = [m.to(params[name].device) for name, m in mask.items()]
        self.views = [t.detach().unsqueeze(0) for t in [*params.values(), *model.buffers()]]

    def forward(self, images: torch.Tensor, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        model = self.models[0]
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            if weights is None:
                logits = model(images[0])
            else:
                logits = functional_call(model, {n: w[0] for n, w in zip(self.names, weights)}, (images[0],))
        return (logits.float() if self.precision == "bf16" else logits).unsqueeze(0)

    def model_state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: view[k].cpu().clone() for name, view in zip(self.names, self.views)}


def progress(**bar) -> tqdm:
    """A text progress bar (tqdm keywords), redrawn at most once a second, where monitor.stream
    says (stdout in a notebook's kernel, else stderr)."""
    return tqdm(file=monitor.stream(), mininterval=1.0, **bar)


def stackable(model: nn.Module) -> bool:
    """True for the fully connected models (fc, lenet300): Flatten, Linear and ReLU only."""
    return isinstance(model, nn.Sequential) and all(isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU)) for m in model)


class StackedLinear(ModelStack):
    """K fully connected models (see `stackable`): each Linear layer's K weights stored as one
    [K, in, out] tensor (the transpose of nn.Linear's), so that both the forward product and the
    weight gradient come out in the stored layout, with no transposed copy.

    Two paddings keep a model's numbers independent of K. The fused optimizers' vectorized loops
    treat an element by its position in the tensor (the last few elements take a scalar path that
    rounds differently), so each model's share of a leaf is padded to a multiple of LANE elements:
    every element then has the same position modulo LANE whatever K is. And products of very few
    rows (a short last batch) are padded to MIN_ROWS rows.
    """

    LANE = 64
    MIN_ROWS = 16  # a float32 product of 5 to 11 rows takes another kernel when K = 1 (measured)

    def __init__(self, models: list[nn.Module], masks: list[Mask], precision: str):
        self.models, self.precision = models, precision
        self.names = [name for name, _ in models[0].named_parameters()]
        per_model = [dict(m.named_parameters()) for m in models]
        self.shapes = [self._stored(name, per_model[0][name]).shape for name in self.names]
        self.leaves = [
            self._pack([self._stored(name, params[name].detach()) for params in per_model]).requires_grad_()
            for name in self.names
        ]
        masked = [index for index, name in enumerate(self.names) if name in masks[0]]
        self.masked_leaves = [self.leaves[index] for index in masked]
        self.leaf_masks = [
            self._pack([self._stored(self.names[index], mask[self.names[index]]) for mask in masks]).to(
                self.leaves[index].device
            )
            for index in masked
        ]
        self.views = self._unpack([leaf.detach() for leaf in self.leaves])

    @staticmethod
    def _stored(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.t() if name.endswith("weight") else tensor

    def _pack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """K tensors of one shape as [K, n] rows padded with zeros to a multiple of LANE."""
        size = tensors[0].numel()
        packed = torch.zeros(len(tensors), -(-size // self.LANE) * self.LANE, dtype=tensors[0].dtype)
        packed[:, :size] = torch.stack([tensor.reshape(-1) for tensor in tensors])
        return packed.to(tensors[0].device)

    def _unpack(self, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
        """[K, *shape] views of packed leaves (the padding left out)."""
        return [leaf[:, : shape.numel()].view(len(leaf), *shape) for leaf, shape in zip(leaves, self.shapes)]

    def forward(self, images: torch.Tensor, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        weights = self._unpack(self.leaves) if weights is None else weights
        dtype = torch.bfloat16 if self.precision == "bf16" else weights[0].dtype
        hidden = images.flatten(2).to(dtype)
        rows = hidden.shape[1]
        if rows < self.MIN_ROWS:  # zero rows added, and their outputs dropped: they change no gradient
            hidden = torch.cat([hidden, hidden.new_zeros(len(hidden), self.MIN_ROWS - rows, hidden.shape[2])], 1)
        layers = len(weights) // 2
        for index in range(layers):
            weight, bias = weights[2 * index].to(dtype), weights[2 * index + 1].to(dtype)
            hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight)
            if index < layers - 1:
                hidden = torch.relu(hidden)
        return hidden[:, :rows].to(weights[0].dtype)

    def model_state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: self._stored(name, view[k]).cpu().clone() for name, view in zip(self.names, self.views)}

    def write_back(self) -> None:
        with torch.no_grad():
            for k, model in enumerate(self.models):
                params = dict(model.named_parameters())
                for name, view in zip(self.names, self.views):
                    params[name].copy_(self._stored(name, view[k]))


def make_stack(models: list[nn.Module], masks: list[Mask], precision: str = "fp32") -> ModelStack:
    """The stack for these models: StackedLinear for fully connected ones, else one SingleModule."""
    if stackable(models[0]):
        return StackedLinear(models, masks, precision)
    if len(models) != 1:
        raise ValueError(f"only fully connected models train stacked; got {len(models)} {type(models[0]).__name__}")
    return SingleModule(models[0], masks[0], precision)


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


def make_optimizer(params: list[torch.Tensor], config: ExperimentConfig) -> torch.optim.Optimizer:
    """A fresh fused optimizer (fused Adam avoids the slow sqrt of exact zeros at pruned weights)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=True)


def make_schedule(
    optimizer: torch.optim.Optimizer, config: ExperimentConfig, iterations: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The config's learning-rate schedule over a run of `iterations` steps (None: constant lr)."""
    if config.lr_schedule == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=iterations)
    if config.lr_schedule == "constant" and not config.warmup_iterations:
        return None
    warmup = config.warmup_iterations
    milestones = [round(fraction * iterations) for fraction in config.lr_milestones]

    def factor(step: int) -> float:  # the lr of step + 1, as a multiple of config.lr
        rise = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if config.lr_schedule == "step":
            return rise * config.lr_gamma ** sum(step >= milestone for milestone in milestones)
        if config.lr_schedule == "cosine":
            return rise * (1 + math.cos(math.pi * step / iterations)) / 2
        return rise

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _rows(tensors: list[torch.Tensor], start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of each model's tensor, as [K, rows, ...]."""
    if all(tensor is tensors[0] for tensor in tensors):  # a broadcast view: no copy of shared data
        return tensors[0][start:stop].unsqueeze(0).expand(len(tensors), *tensors[0][start:stop].shape)
    return torch.stack([tensor[start:stop] for tensor in tensors])


def lone_products_on_one_thread(function):
    """Run `function(stack, ...)` on one torch thread when `stack` is a lone StackedLinear model.
    A batched product of K >= 2 models gives each model's product to one thread, so it rounds as
    on one thread; a lone model's product is split inside itself on some CPUs (an Intel Xeon with
    torch 2.14 on 2 threads), and would round otherwise: a model's numbers would then depend on
    its stack and on the thread count."""

    @functools.wraps(function)
    def wrapped(stack: ModelStack, *args, **kwargs):
        threads = torch.get_num_threads()
        if not isinstance(stack, StackedLinear) or stack.count > 1 or threads == 1:
            return function(stack, *args, **kwargs)
        torch.set_num_threads(1)
        try:
            return function(stack, *args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapped


@lone_products_on_one_thread
@torch.inference_mode()
def evaluate(
    stack: ModelStack,
    images: list[torch.Tensor],
    labels: list[torch.Tensor],
    weights: list[torch.Tensor] | None = None,
) -> tuple[list[float], list[float]]:
    """Per model: mean cross-entropy loss and accuracy (fraction) over its split (images[k],
    labels[k]), with the stack's current weights or `weights`."""
    count = len(labels[0])
    training = [model.training for model in stack.models]
    for model in stack.models:
        model.eval()  # batch norm: the running statistics, not the batch's (and none updated)
    loss_sum = torch.zeros(stack.count, device=images[0].device, dtype=torch.float64)
    correct = torch.zeros(stack.count, device=images[0].device, dtype=torch.long)
    for start in range(0, count, EVAL_BATCH_SIZE):
        logits = stack.forward(_rows(images, start, start + EVAL_BATCH_SIZE), weights)
        target = _rows(labels, start, start + EVAL_BATCH_SIZE)
        loss_sum += F.cross_entropy(logits.transpose(1, 2), target, reduction="none").sum(1)
        correct += (logits.argmax(2) == target).sum(1)
    for model, mode in zip(stack.models, training):
        model.train(mode)
    return (loss_sum / count).tolist(), (correct / count).tolist()


@lone_products_on_one_thread
def train_stack(
    stack: ModelStack,
    optimizer: torch.optim.Optimizer,
    splits: list[Splits],
    config: ExperimentConfig,
    data_seeds: list[int],
    rewind_iteration: int | None = None,
    description: str = "train",
    first_step: int = 0,
) -> list[TrainResult]:
    """Train the stack's K models in place with `optimizer` (over stack.leaves), model k on
    splits[k] in the data order of data_seeds[k]. `config` must be resolved; every split holds
    the same number of training examples, on the stack's device. With `first_step` k, training
    runs steps k+1..T only (a rewound ticket), with the batches those steps have in that order.

    The validation loss and accuracy are measured before training and every `config.eval_every`
    steps (the curve), and at the end; the step of least validation loss after training began is
    the early-stopping iteration, and the test accuracy of the weights
    at that step is measured once, at the end, beside the final one. With `rewind_iteration`,
    each model's weights after that many steps are returned as its `rewind_state`. Times are the
    stack's, shared equally among its models. Results are not yet `finish`ed (see train_models).
    """
    count = stack.count
    num_train = len(splits[0].train_labels)
    if any(len(s.train_labels) != num_train for s in splits):
        raise ValueError("stacked models must train on the same number of examples")
    iterations = total_iterations(config, num_train)
    generators = [torch.Generator().manual_seed(seed) for seed in data_seeds]
    results = [TrainResult(iterations - first_step) for _ in range(count)]
    best = [view.clone() for view in stack.views]  # each model's weights at its least validation loss
    if stack.precision == "bf16":  # images cast once here, not at every step (and half the bytes to gather)
        converted = {id(split): split.to(dtype=torch.bfloat16) for split in splits}
        splits = [converted[id(split)] for split in splits]
    device = splits[0].train_images.device
    images = splits[0].train_images
    batch_images = torch.empty(count, config.batch_size, *images.shape[1:], dtype=images.dtype, device=device)
    batch_labels = torch.empty(count, config.batch_size, dtype=torch.long, device=device)
    with torch.no_grad():
        torch._foreach_mul_(stack.masked_leaves, stack.leaf_masks)
    eval_seconds = 0.0

    def validate(step: int) -> None:
        nonlocal eval_seconds
        started_eval = time.perf_counter()
        losses, accuracies = evaluate(stack, [s.val_images for s in splits], [s.val_labels for s in splits])
        for k, (result, loss, accuracy) in enumerate(zip(results, losses, accuracies)):
            if step == first_step:  # the start of the learning curve: not a candidate for early stopping
                result.curve.append((step, loss, accuracy))
            elif result.record(step, loss, accuracy):
                for kept, view in zip(best, stack.views):
                    kept[k].copy_(view[k])
        eval_seconds += time.perf_counter() - started_eval

    schedule = make_schedule(optimizer, config, iterations)
    if config.eval_every:
        validate(first_step)
    before_training = eval_seconds  # the first evaluation is not inside the training time below
    started = time.perf_counter()
    step = 0
    label = description if count == 1 else f"{description} (x{count})"
    with progress(total=iterations - first_step, desc=label, disable=config.quiet) as bar:
        while step < iterations:
            orders = [torch.randperm(num_train, generator=g).to(device) for g in generators]
            if config.augment == "crop_flip":  # each example's crop and flip this epoch, after its order
                shifts = [torch.randint(0, 9, (num_train, 2), generator=g).to(device) for g in generators]
                flips = [(torch.rand(num_train, generator=g) < 0.5).to(device) for g in generators]
            for start in range(0, num_train, config.batch_size):
                if step < first_step:  # a step before the rewind point: its batch is skipped, not trained
                    if schedule is not None:
                        with warnings.catch_warnings():  # stepped without optimizer.step(), on purpose
                            warnings.simplefilter("ignore", UserWarning)
                            schedule.step()
                    step += 1
                    continue
                size = min(config.batch_size, num_train - start)
                for k, (split, order) in enumerate(zip(splits, orders)):
                    torch.index_select(split.train_images, 0, order[start : start + size], out=batch_images[k, :size])
                    torch.index_select(split.train_labels, 0, order[start : start + size], out=batch_labels[k, :size])
                if config.augment == "crop_flip":  # every model's images at once, each by its own draws
                    rows, batch = slice(start, start + size), batch_images[:, :size]
                    moved = augment_batch(
                        batch.flatten(0, 1), torch.cat([s[rows] for s in shifts]), torch.cat([f[rows] for f in flips])
                    )
                    batch.copy_(moved.view_as(batch))
                logits = stack.forward(batch_images[:, :size])
                loss = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), batch_labels[:, :size].reshape(-1), reduction="sum"
                )
                optimizer.zero_grad(set_to_none=True)  # backward then writes, not adds, the gradients
                (loss / size if config.loss_reduction == "mean" else loss).backward()
                with torch.no_grad():
                    torch._foreach_mul_([leaf.grad for leaf in stack.masked_leaves], stack.leaf_masks)
                    optimizer.step()
                if schedule is not None:
                    schedule.step()
                step += 1
                for result in results:
                    result.examples += size
                bar.update()
                if step == rewind_iteration:
                    for k, result in enumerate(results):
                        result.rewind_state = stack.model_state(k)
                if (config.eval_every and step % config.eval_every == 0) or step == iterations:
                    validate(step)
                if step == iterations:
                    break
    train_seconds = time.perf_counter() - started - (eval_seconds - before_training)
    started_eval = time.perf_counter()
    test_images, test_labels = [s.test_images for s in splits], [s.test_labels for s in splits]
    _, final = evaluate(stack, test_images, test_labels)
    at_best = final
    if any(result.early_stop_iter not in (0, iterations) for result in results):
        _, at_best = evaluate(stack, test_images, test_labels, best)
    for result, final_acc, best_acc in zip(results, final, at_best):
        result.test_acc = final_acc
        if result.early_stop_iter:  # 0: no finite validation loss, so no early-stopping point
            result.test_acc_at_early_stop = final_acc if result.early_stop_iter == iterations else best_acc
    eval_seconds += time.perf_counter() - started_eval
    for result in results:
        result.train_seconds, result.eval_seconds = train_seconds / count, eval_seconds / count
    return results


def train_models(
    models: list[nn.Module],
    masks: list[Mask],
    splits: list[Splits],
    config: ExperimentConfig,
    data_seeds: list[int],
    rewind_iteration: int | None = None,
    description: str = "train",
    first_step: int = 0,
) -> list[TrainResult]:
    """Train the models in place, each under its mask on its splits (on the models' device) in
    its data order, from `first_step` (train_stack): fully connected models as one stack, any
    other model alone (make_stack). Each result is what training that model alone gives,
    bitwise. Checks that every mask held."""
    stack = make_stack(models, masks, config.precision)
    optimizer = make_optimizer(stack.leaves, config)
    results = train_stack(stack, optimizer, splits, config, data_seeds, rewind_iteration, description, first_step)
    stack.write_back()
    for model, mask, result in zip(models, masks, results):
        result.finish(model, mask)
    return results


def train(
    model: nn.Module,
    mask: Mask,
    splits: Splits,
    config: ExperimentConfig,
    data_seed: int,
    rewind_iteration: int | None = None,
    description: str = "train",
    first_step: int = 0,
) -> TrainResult:
    """Train one model in place (train_models with a stack of one)."""
    return train_models([model], [mask], [splits], config, [data_seed], rewind_iteration, description, first_step)[0]


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
