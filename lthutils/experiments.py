"""Ticket search and ticket transfer, plus the original study's API as thin wrappers.

`find_tickets(config)` runs IMP on a source setting and saves every round's ticket;
`evaluate_tickets(tickets, config)` trains those tickets on a target setting (another dataset,
optimizer or training-set size) beside the controls of the same mask. Every check that can fail
on user input runs before any training or writing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.data import Dataset, load_dataset, make_splits, split_indices
from lthutils.lottery import Ticket, kinds_at, result_row, run_imp, train_tickets
from lthutils.models import build_model
from lthutils.results import RunStore, provenance, remove_stale_temporaries, write_json
from lthutils.training import resolve_device, total_iterations

SOURCE_FILE = "source.json"  # in a ticket folder: the config that found the tickets


@dataclasses.dataclass
class Setting:
    """A resolved config with its data, model template and device, checked against each other."""

    config: ExperimentConfig
    dataset: Dataset
    template: nn.Module
    device: torch.device
    num_train: int  # training examples each run sees

    def splits(self, seed: int):
        return make_splits(self.dataset, self.config.num_train, self.config.val_size, seed).to(self.device)


def prepare(config: ExperimentConfig) -> Setting:
    """Resolve the config, load its data and check every data-dependent limit."""
    config = config.resolved()
    for field in ("exp_root", "model_root"):
        _check_writable(field, getattr(config, field))
    device = resolve_device(config.device)
    dataset = load_dataset(config.dataset, config.data_root)
    num_train = len(split_indices(dataset, config.num_train, config.val_size, config.seeds[0])[0])
    if config.reset == "rewind" and config.rewind_iteration >= total_iterations(config, num_train):
        raise ConfigError(
            "rewind_iteration",
            config.rewind_iteration,
            f"fewer than the {total_iterations(config, num_train)} training steps per round",
        )
    template = build_model(config, dataset.input_shape, dataset.num_classes, seed=0)
    return Setting(config, dataset, template, device, num_train)


def _check_writable(field: str, root: str) -> None:
    """The folder must exist or be creatable, and be writable (checked before anything is written)."""
    path = Path(root).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problem = "not a folder" if not existing.is_dir() else "not writable"
        raise ConfigError(field, root, f"a folder lthutils can create and write in ({existing} is {problem})")


def _start_run(setting: Setting, store: RunStore, shared: dict[Path, Any]) -> None:
    """Clear what killed writes left behind, then write the run's shared files (config, provenance
    and `shared`). The caller holds store.claim(seeds): other processes may work on other seeds."""
    with store.locked():
        seed_dirs = [store.ticket_path(seed, 0).parent for seed in setting.config.seeds]
        remove_stale_temporaries(store.dir, store.ticket_dir, *seed_dirs)
        record_run(store, setting.config, provenance(setting.dataset.source, str(setting.device)))
        for path, value in shared.items():
            write_json(path, value)


def record_run(store: RunStore, config: ExperimentConfig, made_by: dict[str, Any]) -> None:
    """Write the run's config.json, its seeds those of every process that worked on the run
    (a cluster runs each seed apart), and provenance.json. The caller holds store.locked()."""
    write_json(store.dir / "provenance.json", made_by)
    path = store.dir / "config.json"
    seeds = set(config.seeds)
    if path.is_file():
        seeds |= set(json.loads(path.read_text()).get("seeds", []))
    write_json(path, dataclasses.replace(config, seeds=tuple(sorted(seeds))).to_dict())


def find_tickets(config: ExperimentConfig) -> Path:
    """Run IMP for every seed of `config`; return the folder of its tickets.

    Results go to `<exp_root>/<name>/<run_id>/results.csv`, tickets to
    `<model_root>/<run_id>/seed<S>/round<R>.pt` (mask + the weights to reset to). A rerun of the
    same config resumes after the last finished round.
    """
    setting = prepare(config)
    config = setting.config
    store = RunStore(config.exp_root, config.name, config.run_id(), config.model_root)
    with store.claim(config.seeds):
        source = {"config": config.to_dict(), "num_train": setting.num_train}
        _start_run(setting, store, {store.ticket_dir / SOURCE_FILE: source})
        splits_of = {seed: setting.splits(seed) for seed in config.seeds}
        run_imp(config, store, splits_of, setting.template, setting.device)
    return store.ticket_dir


def ticket_source(tickets: str | Path) -> tuple[ExperimentConfig, int]:
    """The config that found the tickets in `tickets` (a find_tickets folder) and its num_train."""
    path = Path(tickets) / SOURCE_FILE
    if not path.is_file():
        raise ConfigError("tickets", str(tickets), f"a ticket folder made by find_tickets (with {SOURCE_FILE})")
    source = json.loads(path.read_text())
    return ExperimentConfig.from_dict(source["config"]), int(source["num_train"])


def evaluate_tickets(tickets: str | Path, config: ExperimentConfig) -> Path:
    """Train the tickets in `tickets` on the setting of `config`; return the results folder.

    For each seed in config.seeds and round 0..config.rounds, the ticket found with that seed
    is trained as `ticket`, next to the controls of config.controls on the same mask, for the
    target's whole budget (a rewound ticket's first k steps were the source's). Rows carry the
    source run's id, dataset, optimizer, num_train and steps per round.
    """
    tickets = Path(tickets)
    source, source_num_train = ticket_source(tickets)
    setting = prepare(config)
    config = setting.config
    for seed in config.seeds:
        for round_index in range(config.rounds + 1):
            path = tickets / f"seed{seed}" / f"round{round_index}.pt"
            if not path.is_file():
                raise ConfigError(
                    "rounds" if path.parent.is_dir() else "seeds",
                    config.rounds if path.parent.is_dir() else seed,
                    f"a seed and round found in {tickets} (round {round_index} of seed {seed} is missing)",
                )
            Ticket.load(path).model(setting.template)  # readable and fits: checked before any training
    source_columns = {
        "source_run_id": tickets.name,
        "source_dataset": source.dataset,
        "source_optimizer": source.resolved().optimizer,
        "source_num_train": source_num_train,
        "source_steps_per_round": total_iterations(source.resolved(), source_num_train),
    }
    store = RunStore(config.exp_root, config.name, config.run_id(source=tickets.name), config.model_root)
    with store.claim(config.seeds):
        _train_on_target(tickets, source_columns, setting, store)
    return store.dir


def _train_on_target(tickets: Path, source_columns: dict[str, Any], setting: Setting, store: RunStore) -> None:
    config = setting.config
    _start_run(setting, store, {})
    done = store.done()
    items = []
    for seed in config.seeds:
        for round_index in range(config.rounds + 1):
            ticket = Ticket.load(tickets / f"seed{seed}" / f"round{round_index}.pt")
            items += [
                (ticket.variant(kind, setting.template), kind)
                for kind in kinds_at(round_index, config.controls)
                if (seed, round_index, kind) not in done
            ]
    splits_of = {seed: setting.splits(seed) for seed in config.seeds}
    for ticket, kind, _, result in train_tickets(items, setting.template, splits_of, config, setting.device):
        row = result_row(config, ticket, kind, result, splits_of[ticket.seed], setting.template)
        store.append({**row, **source_columns})  # rows land as each batch finishes


def _legacy_config(
    n_classes: int,
    n_epochs_train: int,
    n_epochs_iterative_prune: int,
    num_train: int | None,
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
    device: str,
    optimizer: str,
    name: str,
) -> ExperimentConfig:
    if model_type not in ("fc", "lenet"):
        raise ConfigError("model_type", model_type, "'fc' or 'lenet'")
    if dataset_type not in ("mnist", "fashionmnist"):
        raise ConfigError("dataset_type", dataset_type, "'mnist' or 'fashionmnist'")
    if isinstance(pr, bool) or not isinstance(pr, (int, float)) or not 0 < pr < 100:
        raise ConfigError("pr", pr, "a percentage strictly between 0 and 100")
    if n_classes != 10:
        raise ConfigError("n_classes", n_classes, f"10, the number of classes of {dataset_type}")
    if num_train is not None and num_train >= 60_000:
        num_train = None  # the study's 60,000 means the whole training set
    rate = pr / 100
    return ExperimentConfig(
        name=name,
        dataset=dataset_type,
        model="fc" if model_type == "fc" else "lenet5",
        n_layers=n_layers,
        n_neurons=n_neurons,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        batch_size=batch_size,
        epochs=n_epochs_train,
        rounds=n_epochs_iterative_prune,
        prune_rate=rate,
        prune_rate_conv=rate,
        prune_rate_output=rate,
        controls=("reinit",) if reinit else (),
        seeds=(random_seed,),
        num_train=num_train,
        device=device,
        quiet=True,
    )


def expIntegration(  # noqa: N802 (the original study's name)
    n_classes: int,
    n_epochs_train: int,
    n_epochs_iterative_prune: int,
    num_train: int | None,
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
    device: str,
    optimizer: str = "sgd",
) -> str:
    """Find tickets as the original study did; returns the folder holding them.

    n_classes: classes of the dataset (10). n_epochs_train: training epochs per round.
    n_epochs_iterative_prune: number of pruning iterations (rounds after the dense round 0).
    num_train: training examples, class-stratified; None or 60,000 (the whole set) means all of
    the training pool less the 5,000-example validation split. random_seed: the run's seed.
    reinit: also train the reinitialized control (same mask, fresh init) at each round.
    batch_size: examples per step. model_type: 'fc' (n_layers hidden layers of n_neurons) or
    'lenet' (LeNet-5). dataset_type: 'mnist' or 'fashionmnist'. lr: learning rate.
    pr: percentage (0-100) of surviving weights pruned per round, in every layer.
    momentum: SGD momentum. device: 'auto', 'cpu', 'cuda' or 'mps'. optimizer: 'sgd' (the
    study's default) or 'adam' (keyword only; not in the original signature).
    """
    config = _legacy_config(**locals(), name="expIntegration")
    return str(find_tickets(config))


def evalIntegration(  # noqa: N802 (the original study's name)
    n_classes: int,
    n_epochs_train: int,
    n_epochs_iterative_prune: int,
    num_train: int | None,
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
    device: str,
    tickets_path: str,
    optimizer: str = "sgd",
) -> pd.DataFrame:
    """Train the tickets of `tickets_path` (from expIntegration) on this setting.

    The arguments mean what they mean for expIntegration and describe the target setting:
    rounds 0..n_epochs_iterative_prune of seed random_seed are trained with n_epochs_train
    epochs each (pr is unused here). Returns the results rows (also in results.csv): kind
    'ticket', and 'reinit' when reinit is True.
    """
    args = dict(locals())
    tickets = args.pop("tickets_path")
    folder = evaluate_tickets(tickets, _legacy_config(**args, name="evalIntegration"))
    return pd.read_csv(folder / "results.csv")
