"""Paired statistics, the decision rule conclusions are drawn with, power, and mask overlap.

A ticket and its control of one seed share theta_0's seed, the data order and (for reinit) the
mask, so they are compared as pairs: per seed the difference ticket - control, in points of
accuracy. A pair with a diverged (or missing) side is dropped. A comparison's *settings* (a model,
a source -> target, a search size) are judged on one number per seed each, their *primary
endpoint* (lthutils.analysis declares it: by default the seed's mean difference over the pruned
levels of a band of sparsities), and the rule is, with a margin `delta` (points) and level `alpha`:

- **better** / **worse**: the two-sided one-sample t-test of "mean = 0" rejects at alpha after
  Holm's correction across the settings of the comparison, the sign of the mean giving the
  direction (each one-sided claim at alpha / 2, so a true null is called better or worse with
  probability at most alpha). A better (worse) verdict also says whether the difference clears
  the margin: **by more than delta** when the one-sided test of "mean > +delta" ("< -delta")
  rejects at the same level, **by less than delta** when the equivalence test rejects too, else
  **not shown to exceed delta**;
- **equivalent**: both one-sided tests of lying within +-delta reject (TOST, each at alpha),
  Holm-corrected across the settings;
- **inconclusive** otherwise, and always with fewer than 2 pairs.

With a sequential seed design (lthutils.sequential) the same tests run at every look, each at the
nominal level of its alpha-spending boundary for its current Holm level (Holm with the alpha of
rejected hypotheses passed on, as in Maurer & Bretz 2013); a setting decided at a look is settled
there, with the seeds it had.

Per pruning level the differences are estimates (secondary): a 95% t interval, and a 95% interval
simultaneous over a setting's levels by the max-|t| method, its critical value drawn from normal
samples with the seeds' own covariance across levels (5 seeds allow only 32 sign flips, too few
for a permutation max-t at 0.05). A level's verdict reads off that interval.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.power import TTestPower

from lthutils.pruning import Mask
from lthutils.sequential import SeedDesign

VERDICTS = ("better", "equivalent", "worse", "inconclusive")
DELTA = 0.5  # points of accuracy: about the spread float rounding alone gives one run's early-stop accuracy
ALPHA = 0.05
POWER = 0.8  # the power "seeds to decide" aims for
MOST_SEEDS = 1000  # beyond this, "more than 1,000 seeds"
# Differences (points) closer than this are equal: accuracies are float32 fractions, so the same
# number of images apart gives differences up to about 1e-5 points apart, while one image of a
# test set of N, averaged over L levels, is 100 / (N L) points: above this while N L < 1e6.
SPREAD_TOLERANCE = 1e-4


def paired(
    first: pd.DataFrame,
    second: pd.DataFrame,
    keys: list[str],
    metric: str = "test_acc_at_early_stop",
    dropna: bool = True,
) -> pd.DataFrame:
    """`keys` and the difference first - second of `metric` in points, one row per key both frames
    have (each frame holds at most one row per key). A pair with a NaN side (a diverged run,
    blanked by study.tidy) is dropped, both sides, or with `dropna` False kept with a NaN difference."""
    merged = first[[*keys, metric]].merge(second[[*keys, metric]], on=keys, suffixes=("", "_second"))
    merged["difference"] = 100 * (merged[metric] - merged[f"{metric}_second"])
    if dropna:
        merged = merged.dropna(subset=["difference"])
    return merged[[*keys, "difference"]].reset_index(drop=True)


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
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1)) / math.sqrt(len(values))
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, len(values) - 1)) * sem
    return mean - half, mean + half


def no_spread(values: np.ndarray) -> bool:
    """Whether a sample's differences are all equal, up to float rounding (SPREAD_TOLERANCE)."""
    return len(values) > 0 and float(np.ptp(values)) <= SPREAD_TOLERANCE


def t_test(values: np.ndarray, bound: float, alternative: str) -> float:
    """p-value of the one-sample t-test of the mean against `bound` ('two-sided', 'greater' or
    'less'); 1 with fewer than 2 values. With no spread (n equal differences, up to float
    rounding: no_spread; t is undefined, or huge on rounding noise) the exact sign test stands in
    (scipy's binomtest: n of n on one side, p = 0.5^n one-sided), so equal differences decide
    only with enough seeds (accuracies are discrete: equal differences happen)."""
    if len(values) < 2:
        return 1.0
    if no_spread(values):
        gap, away = float(np.mean(values)) - bound, SPREAD_TOLERANCE  # within it of the bound: not past it
        holds = {"two-sided": abs(gap) > away, "greater": gap > away, "less": gap < -away}[alternative]
        side = "two-sided" if alternative == "two-sided" else "greater"  # n of n on the side asked for
        return float(scipy_stats.binomtest(len(values), len(values), 0.5, side).pvalue) if holds else 1.0
    return float(scipy_stats.ttest_1samp(values, bound, alternative=alternative).pvalue)


def p_values(values: np.ndarray, delta: float) -> dict[str, float]:
    """The rule's three p-values for one sample of differences: mean = 0 (two-sided), within
    +-delta (TOST: the larger of its two one-sided p-values) and beyond the margin on the mean's
    side. The same as t_test (scipy's ttest_1samp) for each, computed at once: the simulations
    call this hundreds of thousands of times (tests/test_stats.py checks the two agree)."""
    n = len(values)
    if n < 2 or no_spread(values):
        mean = float(np.mean(values)) if n else 0.0
        return {
            "p_direction": t_test(values, 0.0, "two-sided"),
            "p_equivalent": max(t_test(values, -delta, "greater"), t_test(values, delta, "less")),
            "p_beyond": t_test(values, delta, "greater") if mean >= 0 else t_test(values, -delta, "less"),
        }
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1)) / math.sqrt(n)
    t = (mean - np.array([-delta, 0.0, delta])) / sem  # against -delta, 0, +delta
    greater, less = scipy_stats.t.sf(t, n - 1), scipy_stats.t.cdf(t, n - 1)  # P(T >= t), P(T <= t)
    return {
        "p_direction": float(min(1.0, 2 * min(greater[1], less[1]))),
        "p_equivalent": float(max(greater[0], less[2])),
        "p_beyond": float(greater[2] if mean >= 0 else less[0]),
    }


def describe(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """n, mean, sd, the t interval and Cohen's d_z (mean / sd) of a sample of differences."""
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    mean = float(np.mean(values)) if len(values) else math.nan
    low, high = t_interval(values, confidence)
    return {
        "n": len(values),
        "mean": mean,
        "sd": sd,
        "low": low,
        "high": high,
        "effect_size": mean / sd if sd > 0 and not no_spread(values) else math.nan,
    }


def verdicts(
    differences: pd.DataFrame,
    cell: list[str],
    delta: float = DELTA,
    alpha: float = ALPHA,
    design: SeedDesign | None = None,
) -> pd.DataFrame:
    """The rule of the module docstring for one family: one verdict per group of `cell` (in
    order of first appearance), each group's sample the rows' `difference` (NaN: a dropped pair).

    `design` None: every row at one look. With a design, a group reaches look k when it has rows
    of all of design.seeds_at(k) (it then uses theirs), and is tested at every look it reaches
    until decided. Columns: `cell`, the look it was decided at or last tested at (1-based; 0:
    none reached), `seeds` (its seeds there), describe(), the three p-values and the nominal
    levels they were held to there, `verdict` and `margin` ('beyond', 'within', 'not shown' for
    better / worse, else '')."""
    groups = list(differences.groupby(cell, sort=False)) if len(differences) else []
    looks = design.looks if design is not None else (None,)
    samples = [[_sample(group, design, k) for k in range(len(looks))] for _, group in groups]
    count = len(groups)
    decided: dict[str, dict[int, int]] = {"direction": {}, "equivalence": {}}
    last: dict[int, int] = {}

    def level(family: str, k: int) -> float:
        local = alpha / max(1, count - len(decided[family]))  # Holm: the alpha of the rejected passes on
        sides = 2 if family == "direction" else 1
        return float(design.nominal_levels(local, sides)[k]) if design is not None else local

    p = {}
    for k in range(len(looks)):
        active = [i for i in range(count) if samples[i][k] is not None and not _settled(decided, i)]
        for i in active:
            last[i], p[i, k] = k, {**p_values(samples[i][k], delta), "levels": {}}
        for family, name in (("direction", "p_direction"), ("equivalence", "p_equivalent")):
            while True:
                held_to = level(family, k)
                for i in active:
                    if i not in decided[family]:
                        p[i, k]["levels"][family] = held_to  # the level it faces, or was decided at
                newly = [
                    i
                    for i in active
                    if i not in decided[family] and len(samples[i][k]) >= 2 and p[i, k][name] <= held_to
                ]
                if not newly:
                    break
                decided[family].update({i: k for i in newly})
    rows = []
    for i, (key, _) in enumerate(groups):
        k = last.get(i)
        values = samples[i][k] if k is not None else np.array([])
        row = {**dict(zip(cell, key if isinstance(key, tuple) else (key,))), "look": 0 if k is None else k + 1}
        row["seeds"] = 0 if k is None else design.looks[k] if design is not None and design.sequential else len(values)
        row.update(describe(values))
        found = p.get((i, k), {"p_direction": 1.0, "p_equivalent": 1.0, "p_beyond": 1.0, "levels": {}})
        row.update({name: found[name] for name in ("p_direction", "p_equivalent", "p_beyond")})
        row["level_direction"] = found["levels"].get("direction", math.nan)
        row["level_equivalence"] = found["levels"].get("equivalence", math.nan)
        verdict, margin = "inconclusive", ""
        if i in decided["direction"]:
            verdict = "better" if row["mean"] > 0 else "worse"
            margin = "not shown"
            if row["p_beyond"] <= row["level_direction"] / 2:
                margin = "beyond"
            elif i in decided["equivalence"]:
                margin = "within"
        elif i in decided["equivalence"]:
            verdict = "equivalent"
        rows.append({**row, "verdict": verdict, "margin": margin})
    columns = [*cell, "look", "seeds", "n", "mean", "sd", "low", "high", "effect_size", "p_direction"]
    columns += ["p_equivalent", "p_beyond", "level_direction", "level_equivalence", "verdict", "margin"]
    return pd.DataFrame(rows, columns=columns)


def _settled(decided: dict[str, dict[int, int]], index: int) -> bool:
    return any(index in family for family in decided.values())


def _sample(group: pd.DataFrame, design: SeedDesign | None, look: int) -> np.ndarray | None:
    """A group's differences at a look (dropped pairs left out). A sequential look needs a row
    (a pair, or a dropped one as NaN) of each of its seeds (None: not reached); one look takes
    the rows of the design's seeds that are there."""
    if design is None:
        return group["difference"].dropna().to_numpy(dtype=float)
    wanted = design.seeds_at(look)
    if design.sequential and not set(wanted) <= set(group["seed"]):
        return None
    return group.loc[group["seed"].isin(wanted), "difference"].dropna().to_numpy(dtype=float)


def claim(verdict: str, margin: str, delta: float = DELTA) -> str:
    """A verdict in words: 'better, by more than 0.5 points', 'equivalent (within +-0.5 points)'..."""
    if verdict in ("better", "worse"):
        return {
            "beyond": f"{verdict}, by more than {points(delta)}",
            "within": f"{verdict}, by less than the {delta:g}-point margin",
            "not shown": f"{verdict}, not shown to exceed the {delta:g}-point margin",
        }[margin]
    if verdict == "equivalent":
        return f"equivalent (within +-{points(delta)})"
    return verdict


def points(value: float) -> str:
    """'0.5 points', '1 point'."""
    return f"{value:g} point" + ("" if value == 1 else "s")


# --- per-level estimates ------------------------------------------------------------------------


def max_t_critical(centered: np.ndarray, confidence: float, draws: int = 10_000, seed: int = 0) -> float:
    """The critical value c with P(max over levels |t| > c) = 1 - confidence for seeds x levels
    differences with the covariance of `centered` (each column centered), from `draws` normal
    samples of as many seeds with that covariance (a fixed seed: the same answer every time)."""
    n = centered.shape[0]
    generator = np.random.default_rng(seed)
    samples = generator.standard_normal((draws, n, n)) @ centered / math.sqrt(n - 1)
    sd = samples.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(samples.mean(axis=1) / (sd / math.sqrt(n)))
    t = np.where(sd > 0, t, 0.0)  # a level without spread has no t
    return float(np.quantile(t.max(axis=1), confidence))


def simultaneous(differences: pd.DataFrame, level: str, delta: float = DELTA, alpha: float = ALPHA) -> pd.DataFrame:
    """Per value of `level` (one setting's levels; rows: seed, `level`, difference): describe(),
    and the interval simultaneous over the levels (max-|t|, confidence 1 - alpha) from the seeds
    that have every level; `verdict`: better / worse when that interval excludes 0, equivalent
    when the simultaneous 1 - 2 alpha interval lies within +-delta, else inconclusive."""
    columns = [level, "n", "mean", "sd", "low", "high", "effect_size", "simultaneous_low", "simultaneous_high"]
    if differences.empty:  # every pair dropped (diverged)
        return pd.DataFrame(columns=[*columns, "verdict"])
    table = differences.pivot(index="seed", columns=level, values="difference").dropna()
    rows = []
    n = len(table)
    if n >= 2:
        flat = {name: no_spread(table[name].to_numpy()) for name in table.columns}
        centered = (table - table.mean()).to_numpy(copy=True)
        centered[:, list(flat.values())] = 0.0  # rounding noise is no spread: such a level has no t
        wide = max_t_critical(centered, 1 - alpha)
        narrow = max_t_critical(centered, 1 - 2 * alpha)
        sign_level = alpha / len(table.columns)  # a level without spread: the sign test, Bonferroni
    for name, values in differences.groupby(level, sort=False)["difference"]:
        row = {level: name, **describe(values.to_numpy(dtype=float))}
        verdict = "inconclusive"
        if n >= 2:
            complete = table[name].to_numpy()
            mean, sem = complete.mean(), complete.std(ddof=1) / math.sqrt(n)
            row.update(simultaneous_low=mean - wide * sem, simultaneous_high=mean + wide * sem)
            if flat[name]:
                if t_test(complete, 0.0, "two-sided") <= sign_level:
                    verdict = "better" if mean > 0 else "worse"
                elif max(t_test(complete, -delta, "greater"), t_test(complete, delta, "less")) <= sign_level:
                    verdict = "equivalent"
            elif mean - wide * sem > 0:
                verdict = "better"
            elif mean + wide * sem < 0:
                verdict = "worse"
            elif -delta < mean - narrow * sem and mean + narrow * sem < delta:
                verdict = "equivalent"
        rows.append({**row, "verdict": verdict})
    return pd.DataFrame(rows).reindex(columns=[*columns, "verdict"])


# --- power ----------------------------------------------------------------------------------------


def power(mean: float, sd: float, seeds: int, level_direction: float, level_equivalence: float, delta: float) -> dict:
    """The paired t-test's power (statsmodels TTestPower) at a true mean difference `mean` with
    seed spread `sd`, `seeds` pairs: to call it better / worse (two-sided at level_direction) and
    to call it equivalent (TOST at level_equivalence; the power of both one-sided tests, less 1,
    a lower bound)."""
    analysis = TTestPower()
    direction = analysis.power(abs(mean) / sd, seeds, level_direction, alternative="two-sided")
    above = analysis.power((mean + delta) / sd, seeds, level_equivalence, alternative="larger")
    below = analysis.power((mean - delta) / sd, seeds, level_equivalence, alternative="smaller")
    return {"direction": direction, "equivalence": np.maximum(0.0, above + below - 1)}


def sequential_power(
    mean: float, sd: float, design: SeedDesign, level: float, draws: int = 20_000, seed: int = 0
) -> float:
    """The probability that the design's looks call a true difference `mean` (spread `sd`)
    better (worse, for a negative mean): two-sided t-tests at each look's nominal level for a
    test of `level`, from `draws` simulated studies (a fixed seed: the same answer every time)."""
    generator = np.random.default_rng(seed)
    values = generator.normal(mean, sd, size=(draws, design.looks[-1]))
    nominal = design.nominal_levels(level, 2)
    decided = np.zeros(draws, dtype=bool)
    for count, threshold in zip(design.looks, nominal):
        sample = values[:, :count]
        t = sample.mean(axis=1) / (sample.std(axis=1, ddof=1) / math.sqrt(count))
        p = 2 * scipy_stats.t.sf(np.abs(t), count - 1)
        decided |= (p <= threshold) & (np.sign(t) == np.sign(mean))
    return float(decided.mean())


def detectable(seeds: int, level: float, target: float = POWER) -> float:
    """The smallest true mean difference, in standard deviations of the seeds' differences, that
    the two-sided paired t-test at `level` with `seeds` pairs rejects with probability `target`."""
    return float(TTestPower().solve_power(nobs=seeds, alpha=level, power=target, alternative="two-sided"))


def seeds_to_decide(
    mean: float, sd: float, level_direction: float, level_equivalence: float, delta: float, target: float = POWER
) -> tuple[int | None, str]:
    """The fewest seeds (2 .. MOST_SEEDS) at which a true difference `mean` with spread `sd` is
    decided with probability `target` by the test it is nearer to passing (better / worse, or
    equivalent), and that claim; (None, claim) beyond MOST_SEEDS."""
    options = []
    if not sd > SPREAD_TOLERANCE:  # equal differences: the sign test's n of n, p = 0.5^n one-sided
        if abs(mean) > SPREAD_TOLERANCE:
            options.append((math.ceil(math.log2(2 / level_direction)), "direction"))
        if abs(mean) < delta - SPREAD_TOLERANCE:
            options.append((math.ceil(math.log2(1 / level_equivalence)), "equivalence"))
    else:
        seeds = np.arange(2, MOST_SEEDS + 1)
        found = power(mean, sd, seeds, level_direction, level_equivalence, delta)
        for name, values in (("equivalence", found["equivalence"]), ("direction", found["direction"])):
            reached = np.flatnonzero(np.asarray(values) >= target)
            if len(reached):
                options.append((int(seeds[reached[0]]), name))
    words = {"direction": "better" if mean > 0 else "worse", "equivalence": "equivalent"}
    if not options:
        return None, words["direction" if abs(mean) >= delta else "equivalence"]
    count, name = min(options)
    return count, words[name]


# --- mask overlap ---------------------------------------------------------------------------------


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
