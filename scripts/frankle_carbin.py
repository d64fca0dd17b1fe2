"""Frankle & Carbin (2019), LeNet-300-100 on MNIST: the paper's stated effects against a run of ours.

Reads the results.csv of an IMP run with the reinit control (the command is in docs/RESULTS.md)
and prints, effect by effect, the paper's statement, our per-seed paired values, their mean and
95% t interval, and whether ours agrees: a directional effect agrees when its interval lies on
the paper's side of zero, "about the dense network's accuracy" when the two one-sided tests
(margin 0.5 points) put it within +-0.5 points (lthutils.stats.verdicts: equivalent, or better /
worse by less than the margin), and an effect is "not shown" when
the interval holds zero. Accuracies are test accuracies at the early-stopping iteration (the
step of least validation loss), as in the paper; early-stopping changes are per-seed ratios.

    python scripts/frankle_carbin.py exp_result/frankle-carbin/<run_id>
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lthutils.results import read_results
from lthutils.stats import t_interval, verdicts

ACCURACY = "test_acc_at_early_stop"


def level(rows: pd.DataFrame, percent: float) -> int:
    """The round whose weights remaining is nearest `percent`."""
    remaining = rows.groupby("round")["weights_remaining"].first()
    return int((remaining * 100 - percent).abs().idxmin())


def per_seed(rows: pd.DataFrame, round_index: int, kind: str, column: str) -> pd.Series:
    chosen = rows[(rows["round"] == round_index) & (rows["kind"] == kind)]
    return chosen.set_index("seed")[column].sort_index()


def summary(values: pd.Series, expected_sign: int | None) -> dict:
    values = values.dropna()
    low, high = t_interval(values.to_numpy())
    if expected_sign is None:  # "about the same": two one-sided tests with a 0.5-point margin
        judged = verdicts(pd.DataFrame({"cell": 0, "difference": values}), ["cell"]).iloc[0]
        within = judged["verdict"] == "equivalent" or judged["margin"] == "within"
        agrees = "agrees" if within else f"not shown ({judged['verdict']})"
    elif np.isnan(low):
        agrees = "not shown (fewer than 2 seeds)"
    elif expected_sign * low > 0 and expected_sign * high > 0:
        agrees = "agrees"
    elif expected_sign * low < 0 and expected_sign * high < 0:
        agrees = "disagrees (the opposite sign)"
    else:
        agrees = "not shown (interval holds 0)"
    return {
        "ours, per seed": " ".join(f"{v:+.2f}" for v in values),
        "mean": values.mean(),
        "95% interval": f"[{low:+.2f}, {high:+.2f}]",
        "agrees?": agrees,
    }


def effects(rows: pd.DataFrame) -> pd.DataFrame:
    dense_acc = per_seed(rows, 0, "ticket", ACCURACY)
    dense_stop = per_seed(rows, 0, "ticket", "early_stop_iter")
    table = []

    def add(paper: str, measure: str, values: pd.Series, sign: int | None) -> None:
        table.append({"paper says": paper, "measure": measure, **summary(values, sign)})

    r51, r21, r13, r3 = (level(rows, p) for p in (51.3, 21.0, 13.5, 3.6))
    ticket = {r: per_seed(rows, r, "ticket", ACCURACY) for r in (r51, r21, r13, r3)}
    stop = {r: per_seed(rows, r, "ticket", "early_stop_iter") for r in (r51, r21)}
    pct = {r: f"{100 * rows[rows['round'] == r]['weights_remaining'].iloc[0]:.1f}%" for r in (r51, r21, r13, r3)}
    add(
        f"at 51.3% tickets learn faster than dense ({pct[r51]})",
        "early-stop step, % change",
        100 * (stop[r51] / dense_stop - 1),
        -1,
    )
    add(
        f"at 21% early stop ~38% earlier than dense ({pct[r21]})",
        "early-stop step, % change",
        100 * (stop[r21] / dense_stop - 1),
        -1,
    )
    add(
        f"at 21% accuracy ~0.5 pt above reinit ({pct[r21]})",
        "ticket - reinit, points",
        100 * (ticket[r21] - per_seed(rows, r21, "reinit", ACCURACY)),
        1,
    )
    add(
        f"at 13.5% accuracy ~0.3 pt above dense ({pct[r13]})",
        "ticket - dense, points",
        100 * (ticket[r13] - dense_acc),
        1,
    )
    add(
        f"at 3.6% back to about dense accuracy ({pct[r3]})",
        "ticket - dense, points",
        100 * (ticket[r3] - dense_acc),
        None,
    )
    add(
        f"reinit stops later as it gets sparser ({pct[r3]})",
        "reinit early-stop step, % change vs dense",
        100 * (per_seed(rows, r3, "reinit", "early_stop_iter") / dense_stop - 1),
        1,
    )
    add(
        f"reinit loses accuracy as it gets sparser ({pct[r3]})",
        "reinit - dense, points",
        100 * (per_seed(rows, r3, "reinit", ACCURACY) - dense_acc),
        -1,
    )
    return pd.DataFrame(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder (exp_result/<name>/<run_id>)")
    rows = read_results(parser.parse_args().run / "results.csv")
    seeds = sorted(rows["seed"].unique())
    rounds = int(rows["round"].max())
    print(f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), rounds 0-{rounds}; not converged: ", end="")
    print(int((~rows["converged"].astype(bool)).sum()), "of", len(rows), "runs")
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(effects(rows).to_string(index=False, float_format=lambda x: f"{x:+.2f}"))


if __name__ == "__main__":
    main()
