"""The original study's Q4 through its own API: do tickets found on few MNIST images win on all 60,000?

For each model, num_train and seed, runs `expIntegration` then `evalIntegration` as the study's
notebook calls them (positional; its recipe: 20 epochs, 10 levels, batch 16, lr 1e-3, momentum
0.9, pr 20), once with reinit=False (tickets) and once with reinit=True (its reinitialized
trajectory). Then, as its analysis cell does, takes the last level's (13.4% of weights) final test
accuracy after whole-set retraining (at 60,000, the expIntegration file: the study did not
retrain there) and prints tickets minus reinit, in points, beside the study's published
single-seed numbers. With two seeds or more it adds the paired mean, its 95% t interval and the
kit's verdict (lthutils.stats.verdicts: a t-test against 0 with Holm across the table's rows,
equivalence within 0.5 points).

    python scripts/original_q4.py --seeds 42                  # as the study ran it (one seed)
    python scripts/original_q4.py --seeds 42 43 44 45 46      # does its answer survive five seeds?
    python scripts/original_q4.py --seeds 42 --sizes 60000 --models 1x10 1x100 2x10 2x100  # its size table

The differences land in exp_result/original_q4.csv (--table; one row per model, size and seed; a
rerun adds to it and repeats no finished work: the runs resume from their rows).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from lthutils import evalIntegration, expIntegration
from lthutils.legacy import study_file
from lthutils.stats import verdicts

# tickets minus reinit at 13.4% of weights, test accuracy as a fraction, from the study's notebook outputs
STUDY = {
    ("2x10", 100): 0.4315,
    ("2x10", 1000): 0.1141,
    ("2x10", 10000): 0.1018,
    ("2x10", 60000): 0.1678,
    ("1x10", 60000): -0.0863,
    ("1x100", 60000): 0.0086,
    ("2x100", 60000): 0.0088,
}


def last_level_accuracy(args: tuple) -> float:
    """The final test accuracy of the last level, read back from the study's files as its cells do."""
    num_train = args[3]
    evaluated = torch.load(study_file(args, "" if num_train == 60000 else "_evaluate"))
    return evaluated[max(evaluated)]["accu_per_epoch"][-1]


def run(model: str, num_train: int, seed: int, device: torch.device) -> float:
    """Tickets minus reinit (points) for one model, size and seed."""
    n_layers, n_neurons = (int(part) for part in model.split("x"))
    accuracy = {}
    for reinit in (False, True):
        args = (10, 20, 10, num_train, seed, reinit, 16, "fc", "mnist", n_layers, n_neurons, 1e-3, 20, 0.9, device)
        tickets_path = expIntegration(*args)
        if num_train != 60000:
            evalIntegration(*args, tickets_path)
        accuracy[reinit] = last_level_accuracy(args)
    return 100 * (accuracy[False] - accuracy[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 60000])
    parser.add_argument("--models", nargs="+", default=["2x10"], help="fc shapes, n_layers x n_neurons")
    parser.add_argument("--table", type=Path, default=Path("exp_result/original_q4.csv"), help="where rows go")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    done = pd.DataFrame(columns=["model", "num_train", "seed", "difference"])
    if args.table.exists():
        done = pd.read_csv(args.table)
    for model in args.models:
        for num_train in args.sizes:
            for seed in args.seeds:
                if ((done["model"] == model) & (done["num_train"] == num_train) & (done["seed"] == seed)).any():
                    continue
                row = {
                    "model": model,
                    "num_train": num_train,
                    "seed": seed,
                    "difference": run(model, num_train, seed, device),
                }
                done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
                done.to_csv(args.table, index=False)
    chosen = done[done["model"].isin(args.models) & done["num_train"].isin(args.sizes) & done["seed"].isin(args.seeds)]
    table = verdicts(chosen, ["model", "num_train"])
    table["study"] = [100 * STUDY.get((m, n), float("nan")) for m, n in zip(table["model"], table["num_train"])]
    table["seeds"] = [
        " ".join(f"{d:+.2f}" for d in chosen[(chosen["model"] == m) & (chosen["num_train"] == n)]["difference"])
        for m, n in zip(table["model"], table["num_train"])
    ]
    columns = ["model", "num_train", "study", "seeds", "n", "mean", "low", "high", "verdict"]
    print("tickets minus reinit at 13.4% of weights, test accuracy in points (study: its one published run)")
    print(table[columns].to_string(index=False, float_format=lambda x: f"{x:+.2f}"))


if __name__ == "__main__":
    main()
