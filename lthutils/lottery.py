"""Iterative magnitude pruning: the ticket trunk and the reinit / random-mask / magnitude-at-init branches.

Round 0 trains the dense network from theta_0. After round r, the trained weights are pruned and
the survivors reset to theta_0 (`reset='init'`), to the weights after `rewind_iteration` steps of
round 0 (`reset='rewind'`), or to fresh random weights (`reset='reinit'`, the original study's
reinit=True trajectory; not Frankle & Carbin's reinit control, whose mask comes from the
ticket's trunk): that mask and those weights are the ticket of round r+1,
saved before it is trained, so a rerun resumes after the last finished round. Which weights
survive is the config's mask criterion (|theta_T| by default). Controls branch off each pruned
round (config.CONTROLS): `reinit` trains the same mask from a fresh random init, `random_mask` a
random mask with the same per-layer counts from the ticket's weights, the pruning-at-init masks
(lthutils.init_pruning) and their ablations score the ticket's starting weights, and the mask-1
actions set its survivors otherwise. All kinds of one round see the same data order, except
`retrain`: the ticket itself trained on another order, a comparison whose true difference is
zero (the decision rule must not call it better or worse).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lthutils import monitor, tracking
from lthutils.config import ABLATIONS, INIT_PRUNING, ConfigError, ExperimentConfig
from lthutils.data import Splits
from lthutils.init_pruning import init_mask
from lthutils.models import forward_flops, initialize
from lthutils.pruning import (
    Mask,
    criterion_scores,
    layer_rates,
    prune_global,
    prune_layerwise,
    prune_with,
    random_mask,
)
from lthutils.results import LOG, RunStore, load_tensors, save_tensors
from lthutils.training import MAX_STACKED_MODELS, TrainResult, stackable, total_iterations, train_models


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (a run seed, a round, a role)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") >> 1


def fresh_weights(template: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Initial weights for `template`'s architecture drawn from `seed` (template untouched)."""
    model = copy.deepcopy(template).cpu()
    initialize(model, seed)
    return model.state_dict()


@dataclass
class Ticket:
    """A mask and the dense weights its survivors start from (theta_0 or the rewind state)."""

    mask: Mask
    weights: dict[str, torch.Tensor]
    seed: int
    round: int

    def save(self, path: Path, run_id: str) -> None:
        content = {"mask": {k: v.bool() for k, v in self.mask.items()}, "weights": self.weights}
        save_tensors(path, {**content, "seed": self.seed, "round": self.round, "run_id": run_id})

    @classmethod
    def load(cls, path: Path) -> Ticket:
        content = load_tensors(path)
        try:
            return cls(Mask(content["mask"]), content["weights"], int(content["seed"]), int(content["round"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError("ticket", str(path), f"an lthutils ticket file ({error})") from error

    def model(self, template: nn.Module) -> nn.Module:
        """A copy of `template` holding this ticket's weights, pruned ones zeroed."""
        self.mask.check_fits(template)
        model = copy.deepcopy(template).cpu()
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as error:
            raise ConfigError("ticket", f"seed {self.seed} round {self.round}", "weights that fit the model") from error
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, m in self.mask.items():
                params[name].mul_(m)
        return model

    def variant(self, kind: str, template: nn.Module, splits: Splits | None = None, counts: str = "ticket") -> Ticket:
        """The ticket itself (also for 'retrain', which differs in its data order: data_seed), or one
        of its controls (config.CONTROLS; random draws seeded by seed, round and kind). The
        pruning-at-initialization masks score this ticket's starting weights on `splits` (SNIP
        and GraSP use its training examples) and keep the ticket's per-layer counts, or with
        counts='global' its total count."""
        if kind in ("ticket", "retrain"):
            return self
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.round, kind))

        def fresh() -> dict[str, torch.Tensor]:
            return fresh_weights(template, derive_seed(self.seed, self.round, kind))

        method, _, ablation = kind.rpartition("_")  # "snip_invert" -> snip, invert
        if kind in INIT_PRUNING:  # "magnitude_init" is a method, not magnitude + init
            method, ablation = kind, ""
        if method in INIT_PRUNING and ablation in ("", *ABLATIONS):
            if method != "magnitude_init" and splits is None:
                raise ValueError(f"the {kind} control scores weights on training data: pass the splits")
            mask = init_mask(
                method, template, self.weights, self.mask.alive(), splits, counts == "global", ablation == "invert"
            )
            if ablation == "shuffle":
                mask = random_mask(mask, generator)
            return Ticket(mask, fresh() if ablation == "reinit" else self.weights, self.seed, self.round)
        if kind == "reinit":
            return Ticket(self.mask, fresh(), self.seed, self.round)
        if kind == "random_mask":
            return Ticket(random_mask(self.mask, generator), self.weights, self.seed, self.round)
        return Ticket(self.mask, mask_one_action(kind, self.weights, self.mask, generator), self.seed, self.round)


def mask_one_action(
    action: str, weights: dict[str, torch.Tensor], mask: Mask, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """`weights` with each masked entry's survivors set by a mask-1 action (Zhou et al.): reshuffle
    permutes their values within the entry; signed_constant makes each the sign of its value times
    the standard deviation of the whole entry's values. Other parameters (biases, batch norm) kept."""
    new = dict(weights)
    for name, m in mask.items():
        values = weights[name].detach().clone()
        flat, alive = values.flatten(), torch.nonzero(m.flatten()).flatten()
        if action == "reshuffle":
            flat[alive] = flat[alive[torch.randperm(len(alive), generator=generator)]]
        else:
            flat[alive] = flat[alive].sign() * weights[name].float().std().to(flat.dtype)
        new[name] = values
    return new


def data_seed(ticket: Ticket, kind: str) -> int:
    """The seed of a training run's batch order: the same for every kind of a round, so the
    controls differ from the ticket in their weights or mask only; 'retrain' draws another order."""
    return derive_seed(ticket.seed, ticket.round, "data", *(("retrain",) if kind == "retrain" else ()))


def next_mask(model: nn.Module, ticket: Ticket, config: ExperimentConfig) -> Mask:
    """Prune the trained `model`'s weights under the ticket's mask by the config's scope, rates and
    mask criterion (which compares them with the ticket's starting weights)."""
    mask = ticket.mask
    # a diverged run's non-finite weights rank as zeros: pruned first, the mask stays well-formed
    weights = {
        name: torch.nan_to_num(p.detach(), 0.0, 0.0, 0.0) for name, p in model.named_parameters() if name in mask
    }
    if config.prune_scope not in ("layerwise", "global"):
        return prune_with(config.prune_scope, weights, mask, config.prune_rate)
    scores = criterion_scores(config.mask_criterion, ticket.weights, weights, mask)
    if config.prune_scope == "global":
        return prune_global(weights, mask, config.prune_rate, scores)
    rates = layer_rates(model, mask, config.prune_rate, config.prune_rate_conv, config.prune_rate_output)
    return prune_layerwise(weights, mask, rates, scores)


def projected_remaining(template: nn.Module, config: ExperimentConfig) -> list[float]:
    """The fraction of weights remaining at each round 0..rounds of IMP with this (resolved)
    config: prune_layerwise and prune_global remove round(rate * alive) weights, so the counts
    follow from the layers' sizes alone, before anything is trained. A prune function of your own
    is applied to the template's initial weights round after round: its levels, if they depend
    only on the counts, are the run's."""
    mask = Mask.ones(template, config.prune_biases, config.prune_output)
    if config.prune_scope not in ("layerwise", "global"):
        weights = {name: p.detach() for name, p in template.named_parameters() if name in mask}
        remaining = [1.0]
        for _ in range(config.rounds):
            mask = prune_with(config.prune_scope, weights, mask, config.prune_rate)
            remaining.append(mask.weights_remaining())
        return remaining
    alive = mask.alive()
    total = sum(alive.values())
    rates = layer_rates(template, mask, config.prune_rate, config.prune_rate_conv, config.prune_rate_output)
    remaining = [1.0]
    for _ in range(config.rounds):
        if config.prune_scope == "global":
            left = sum(alive.values())
            alive = {"all": left - round(config.prune_rate * left)}
        else:
            alive = {name: count - round(rates[name] * count) for name, count in alive.items()}
        remaining.append(sum(alive.values()) / total)
    return remaining


def train_tickets(
    items: list[tuple[Ticket, str]],
    template: nn.Module,
    splits_of: dict[int, Splits],
    config: ExperimentConfig,
    device: torch.device,
    rewind_iteration: int | None = None,
    first_step: int = 0,
) -> Iterator[tuple[Ticket, str, nn.Module, TrainResult]]:
    """Train each (ticket, kind) item (the ticket already its kind's variant) on its seed's splits
    from `first_step`, yielding each item with its trained model and result as soon as its stack
    is done.

    Fully connected models train MAX_STACKED_MODELS at a time as one stack; others one by one.
    A model's numbers do not depend on its stack (training.py), only on its ticket, kind and
    data order, which comes from its seed and round: every kind of a round sees the same batches
    (but 'retrain', the null control that differs from the ticket in its data order alone).
    """
    stack_size = MAX_STACKED_MODELS if stackable(template) else 1
    for start in range(0, len(items), stack_size):
        chunk = items[start : start + stack_size]
        models = [ticket.model(template).to(device) for ticket, _ in chunk]
        first, kind = chunk[0]
        rounds = sorted({ticket.round for ticket, _ in chunk})  # a transfer's stack spans rounds
        where = f"round {rounds[0]}" if len(rounds) == 1 else f"rounds {rounds[0]}-{rounds[-1]}"
        description = f"seed {first.seed} round {first.round} {kind}" if len(chunk) == 1 else where
        monitor.LOG.info("%s, %d training%s", description, len(chunk), "" if len(chunk) == 1 else "s")
        results = train_models(
            models,
            [ticket.mask for ticket, _ in chunk],
            [splits_of[ticket.seed] for ticket, _ in chunk],
            config,
            [data_seed(ticket, kind) for ticket, kind in chunk],
            rewind_iteration,
            description,
            first_step,
        )
        for (ticket, kind), model, result in zip(chunk, models, results):
            yield ticket, kind, model, result


def result_row(
    config: ExperimentConfig, ticket: Ticket, kind: str, result: TrainResult, splits: Splits, template: nn.Module
) -> dict[str, Any]:
    """One tidy results.csv row (run_id is added by the store). Its cost in dense FLOPs counts a
    training example as three passes through the dense `template` (forward, and backward's two);
    its curve is JSON [[step, validation loss, validation accuracy], ...] from before training."""
    num_train = len(splits.train_labels)
    flops = forward_flops(template, tuple(splits.train_images.shape[1:]))
    return {
        "seed": ticket.seed,
        "round": ticket.round,
        "weights_remaining": ticket.mask.weights_remaining(),
        "kind": kind,
        "dataset": config.dataset,
        "optimizer": config.optimizer,
        "model": config.architecture,
        "num_train": num_train,
        "test_acc": result.test_acc,
        "val_loss": result.val_loss,
        "early_stop_iter": result.early_stop_iter,
        "converged": result.converged,
        "steps_per_round": total_iterations(config, num_train),
        "test_acc_at_early_stop": result.test_acc_at_early_stop,
        "nonzero_weights": result.nonzero_weights,
        "nonzero_by_layer": json.dumps(result.nonzero_by_layer, sort_keys=True),
        "train_iterations": result.iterations,
        "train_examples": result.examples,
        "train_dense_flops": 3 * flops * result.examples,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "diverged": result.diverged,
        "curve": json.dumps([[step, float(f"{loss:.6g}"), float(f"{acc:.6g}")] for step, loss, acc in result.curve]),
    }


def kinds_at(round_index: int, controls: tuple[str, ...]) -> list[str]:
    """Round 0 is the dense network: its controls would be dense networks too, so none run."""
    return ["ticket"] + (list(controls) if round_index > 0 else [])


def _carried(config: ExperimentConfig, store: RunStore, seed: int, done: set) -> bool:
    """Every row of the seed here and none of its pruned tickets: rows carried to this machine
    without them (scripts/carry_rows.py), finished."""
    every_row = all((seed, r, k) in done for r in range(config.rounds + 1) for k in kinds_at(r, config.controls))
    return every_row and not any(store.ticket_path(seed, r).exists() for r in range(1, config.rounds + 1))


def _first_round(config: ExperimentConfig, store: RunStore, seed: int, done: set) -> int | None:
    """The round a seed resumes at: its first unfinished one (a row or the next round's ticket
    missing), or earlier if that round's ticket is missing; None when it is finished, or carried
    (a ticket missing among others is found again)."""
    todo = [
        r
        for r in range(config.rounds + 1)
        if any((seed, r, k) not in done for k in kinds_at(r, config.controls))
        or (r < config.rounds and not store.ticket_path(seed, r + 1).exists())
    ]
    if not todo or _carried(config, store, seed, done):
        return None
    first = todo[0]
    while first > 0 and not store.ticket_path(seed, first).exists():
        first -= 1
    return first


def carried(config: ExperimentConfig, store: RunStore) -> bool:
    """Whether every seed of `config` was carried to this machine finished, without its tickets."""
    done = store.done()
    return all(_carried(config, store, seed, done) for seed in config.seeds)


def run_imp(
    config: ExperimentConfig,
    store: RunStore,
    splits_of: dict[int, Splits],
    template: nn.Module,
    device: torch.device,
) -> None:
    """IMP for every seed of `config`, round by round: every seed's ticket and controls of a round
    train together. Resumes each seed after its last round whose rows and next ticket exist."""
    for seed in config.seeds:  # a damaged ticket is dropped, and the round that made it recomputed below
        for path in sorted(store.ticket_path(seed, 0).parent.glob("round*.pt")):
            try:
                Ticket.load(path)
            except ConfigError as error:
                LOG.warning("%s is damaged (%s): the round that made it will be recomputed", path, error)
                path.unlink()
        if not store.ticket_path(seed, 0).exists():  # theta_0 needs no training: drawn (again) here
            theta_0 = fresh_weights(template, derive_seed(seed, "init"))
            Ticket(Mask.ones(template, config.prune_biases, config.prune_output), theta_0, seed, 0).save(
                store.ticket_path(seed, 0), store.run_id
            )
    done = store.done()
    first = {seed: _first_round(config, store, seed, done) for seed in config.seeds}
    first = {seed: round_index for seed, round_index in first.items() if round_index is not None}
    tickets: dict[int, Ticket] = {}
    for round_index in range(min(first.values(), default=config.rounds + 1), config.rounds + 1):
        has_next = round_index < config.rounds
        trunk, controls = [], []
        for seed in [s for s, r in first.items() if r <= round_index]:
            if round_index == first[seed]:
                tickets[seed] = Ticket.load(store.ticket_path(seed, round_index))
            ticket = tickets[seed]
            if (seed, round_index, "ticket") not in done or (
                has_next and not store.ticket_path(seed, round_index + 1).exists()
            ):
                trunk.append((ticket, "ticket"))
            controls += [
                (ticket.variant(kind, template, splits_of[seed], config.init_pruning_counts), kind)
                for kind in kinds_at(round_index, config.controls)[1:]
                if (seed, round_index, kind) not in done
            ]
        rewinding = config.reset == "rewind"
        rewind_iteration = config.rewind_iteration if rewinding and round_index == 0 else None
        first_step = config.rewind_iteration if rewinding and round_index > 0 else 0
        for ticket, kind, model, result in train_tickets(
            trunk + controls, template, splits_of, config, device, rewind_iteration, first_step
        ):
            if kind == "ticket" and has_next and not store.ticket_path(ticket.seed, round_index + 1).exists():
                reset_to = result.rewind_state if rewind_iteration else ticket.weights
                if config.reset == "reinit":
                    reset_to = fresh_weights(template, derive_seed(ticket.seed, round_index + 1, "reset"))
                mask = next_mask(model.cpu(), ticket, config)
                Ticket(mask, reset_to, ticket.seed, round_index + 1).save(
                    store.ticket_path(ticket.seed, round_index + 1), store.run_id
                )
            if (ticket.seed, round_index, kind) not in done:
                row = result_row(config, ticket, kind, result, splits_of[ticket.seed], template)
                store.append(row)
                tracking.log_rows(config, store, row)
        if has_next:
            for seed in tickets:
                tickets[seed] = Ticket.load(store.ticket_path(seed, round_index + 1))
