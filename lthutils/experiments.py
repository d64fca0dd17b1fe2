"""Ticket search and ticket transfer.

`find_tickets(config)` runs IMP on a source setting and saves every round's ticket;
`evaluate_tickets(tickets, config)` trains those tickets on a target setting (another dataset,
optimizer or training-set size) beside the controls of the same mask. Every check that can fail
on user input runs before any training or writing. (The original study's API, built on these,
is in legacy.py.)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from lthutils import tracking
from lthutils.config import ConfigError, ExperimentConfig
from lthutils.data import DATASET_FACTS, Dataset, Splits, load_dataset, make_splits, split_indices, training_examples
from lthutils.lottery import Ticket, carried, kinds_at, result_row, run_imp, train_tickets
from lthutils.models import build_model
from lthutils.results import (
    LOG,
    RESULT_COLUMNS,
    RunStore,
    provenance,
    read_results,
    remove_stale_temporaries,
    write_json,
)
from lthutils.training import resolve_device, total_iterations

SOURCE_FILE = "source.json"  # in a ticket folder: the config that found the tickets
COPIED = "rows_copied_from"  # in a run's provenance.json: the folders adopt_finished copied rows from
Splitter = Callable[[Dataset, ExperimentConfig, int], Splits]  # (dataset, config, seed) -> a seed's splits


def default_splits(dataset: Dataset, config: ExperimentConfig, seed: int) -> Splits:
    """A stratified validation split and training subset (make_splits with num_train and val_size)."""
    return make_splits(dataset, config.num_train, config.val_size, seed)


@dataclasses.dataclass
class Setting:
    """A resolved config with its data, model template and device, checked against each other."""

    config: ExperimentConfig
    dataset: Dataset | None  # None: prepared without loading the data
    template: nn.Module
    device: torch.device
    num_train: int  # training examples each run sees
    splitter: Splitter = default_splits

    def splits(self, seed: int) -> Splits:
        return self.splitter(self.dataset, self.config, seed).to(self.device)


def prepare(config: ExperimentConfig, splitter: Splitter = default_splits, load_data: bool = True) -> Setting:
    """Resolve the config, load its data and check every data-dependent limit (`splitter` makes
    a seed's splits). With load_data=False the data is not loaded (the setting's dataset is None):
    its sizes and shapes come from data.DATASET_FACTS, for plans and cost previews of data that
    need not be here."""
    original, config = config, config.resolved()
    for field in ("exp_root", "model_root"):
        _check_writable(field, getattr(config, field))
    device = resolve_device(config.device)
    if not load_data:
        dataset, facts = None, DATASET_FACTS[config.dataset]
        num_train = training_examples(config.dataset, config.num_train, config.val_size)
        input_shape, num_classes = facts.input_shape, facts.num_classes
    else:
        dataset = load_dataset(config.dataset, config.data_root)
        if splitter is default_splits:  # indices only: no copy of the images just to count them
            num_train = len(split_indices(dataset, config.num_train, config.val_size, config.seeds[0])[0])
        else:
            num_train = len(splitter(dataset, config, config.seeds[0]).train_labels)
        input_shape, num_classes = dataset.input_shape, dataset.num_classes
    steps = total_iterations(config, num_train)
    if config.reset == "rewind" and config.rewind_iteration >= steps:  # a positive step: checked by validate
        raise ConfigError(
            "rewind_iteration",
            config.rewind_iteration,
            f"a step from 1 to {steps - 1}, within the round's {steps} training steps"
            + (f" ({config.model} rewinds by default: set it, or reset: init)" if original.reset is None else ""),
        )
    template = build_model(config, input_shape, num_classes, seed=0)
    return Setting(config, dataset, template, device, num_train, splitter)


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
    (a cluster runs each seed apart), and provenance.json (keeping where rows were copied from:
    adopt_finished). The caller holds store.locked()."""
    made_by_path = store.dir / "provenance.json"
    copied = set(made_by.get(COPIED, []))
    if made_by_path.is_file():
        copied |= set(json.loads(made_by_path.read_text()).get(COPIED, []))
    write_json(made_by_path, {**made_by, COPIED: sorted(copied)} if copied else made_by)
    path = store.dir / "config.json"
    seeds = set(config.seeds)
    if path.is_file():
        seeds |= set(json.loads(path.read_text()).get("seeds", []))
    write_json(path, dataclasses.replace(config, seeds=tuple(sorted(seeds))).to_dict())


def find_tickets(config: ExperimentConfig, splitter: Splitter = default_splits) -> Path:
    """Run IMP for every seed of `config`, on the splits `splitter` makes; return the folder of its tickets.

    Results go to `<exp_root>/<name>/<run_id>/results.csv`, tickets to
    `<model_root>/<run_id>/seed<S>/round<R>.pt` (mask + the weights to reset to). A rerun of the
    same config resumes after the last finished round.
    """
    setting = prepare(config, splitter)
    config = setting.config
    store = RunStore.of(config)
    with store.claim(config.seeds):
        if carried(config, store):  # nothing to train or write: provenance.json names who made the rows
            return store.ticket_dir
        source = {"config": config.to_dict(), "num_train": setting.num_train}
        _start_run(setting, store, {store.ticket_dir / SOURCE_FILE: source})
        splits_of = {seed: setting.splits(seed) for seed in config.seeds}
        run_imp(config, store, splits_of, setting.template, setting.device)
        tracking.flush()
    return store.ticket_dir


def finished_elsewhere(config: ExperimentConfig) -> pd.DataFrame:
    """The rows of this search's seeds and kinds that the same search (same run id: the controls
    are not part of it) finished under another name in config.exp_root (another question's
    folder), for each seed whose ticket that folder trained at every round, with the tickets in
    config.model_root: what `adopt_finished` copies instead of training."""
    run_id = config.run_id()
    store = RunStore(config.exp_root, config.name, run_id, config.model_root)
    rounds = set(range(config.rounds + 1))
    wanted = {(r, kind) for r in rounds for kind in kinds_at(r, config.controls)}
    found = []
    for path in sorted(Path(config.exp_root).glob(f"*/{run_id}/results.csv")):
        if path.parent.resolve() == store.dir.resolve():
            continue
        frame = read_results(path)
        for seed in config.seeds:
            rows = frame[frame["seed"] == seed]
            searched = set(rows[rows["kind"] == "ticket"]["round"].astype(int)) == rounds
            if searched and all(store.ticket_path(seed, r).is_file() for r in rounds):
                keep = [(int(r), str(k)) in wanted for r, k in zip(rows["round"], rows["kind"])]
                found.append(rows[keep].assign(copied_from=str(path.parent)))
    if not found:
        return pd.DataFrame(columns=[*RESULT_COLUMNS, "copied_from"])
    return pd.concat(found, ignore_index=True).drop_duplicates(["seed", "round", "kind"])


def adopt_finished(config: ExperimentConfig) -> int:
    """Copy into this search's results the rows `finished_elsewhere` finds and this run lacks (a
    search that several questions run, such as params/full/'s MNIST / Adam / LeNet-300-100 one,
    is trained once); its provenance names where they came from. Returns the rows copied."""
    store = RunStore.of(config)
    found = finished_elsewhere(config)
    seeds = tuple(sorted(set(found["seed"].astype(int))))
    with store.claim(seeds):
        with store.locked():
            done = store.done()
            keys = zip(found["seed"].astype(int), found["round"].astype(int), found["kind"].astype(str))
            found = found[[key not in done for key in keys]]
            if found.empty:
                return 0
            sources = sorted(set(found["copied_from"]))
            made_by = json.loads((Path(sources[0]) / "provenance.json").read_text())
            made_by[COPIED] = sources
            record_run(store, dataclasses.replace(config.resolved(), seeds=seeds), made_by)
        copied = found.drop(columns=["checksum", "copied_from"]).to_dict("records")
        store.append(*copied)
        tracking.log_rows(config, store, *copied)
        tracking.flush()
    rows = len(found)
    LOG.info("%s: %d finished rows copied from %s", store.dir, rows, ", ".join(sources))
    return rows


def ticket_source(tickets: str | Path) -> tuple[ExperimentConfig, int]:
    """The config that found the tickets in `tickets` (a find_tickets folder) and its num_train."""
    path = Path(tickets) / SOURCE_FILE
    if not path.is_file():
        raise ConfigError("tickets", str(tickets), f"a ticket folder made by find_tickets (with {SOURCE_FILE})")
    source = json.loads(path.read_text())
    return ExperimentConfig.from_dict(source["config"]), int(source["num_train"])


def evaluate_tickets(
    tickets: str | Path,
    config: ExperimentConfig,
    splitter: Splitter = default_splits,
    rounds: Iterable[int] | None = None,
) -> Path:
    """Train the tickets in `tickets` on the setting of `config` (its splits made by `splitter`);
    return the results folder.

    For each seed in config.seeds and round in `rounds` (default 0..config.rounds), the ticket found with that seed
    is trained as `ticket`, next to the controls of config.controls on the same mask, for the
    target's whole budget (a rewound ticket's first k steps were the source's). Rows carry the
    source run's id, dataset, optimizer, num_train and steps per round.
    """
    tickets = Path(tickets)
    source, source_num_train = ticket_source(tickets)
    setting = prepare(config, splitter)
    config = setting.config
    rounds = list(range(config.rounds + 1) if rounds is None else rounds)
    for seed in config.seeds:
        for round_index in rounds:
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
    store = RunStore.of(config, tickets.name)
    with store.claim(config.seeds):
        _train_on_target(tickets, rounds, source_columns, setting, store)
        tracking.flush()
    return store.dir


def _train_on_target(
    tickets: Path, rounds: list[int], source_columns: dict[str, Any], setting: Setting, store: RunStore
) -> None:
    config = setting.config
    _start_run(setting, store, {})
    done = store.done()
    splits_of = {seed: setting.splits(seed) for seed in config.seeds}
    items = []
    for seed in config.seeds:
        for round_index in rounds:
            ticket = Ticket.load(tickets / f"seed{seed}" / f"round{round_index}.pt")
            items += [
                (ticket.variant(kind, setting.template, splits_of[seed], config.init_pruning_counts), kind)
                for kind in kinds_at(round_index, config.controls)
                if (seed, round_index, kind) not in done
            ]
    for ticket, kind, _, result in train_tickets(items, setting.template, splits_of, config, setting.device):
        row = {**result_row(config, ticket, kind, result, splits_of[ticket.seed], setting.template), **source_columns}
        store.append(row)  # rows land as each batch finishes
        tracking.log_rows(config, store, row)
