"""The original study's API: `expIntegration` / `evalIntegration`, its recipe and its result files.

The study this kit grew from (ESE539, "The generalization ability of the Lottery Ticket
Hypothesis") ran each experiment as `tickets_path = expIntegration(<15 arguments>)` then
`evalIntegration(<the same 15>, tickets_path)`, all positional. Both run here on the engine
(find_tickets / evaluate_tickets) with the study's recipe, and write the study's `.pth` files,
made from the engine's results.csv rows (the source of truth), where its analysis cells read them:

- `n_epochs_iterative_prune` trained levels: the dense network, then n-1 pruned ones, each
  pruning pr% of every weight tensor's survivors (output and conv layers too; biases never).
- Each level: SGD with `momentum` under OneCycleLR(max_lr=lr) over its n_epochs_train epochs
  (the schedule also cycles momentum, as torch's does), the batch's summed loss, no early
  stopping; Xavier-normal weights and N(0, 1) biases.
- MNIST normalized with (0.1307, 0.3081); the `num_train` examples drawn with
  numpy.random.RandomState(random_seed).choice(60000, num_train, replace=False); no validation
  split: the test set's loss and accuracy before each epoch and after the last are the figures
  (the rows' val_loss and curve are therefore test-set numbers too).
- `reinit=True` is its own trajectory: after each pruning the survivors get fresh random weights
  (reset='reinit'), so its masks come from pruning reinitialized, trained networks.
- `evalIntegration` retrains every ticket on the whole training set (60,000), whatever num_train
  was, with a fresh optimizer and schedule each.

Where this differs from the study: random draws (initializations, data order) come from the seed,
not torch's unseeded global generator, so a run repeats exactly; pruning removes the smallest pr%
by rank, where the study's interpolated percentile can differ by one weight per tensor; and a
level's 'store_path' names its ticket file (mask and starting weights), as lthutils keeps no
trained weights.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import torch

from lthutils.config import DEVICES, ConfigError, ExperimentConfig
from lthutils.data import Dataset, Splits, load_dataset
from lthutils.experiments import evaluate_tickets, find_tickets
from lthutils.lottery import Ticket
from lthutils.models import build_model
from lthutils.results import RunStore, read_results, write_atomic

MNIST_NORMALIZATION = (0.1307, 0.3081)  # the study's transforms.Normalize for MNIST
MODEL_TYPES = {"fc": "fc", "lenet": "lenet5_tanh"}
DATASET_TYPES = ("mnist", "fashionmnist")


def study_splits(dataset: Dataset, config: ExperimentConfig, seed: int) -> Splits:
    """The study's data: num_train training examples drawn by numpy's RandomState(seed) (all of
    them when num_train is None), and the test set in place of a validation split."""
    train_images, test_images = dataset.train_images, dataset.test_images
    if dataset.name == "mnist":  # the study's constants in place of the pool's own mean and std
        mean, std = MNIST_NORMALIZATION
        train_images = (train_images * dataset.std[0] + dataset.mean[0] - mean) / std
        test_images = (test_images * dataset.std[0] + dataset.mean[0] - mean) / std
    pool = len(dataset.train_labels)
    chosen = torch.from_numpy(np.random.RandomState(seed).choice(pool, config.num_train or pool, replace=False))
    test = (test_images, dataset.test_labels)
    return Splits(train_images[chosen], dataset.train_labels[chosen], *test, *test)


def device_name(device: torch.device | str) -> str:
    """The config's device for a torch.device or a string such as 'cuda:0' (the index is dropped)."""
    name = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if name not in DEVICES:
        raise ConfigError("device", str(device), "a torch.device or one of " + ", ".join(DEVICES))
    return name


def study_config(args: tuple, name: str) -> ExperimentConfig:
    """The engine config of the study's 15 arguments, in its order (checked here, before any work)."""
    (n_classes, n_epochs_train, n_epochs_iterative_prune, num_train, random_seed, reinit, batch_size) = args[:7]
    (model_type, dataset_type, n_layers, n_neurons, lr, pr, momentum, device) = args[7:]
    if model_type not in MODEL_TYPES:
        raise ConfigError("model_type", model_type, "'fc' or 'lenet'")
    if dataset_type not in DATASET_TYPES:
        raise ConfigError("dataset_type", dataset_type, "'mnist' or 'fashionmnist'")
    if n_classes != 10:
        raise ConfigError("n_classes", n_classes, f"10, the number of classes of {dataset_type}")
    if isinstance(pr, bool) or not isinstance(pr, (int, float)) or not 0 < pr < 100:
        raise ConfigError("pr", pr, "a percentage strictly between 0 and 100")
    if isinstance(n_epochs_iterative_prune, bool) or not isinstance(n_epochs_iterative_prune, int):
        raise ConfigError("n_epochs_iterative_prune", n_epochs_iterative_prune, "an integer of at least 2")
    if n_epochs_iterative_prune < 2:
        raise ConfigError(
            "n_epochs_iterative_prune", n_epochs_iterative_prune, "at least 2 (the dense level and one pruned level)"
        )
    for field_name, value, most in (("num_train", num_train, 60_000), ("batch_size", batch_size, None)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most and value > most):
            limit = f" of at most {most}, the training images of {dataset_type}" if most else ""
            raise ConfigError(field_name, value, "a positive integer" + limit)
    rate = pr / 100
    return ExperimentConfig(
        name=name,
        dataset=dataset_type,
        model=MODEL_TYPES[model_type],
        n_layers=n_layers,
        n_neurons=n_neurons,
        optimizer="sgd",
        lr=lr,
        momentum=momentum,
        lr_schedule="one_cycle",
        loss_reduction="sum",
        bias_init="normal",
        batch_size=batch_size,
        epochs=n_epochs_train,
        rounds=n_epochs_iterative_prune - 1,
        prune_rate=rate,
        prune_rate_conv=rate,
        prune_rate_output=rate,
        reset="reinit" if reinit else "init",
        controls=(),
        seeds=(random_seed,),
        num_train=num_train,
        eval_every=math.ceil(num_train / batch_size),  # the figures are taken at every epoch's end
        device=device_name(device),
    )


def study_file(config_args: tuple, suffix: str = "") -> Path:
    """exp_result/<model_type>_<dataset_type>_<n_layers>_<n_neurons>_<lr>_<num_train>_reinit-<reinit><suffix>.pth"""
    (_, _, _, num_train, _, reinit, _, model_type, dataset_type, n_layers, n_neurons, lr) = config_args[:12]
    parts = [model_type, dataset_type, n_layers, n_neurons, lr, num_train, f"reinit-{reinit}"]
    return Path("exp_result") / ("_".join(str(part) for part in parts) + suffix + ".pth")


def _curves(results_dir: Path, seed: int) -> dict[int, dict[str, list[float]]]:
    """Each round's test-set loss and accuracy per epoch, from the run's rows of `seed`."""
    rows = read_results(results_dir / "results.csv")
    rows = rows[(rows["seed"] == seed) & (rows["kind"] == "ticket")]
    curves = {}
    for round_index, curve in zip(rows["round"], rows["curve"]):
        points = json.loads(curve)
        curves[int(round_index)] = {
            "valLoss_per_epoch": [loss for _, loss, _ in points],
            "accu_per_epoch": [accuracy for _, _, accuracy in points],
        }
    return curves


def _save(path: Path, content: dict) -> None:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def expIntegration(  # noqa: N802 (the original study's name and signature)
    n_classes: int,
    n_epochs_train: int,
    n_epochs_iterative_prune: int,
    num_train: int,
    random_seed: int,
    reinit: bool,
    batch_size: int,
    model_type: str,
    dataset_type: str,
    n_layers: int,
    n_neurons: int,
    lr: float,
    pr: float,
    momentum: float,
    device: torch.device | str,
) -> list[str]:
    """Run the study's IMP (see the module's docstring); return the n-1 pruned tickets' files.

    Writes exp_result/<...>_reinit-<reinit>.pth (study_file): {level: {'store_path',
    'nonzero_percent' (non-zero parameters at the level's start, biases included, % to one
    decimal), 'valLoss_per_epoch', 'accu_per_epoch' (test set, before each epoch and after the
    last; six significant digits, as the rows' curves hold them)}}, beside the rows in
    exp_result/expIntegration/<run id>/results.csv.
    """
    args = tuple(locals().values())
    config = study_config(args, "expIntegration")
    tickets = find_tickets(config, study_splits)
    curves = _curves(RunStore.of(config).dir, random_seed)
    dataset = load_dataset(config.dataset, config.data_root)
    template = build_model(config.resolved(), dataset.input_shape, dataset.num_classes, seed=0)
    levels = {}
    for level in range(n_epochs_iterative_prune):
        path = tickets / f"seed{random_seed}" / f"round{level}.pt"
        model = Ticket.load(path).model(template)
        nonzero = sum(int(p.count_nonzero()) for p in model.parameters())
        total = sum(p.numel() for p in model.parameters())
        levels[level] = {"store_path": str(path), "nonzero_percent": round(100 * nonzero / total, 1), **curves[level]}
    _save(study_file(args), levels)
    return [levels[level]["store_path"] for level in range(1, n_epochs_iterative_prune)]


def evalIntegration(  # noqa: N802 (the original study's name and signature)
    n_classes: int,
    n_epochs_train: int,
    n_epochs_iterative_prune: int,
    num_train: int,
    random_seed: int,
    reinit: bool,
    batch_size: int,
    model_type: str,
    dataset_type: str,
    n_layers: int,
    n_neurons: int,
    lr: float,
    pr: float,
    momentum: float,
    device: torch.device | str,
    tickets_path: list[str],
) -> None:
    """Retrain every ticket of `tickets_path` (expIntegration's list) on the whole training set.

    Each ticket trains n_epochs_train epochs of the 60,000 examples with a fresh optimizer and
    schedule. Writes exp_result/<...>_reinit-<reinit>_evaluate.pth: {ticket index: {'ticket_path',
    'valLoss_per_epoch', 'accu_per_epoch'}}, beside the rows in exp_result/evalIntegration/.
    """
    args = tuple(locals().values())[:15]
    paths = [Path(path) for path in tickets_path] if isinstance(tickets_path, (list, tuple)) else []
    folders = {path.parent.parent for path in paths}
    if not paths or len(folders) != 1 or any(not path.stem.startswith("round") for path in paths):
        raise ConfigError("tickets_path", tickets_path, "the list of ticket files expIntegration returned")
    rounds = [int(path.stem.removeprefix("round")) for path in paths]
    whole_set = (*args[:3], 60_000, *args[4:])
    config = study_config(whole_set, "evalIntegration")
    results_dir = evaluate_tickets(folders.pop(), config, study_splits, rounds)
    curves = _curves(results_dir, random_seed)
    trained = {index: {"ticket_path": str(path), **curves[r]} for index, (path, r) in enumerate(zip(paths, rounds))}
    _save(study_file(args, "_evaluate"), trained)
