"""Does bf16 change what a study concludes? The acceptance IMP run in fp32 and in bf16, per level.

Runs (or resumes) `python -m lthutils imp --model lenet300 --dataset fashionmnist --rounds 10
--rate 0.2 --epochs 3 --seeds 3` once per precision, into exp_result/precision/, and prints per
pruning level and kind the mean test accuracy at early stop in each precision, the paired
difference bf16 - fp32 (the same seed shares theta_0, masks' starting point and data order),
and the spread of the seeds within each precision, with each precision's wall time.

    python bench/precision_effect.py
"""

from __future__ import annotations

import time

import pandas as pd

from lthutils.config import ExperimentConfig
from lthutils.experiments import find_tickets
from lthutils.results import read_results


def main() -> None:
    frames, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        config = ExperimentConfig(
            name="precision",
            model="lenet300",
            dataset="fashionmnist",
            rounds=10,
            prune_rate=0.2,
            epochs=3,
            seeds=(0, 1, 2),
            precision=precision,
            quiet=True,
        )
        started = time.perf_counter()
        find_tickets(config)
        seconds[precision] = time.perf_counter() - started
        frames[precision] = read_results(f"exp_result/precision/{config.run_id()}/results.csv")
    keys = ["round", "kind", "seed"]
    both = frames["fp32"].merge(frames["bf16"], on=keys, suffixes=("_fp32", "_bf16"))
    both["difference"] = 100 * (both["test_acc_at_early_stop_bf16"] - both["test_acc_at_early_stop_fp32"])
    table = both.groupby(["round", "kind"]).agg(
        weights_remaining=("weights_remaining_fp32", "first"),
        fp32_mean=("test_acc_at_early_stop_fp32", lambda v: 100 * v.mean()),
        fp32_sd=("test_acc_at_early_stop_fp32", lambda v: 100 * v.std()),
        bf16_mean=("test_acc_at_early_stop_bf16", lambda v: 100 * v.mean()),
        bf16_sd=("test_acc_at_early_stop_bf16", lambda v: 100 * v.std()),
        paired_difference=("difference", "mean"),
        paired_difference_sd=("difference", "std"),
        seeds=("seed", "nunique"),
    )
    table["weights_remaining"] = 100 * table["weights_remaining"]
    larger_sd = table[["fp32_sd", "bf16_sd"]].max(axis=1)
    table["|difference| < larger seed sd"] = table["paired_difference"].abs() < larger_sd
    print("test accuracy at early stop (%), per pruning level and kind; differences in points")
    print(table.reset_index().to_markdown(index=False, floatfmt=".2f"))
    print(pd.Series(seconds).map("{:.0f} s".format).to_string())


if __name__ == "__main__":
    main()
