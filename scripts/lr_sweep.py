"""Learning-rate and step-budget sweep: how the study's dense training settings were chosen.

Trains DENSE networks (no pruning: round 0 of IMP, with the same initial weights and data order
as `find_tickets`) for each setting of a grid and seeds 0..N-1, and prints one row per setting:
the seed-mean early-stopping step (the step of least validation loss), how many seeds converged
(finite, early stop after step 0 and before the last evaluation, so the step budget is long enough
to see the validation loss turn up), the best validation loss, the test accuracy at early stop and
the time per model. A setting that stops at its last evaluation needs more steps or a larger
learning rate. Grids with `choose_lr` also print each optimizer's chosen learning rate.

Fully connected models (fc, lenet300) train their seeds stacked, up to --stack at a time (a
model's numbers do not depend on its stack; its train/eval seconds are the stack's, shared
equally). `--stack 1` trains each model alone, for per-run timings.

    python scripts/lr_sweep.py --grid quick quick-digits q4-full
    python scripts/lr_sweep.py --grid q3                       # Q3's lrs at the quick budget; picks one
    python scripts/lr_sweep.py --grid quick-budget full
    python scripts/lr_sweep.py --grid quick --history          # also each setting's seed-0 val losses
    python scripts/lr_sweep.py --grid timing --seeds 1 --stack 1    # one lenet300 run alone
    python scripts/lr_sweep.py --grid timing --seeds 16 --stack 16  # 16 lenet300s as one stack
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from statistics import mean
from typing import Any

import pandas as pd

from lthutils.config import ExperimentConfig
from lthutils.data import DatasetUnavailableError, load_dataset
from lthutils.experiments import Setting, prepare
from lthutils.lottery import derive_seed, fresh_weights
from lthutils.pruning import Mask
from lthutils.training import MAX_STACKED_MODELS, TrainResult, stackable, train_models


@dataclasses.dataclass(frozen=True)
class Grid:
    """Settings trained together: `shared` fields plus each of `settings`, for seeds 0..seeds-1."""

    shared: dict[str, Any]
    settings: list[dict[str, Any]]
    seeds: int = 2  # default seed count (--seeds overrides)
    choose_lr: bool = False  # print each optimizer's chosen lr (see choose_lrs)


ADAM = {"optimizer": "adam", "lr": 1.2e-3}
LENET300_ADAM = {"model": "lenet300", **ADAM}


def sgd(lr: float) -> dict[str, Any]:
    return {"optimizer": "sgd", "lr": lr, "momentum": 0.9}


def fc(n_layers: int, n_neurons: int) -> dict[str, Any]:
    return {"model": "fc", "n_layers": n_layers, "n_neurons": n_neurons}


QUICK = {"dataset": "fashionmnist", "num_train": 5000, "iterations": 1500, "eval_every": 100, "precision": "bf16"}
# the quick budget the study runs at: 5,000 training and 2,000 validation images, 800 steps
QUICK_BUDGET = {**QUICK, "val_size": 2000, "iterations": 800}
# the unscaled settings: the whole training pool in fp32 for 10,000 steps
FULL = {"num_train": None, "model": "lenet300", "iterations": 10000, "eval_every": 100, "precision": "fp32"}

GRIDS: dict[str, Grid] = {
    "quick": Grid(
        QUICK,
        [
            LENET300_ADAM,
            {**fc(1, 10), **ADAM},
            {**fc(3, 300), **ADAM},
            *({"model": "lenet300", **sgd(lr)} for lr in (0.01, 0.03, 0.1)),
        ],
    ),
    # digits5k: 4,000 training images (1,000 test); 400 of them validate, so num_train <= 3,600
    "quick-digits": Grid({**QUICK, "dataset": "digits5k", "num_train": 3000}, [LENET300_ADAM]),
    "q4-full": Grid({**QUICK, "num_train": None}, [LENET300_ADAM]),  # the whole pool: 55,000 images
    "timing": Grid(QUICK, [LENET300_ADAM]),
    # Q3's per-optimizer learning rates at the quick budget
    "q3": Grid(
        {**QUICK_BUDGET, "model": "lenet300"},
        [
            *(sgd(lr) for lr in (0.003, 0.01, 0.03, 0.1)),
            *({"optimizer": "adam", "lr": lr} for lr in (3e-4, 1.2e-3, 3e-3)),
        ],
        seeds=5,
        choose_lr=True,
    ),
    # the other quick settings at the same budget
    "quick-budget": Grid(
        {**QUICK_BUDGET, **ADAM},
        [
            fc(1, 50),
            fc(1, 100),
            fc(2, 100),
            fc(2, 300),
            {"model": "lenet300"},
            # digits5k's pool is 4,000 images; val_size None validates on 400 of them
            {"model": "lenet300", "dataset": "digits5k", "num_train": 3000, "val_size": None},
        ],
        seeds=5,
    ),
    # mnist is skipped, with a note, when it cannot be loaded (no copy under the data root, offline)
    "full": Grid(
        FULL,
        [
            {"dataset": "fashionmnist", **ADAM},
            *({"dataset": "fashionmnist", **sgd(lr)} for lr in (0.01, 0.03)),
            {"dataset": "mnist", **ADAM},
        ],
        seeds=1,
    ),
}


def train_dense(config: ExperimentConfig, seeds: list[int], stack: int) -> tuple[Setting, list[TrainResult], float]:
    """Train a dense model per seed (as IMP's round 0 does); return the setting, the results and
    the wall seconds of all the training (data loading left out)."""
    setting = prepare(dataclasses.replace(config, seeds=tuple(seeds), quiet=True))
    config, template = setting.config, setting.template
    stack = min(stack, MAX_STACKED_MODELS) if stackable(template) else 1
    results: list[TrainResult] = []
    started = time.perf_counter()
    for start in range(0, len(seeds), stack):
        chunk = seeds[start : start + stack]
        models = []
        for seed in chunk:
            model = copy.deepcopy(template)
            model.load_state_dict(fresh_weights(template, derive_seed(seed, "init")))
            models.append(model.to(setting.device))
        masks = [Mask.ones(model) for model in models]
        splits = [setting.splits(seed) for seed in chunk]
        results += train_models(models, masks, splits, config, [derive_seed(seed, 0, "data") for seed in chunk])
    return setting, results, time.perf_counter() - started


def row(setting: Setting, results: list[TrainResult], seconds: float) -> dict[str, Any]:
    config = setting.config
    return {
        "dataset": config.dataset,
        "model": config.architecture,
        "num_train": setting.num_train,
        "val_size": "default" if config.val_size is None else config.val_size,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "iterations": config.iterations,
        "eval_every": config.eval_every,
        "precision": config.precision,
        "early_stop": mean([r.early_stop_iter for r in results]),
        "converged": f"{sum(r.converged for r in results)}/{len(results)}",
        "diverged": sum(r.diverged for r in results),
        "best_val_loss": mean([r.best_val_loss for r in results]),
        "test_acc_es_%": 100 * mean([r.test_acc_at_early_stop for r in results]),
        "train_s/model": mean([r.train_seconds for r in results]),
        "eval_s/model": mean([r.eval_seconds for r in results]),
        "seconds": seconds,
    }


def choose_lrs(runs: list[tuple[Setting, list[TrainResult]]]) -> dict[str, float | None]:
    """Per optimizer: among the learning rates whose dense runs converged for every seed, the one
    with the least mean best validation loss (None when no learning rate converged for all)."""
    chosen: dict[str, float | None] = {}
    best: dict[str, float] = {}
    for setting, results in runs:
        optimizer, lr = setting.config.optimizer, setting.config.lr
        chosen.setdefault(optimizer, None)
        if not all(r.converged for r in results):
            continue
        loss = mean([r.best_val_loss for r in results])
        if loss < best.get(optimizer, math.inf):
            chosen[optimizer], best[optimizer] = lr, loss
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="+", choices=sorted(GRIDS), required=True)
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per setting (default: the grid's own count)")
    parser.add_argument("--stack", type=int, default=MAX_STACKED_MODELS, help="models per stack; 1: each alone")
    parser.add_argument("--history", action="store_true", help="print each setting's seed-0 validation losses")
    args = parser.parse_args()
    if (args.seeds is not None and args.seeds < 1) or args.stack < 1:
        parser.error("--seeds and --stack must be positive")
    for name in args.grid:
        grid = GRIDS[name]
        seeds = list(range(args.seeds or grid.seeds))
        rows, runs, histories = [], [], {}
        for fields in grid.settings:
            config = ExperimentConfig(**{**grid.shared, **fields})
            try:
                load_dataset(config.dataset, config.data_root)
            except DatasetUnavailableError as error:
                print(f"[{name}] skipped {config.architecture} on {config.dataset}: {error}", flush=True)
                continue
            setting, results, seconds = train_dense(config, seeds, args.stack)
            rows.append(row(setting, results, seconds))
            runs.append((setting, results))
            print(f"[{name}] {len(rows)}/{len(grid.settings)} done: {label(setting)} in {seconds:.1f}s", flush=True)
            histories[label(setting)] = dict(results[0].history)
        print(f"\n== {name}: {len(seeds)} seed(s), dense, stacks of up to {args.stack} ==")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        if grid.choose_lr:
            print(f"\n-- {name}: chosen lr per optimizer (converged for every seed, least mean best val loss) --")
            for optimizer, lr in choose_lrs(runs).items():
                print(f"{optimizer}: {'none converged' if lr is None else f'{lr:g}'}")
        if args.history:
            print(f"\n-- {name}: validation loss of seed 0 by step --")
            print(pd.DataFrame(histories).rename_axis("step").to_string(float_format=lambda x: f"{x:.4f}"))


def label(setting: Setting) -> str:
    config = setting.config
    return f"{config.dataset} {config.architecture} {config.optimizer} {config.lr:g}"


if __name__ == "__main__":
    main()
