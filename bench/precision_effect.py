"""Does bf16 change what a study concludes? One IMP run in fp32 and in bf16, per level and on the
study's primary endpoint.

For each setting asked for, runs (or resumes) IMP with 10 rounds of 20%, 3 epochs per round, the
reinit control and 3 seeds on the whole training set, once per precision, into
exp_result/precision/, and prints per pruning level and kind the mean test accuracy at early
stop in each precision, the paired difference bf16 - fp32 (the same seed shares theta_0, the
masks' starting point and the data order) and the seeds' spread; then the primary endpoint the
questions decide on (each seed's mean ticket - reinit margin over the levels at or below 50% of
weights remaining) in each precision, their paired difference with its 95% t-interval, and each
precision's wall time.

    python bench/precision_effect.py                       # the first setting (the quick study's)
    python bench/precision_effect.py lenet300-sgd-mnist lenet5-adam-mnist
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from scipy import stats

from lthutils.config import ExperimentConfig
from lthutils.experiments import find_tickets
from lthutils.results import read_results

SETTINGS = {  # name -> config fields: the full study's models, optimizers and datasets
    "lenet300-adam-fashionmnist": dict(model="lenet300", dataset="fashionmnist"),
    "lenet300-adam-mnist": dict(model="lenet300", dataset="mnist", optimizer="adam", lr=1.2e-3),
    "lenet300-sgd-mnist": dict(model="lenet300", dataset="mnist", optimizer="sgd", lr=0.01, momentum=0.9),
    "lenet5-adam-mnist": dict(model="lenet5", dataset="mnist", optimizer="adam", lr=1.2e-3),
}


def run(fields: dict) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    frames, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        config = ExperimentConfig(
            name="precision",
            rounds=10,
            prune_rate=0.2,
            epochs=3,
            seeds=(0, 1, 2),
            precision=precision,
            quiet=True,
            **fields,
        )
        started = time.perf_counter()
        find_tickets(config)
        seconds[precision] = time.perf_counter() - started
        frames[precision] = read_results(f"exp_result/precision/{config.run_id()}/results.csv")
    return frames, seconds


def per_level(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
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
    return table.reset_index()


def primary_endpoint(frame: pd.DataFrame) -> pd.Series:
    """Per seed, the mean ticket - reinit margin (points) over the levels at or below 50% remaining."""
    pruned = frame[(frame["round"] > 0) & (frame["weights_remaining"] <= 0.5)]
    wide = pruned.pivot_table(index=["seed", "round"], columns="kind", values="test_acc_at_early_stop")
    return (100 * (wide["ticket"] - wide["reinit"])).groupby("seed").mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="*", choices=list(SETTINGS), default=[next(iter(SETTINGS))])
    for name in parser.parse_args().settings:
        frames, seconds = run(SETTINGS[name])
        print(f"## {name}\n\ntest accuracy at early stop (%), per pruning level and kind; differences in points")
        print(per_level(frames).to_markdown(index=False, floatfmt=".2f"))
        endpoint = pd.DataFrame({p: primary_endpoint(frames[p]) for p in ("fp32", "bf16")})
        difference = endpoint["bf16"] - endpoint["fp32"]
        low, high = stats.t.interval(0.95, len(difference) - 1, difference.mean(), stats.sem(difference))
        print(
            f"\nprimary endpoint (ticket - reinit, mean over levels <= 50% remaining), per seed: "
            f"fp32 {', '.join(f'{v:+.2f}' for v in endpoint['fp32'])}; bf16 "
            f"{', '.join(f'{v:+.2f}' for v in endpoint['bf16'])}; bf16 - fp32 {difference.mean():+.2f} points "
            f"(95% t-interval {low:+.2f} to {high:+.2f}, {len(difference)} seeds)"
        )
        print(f"wall time: fp32 {seconds['fp32']:.0f} s, bf16 {seconds['bf16']:.0f} s\n")


if __name__ == "__main__":
    main()
