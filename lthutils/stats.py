"""Paired statistics, the decision rule conclusions are drawn with, and chance-corrected mask overlap.

A ticket and its control of one seed share theta_0's seed, the data order and (for reinit) the
mask, so they are compared as pairs: per cell (setting x pruning level) the per-seed difference
ticket - control, in points of accuracy. A pair with a diverged (or missing) side is dropped.

The decision rule, declared before any number: with a margin `delta` (points) and level `alpha`,
a cell is
- "better" when the one-sided t-test of "mean difference > +delta" rejects its null at alpha
  after Holm's correction across the cells of one comparison (one question's family of cells);
- "worse" when the same holds for "mean difference < -delta";
- "equivalent" when both one-sided tests of "mean difference > -delta" and "< +delta" reject
  (two one-sided tests, TOST), Holm-corrected;
- "inconclusive" otherwise, and always with fewer than 2 pairs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from lthutils.pruning import Mask

VERDICTS = ("better", "equivalent", "worse", "inconclusive")


def paired(
    first: pd.DataFrame, second: pd.DataFrame, keys: list[str], metric: str = "test_acc_at_early_stop"
) -> pd.DataFrame:
    """`keys` and the difference first - second of `metric` in points, one row per key both frames
    have (each frame holds at most one row per key). A pair with a NaN side (a diverged run,
    blanked by study.tidy) is dropped, both sides."""
    merged = first[[*keys, metric]].merge(second[[*keys, metric]], on=keys, suffixes=("", "_second"))
    merged["difference"] = 100 * (merged[metric] - merged[f"{metric}_second"])
    return merged.dropna(subset=["difference"])[[*keys, "difference"]].reset_index(drop=True)


def paired_differences(
    frame: pd.DataFrame, cell: list[str], control: str, metric: str = "test_acc_at_early_stop"
) -> pd.DataFrame:
    """Per cell and seed: `metric` of kind 'ticket' minus that of kind `control`, in points (paired)."""
    of_kind = {kind: frame[frame["kind"] == kind] for kind in ("ticket", control)}
    return paired(of_kind["ticket"], of_kind[control], [*cell, "seed"], metric)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The two-sided t confidence interval of the mean (n - 1 degrees of freedom); NaNs if n < 2."""
    if len(values) < 2:
        return math.nan, math.nan
    sem = scipy_stats.sem(values)
    if sem == 0:
        return float(np.mean(values)), float(np.mean(values))
    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=np.mean(values), scale=sem)
    return float(low), float(high)


def _one_sided(values: np.ndarray, bound: float, alternative: str) -> float:
    """p-value of the t-test that the mean is `alternative` ('greater' or 'less') than `bound`."""
    if len(values) < 2:
        return 1.0
    if np.std(values) == 0:  # no spread (the t statistic is undefined): which side of the bound decides
        mean = float(np.mean(values))
        return 0.0 if (mean > bound if alternative == "greater" else mean < bound) else 1.0
    return float(scipy_stats.ttest_1samp(values, bound, alternative=alternative).pvalue)


def verdicts(
    differences: pd.DataFrame, cell: list[str], delta: float = 0.5, alpha: float = 0.05, confidence: float = 0.95
) -> pd.DataFrame:
    """Per cell (in order of first appearance): n, mean, sd, the t interval, Cohen's d_z
    (mean / sd), the Holm-adjusted p-values of the three tests, and the verdict of the rule in the
    module docstring (Holm across all cells given: pass one comparison's cells together)."""
    rows = []
    for key, group in differences.groupby(cell, sort=False):
        values = group["difference"].to_numpy(dtype=float)
        low, high = t_interval(values, confidence)
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        rows.append(
            {
                **dict(zip(cell, key if isinstance(key, tuple) else (key,))),
                "n": len(values),
                "mean": float(np.mean(values)) if len(values) else math.nan,
                "sd": sd,
                "low": low,
                "high": high,
                "effect_size": float(np.mean(values)) / sd if sd and sd > 0 else math.nan,
                "p_better": _one_sided(values, delta, "greater"),
                "p_worse": _one_sided(values, -delta, "less"),
                "p_equivalent": max(_one_sided(values, -delta, "greater"), _one_sided(values, delta, "less")),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table.assign(verdict=pd.Series(dtype=str))
    for test in ("p_better", "p_worse", "p_equivalent"):
        table[test] = multipletests(table[test], method="holm")[1]
    table["verdict"] = np.select(
        [table["n"] < 2, table["p_better"] < alpha, table["p_worse"] < alpha, table["p_equivalent"] < alpha],
        ["inconclusive", "better", "worse", "equivalent"],
        "inconclusive",
    )
    return table


def expected_jaccard(size: int, first: int, second: int) -> float:
    """E[|A & B| / |A | B|] for independent uniformly random subsets of sizes `first` and
    `second` of `size` elements: their intersection S is hypergeometric, and E[J] = E[S / (first +
    second - S)] sums over its values. By Hoeffding's inequality S lies more than `reach` from its
    mean with probability below 2e-52, so the sum runs within reach, with the probabilities built
    from their successive ratios (scipy's hypergeom.pmf is the oracle in the tests)."""
    if first == 0 and second == 0:
        return 1.0
    mean, reach = first * second / size, math.ceil(math.sqrt(60 * min(first, second))) + 1
    low = max(0, first + second - size, math.floor(mean) - reach)
    high = min(first, second, math.ceil(mean) + reach)
    shared = np.arange(low, high + 1, dtype=float)
    before = shared[:-1]  # P(S = k + 1) / P(S = k) for k in before
    log_ratio = np.log((first - before) * (second - before)) - np.log(
        (before + 1) * (size - first - second + before + 1)
    )
    log_p = np.concatenate([[0.0], np.cumsum(log_ratio)])
    probabilities = np.exp(log_p - log_p.max())
    probabilities /= probabilities.sum()
    return float(np.sum(probabilities * shared / (first + second - shared)))


def mask_overlap(first: Mask, second: Mask) -> pd.DataFrame:
    """Per masked entry and 'overall': survivors of each mask, their Jaccard overlap J, its
    expectation E[J] for independent random masks with the same per-entry counts, and the
    chance-corrected overlap (J - E[J]) / (1 - E[J]): 1 for the same mask, about 0 for unrelated
    ones. The overall E[J] is the ratio of the expected intersection and union summed over entries."""
    if first.keys() != second.keys():
        raise ValueError("masks of different models")
    rows = []
    for name in first:
        a, b = first[name].bool(), second[name].bool()
        size, count_a, count_b = a.numel(), int(a.sum()), int(b.sum())
        shared = int((a & b).sum())
        rows.append(
            {
                "layer": name,
                "size": size,
                "alive_first": count_a,
                "alive_second": count_b,
                "shared": shared,
                "expected_shared": count_a * count_b / size,
                "jaccard": shared / (count_a + count_b - shared) if count_a + count_b else 1.0,
                "expected_jaccard": expected_jaccard(size, count_a, count_b),
            }
        )
    table = pd.DataFrame(rows)
    union = (table["alive_first"] + table["alive_second"]).sum()
    overall = {
        "layer": "overall",
        **table[["size", "alive_first", "alive_second", "shared", "expected_shared"]].sum().to_dict(),
    }
    overall["jaccard"] = overall["shared"] / (union - overall["shared"])
    overall["expected_jaccard"] = overall["expected_shared"] / (union - overall["expected_shared"])
    table = pd.concat([table, pd.DataFrame([overall])], ignore_index=True)
    table["chance_corrected"] = (table["jaccard"] - table["expected_jaccard"]) / (1 - table["expected_jaccard"])
    return table
