"""The decision rule checked against known answers, by simulation.

Paired differences are drawn like the quick study's (`make study`, 2026-12-03): per pruning
level a spread of 0.6 points between seeds (the median per-level sd of Q1-Q3), a correlation of
0.25 between a seed's levels (Q1 and Q3's mean; Q2's was 0.05) and of 0.5 between the settings of
one comparison that share a seed (Q1: 0.71 and 0.89; Q2 and Q3 between -0.56 and 0.72), 3
settings per comparison, 7 levels of which the primary endpoint (weights remaining <= 50%) takes
the last 5. Monte-Carlo tolerances are 3 binomial standard errors.
"""

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from lthutils import rule, stats
from lthutils.sequential import SeedDesign

LEVEL_SD, LEVEL_CORRELATION, SETTING_CORRELATION = 0.6, 0.25, 0.5
LEVELS_PCT = [75.0, 56.2, 42.2, 31.6, 23.7, 17.8, 13.3]  # 7 rounds of 25%
SETTINGS = 3
ALPHA = 0.05


def tolerance(rate: float, count: int) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / count)


def draw(generator: np.random.Generator, means: list[float], seeds: int, level_sd: float = LEVEL_SD) -> np.ndarray:
    """seeds x settings x levels differences: each setting's true mean at every level, the
    correlations above (a seed's noise = shared by its settings + its setting's own, each
    correlated across levels)."""
    levels = len(LEVELS_PCT)
    across = LEVEL_CORRELATION + (1 - LEVEL_CORRELATION) * np.eye(levels)
    root = np.linalg.cholesky(across)
    shared = generator.standard_normal((seeds, 1, levels)) @ root.T
    own = generator.standard_normal((seeds, len(means), levels)) @ root.T
    noise = math.sqrt(SETTING_CORRELATION) * shared + math.sqrt(1 - SETTING_CORRELATION) * own
    return np.asarray(means)[None, :, None] + level_sd * noise


def endpoints(values: np.ndarray) -> pd.DataFrame:
    """The primary endpoint of every seed and setting, as rule.primary_endpoints computes it
    (checked against it in test_endpoints_are_the_band_means)."""
    band = [i for i, pct in enumerate(LEVELS_PCT) if pct <= 50]
    seeds, settings, _ = values.shape
    means = values[:, :, band].mean(axis=2)
    return pd.DataFrame(
        {
            "setting": np.tile([f"s{i}" for i in range(settings)], seeds),
            "seed": np.repeat(np.arange(seeds), settings),
            "difference": means.ravel(),
        }
    )


def as_differences(values: np.ndarray) -> pd.DataFrame:
    seeds, settings, levels = values.shape
    index = pd.MultiIndex.from_product([range(seeds), range(settings), range(levels)], names=["seed", "s", "level"])
    frame = pd.DataFrame({"difference": values.ravel()}, index=index).reset_index()
    return frame.assign(
        comparison="ticket vs reinit",
        setting="s" + frame["s"].astype(str),
        round=frame["level"] + 1,
        weights_remaining_pct=np.array(LEVELS_PCT)[frame["level"]],
    )[["comparison", "setting", "round", "weights_remaining_pct", "seed", "difference"]]


def test_endpoints_are_the_band_means():
    values = draw(np.random.default_rng(1), [0.0, 1.0, -1.0], 5)
    computed = rule.primary_endpoints(as_differences(values), rule.Analysis())
    expected = endpoints(values)
    merged = computed.merge(expected, on=["setting", "seed"])
    assert len(merged) == 15 and np.allclose(merged["difference_x"], merged["difference_y"])
    assert set(computed["levels"]) == {5} and set(computed["lowest_pct"]) == {13.3}


def verdict_rows(values: np.ndarray, design: SeedDesign | None = None) -> pd.DataFrame:
    return stats.verdicts(endpoints(values), ["setting"], design=design)


def test_holm_across_settings_is_statsmodels_holm_on_the_two_sided_p_values():
    generator = np.random.default_rng(2)
    for _ in range(50):
        table = verdict_rows(draw(generator, [0.3, 0.6, 0.0], 5))
        rejected = multipletests(table["p_direction"], alpha=ALPHA, method="holm")[0]
        assert list(table["verdict"].isin(["better", "worse"])) == list(rejected)


def test_under_a_true_null_a_family_calls_better_or_worse_at_most_alpha_of_the_time():
    generator = np.random.default_rng(3)
    families = 2000
    rejected = sum(
        verdict_rows(draw(generator, [0.0] * SETTINGS, 5))["verdict"].isin(["better", "worse"]).any()
        for _ in range(families)
    )
    assert rejected / families <= ALPHA + tolerance(ALPHA, families)


def test_at_the_margin_a_family_calls_equivalent_at_most_alpha_of_the_time():
    generator = np.random.default_rng(4)
    families = 1500
    margin = stats.DELTA
    called = sum(
        (verdict_rows(draw(generator, [margin, -margin, margin], 5))["verdict"] == "equivalent").any()
        for _ in range(families)
    )
    assert called / families <= ALPHA + tolerance(ALPHA, families)


def test_the_95_percent_intervals_cover_the_true_mean_95_percent_of_the_time():
    generator = np.random.default_rng(5)
    families, truth = 2000, [0.0, 0.7, -1.2]
    covered = 0
    for _ in range(families):
        table = verdict_rows(draw(generator, truth, 5))
        covered += int(((table["low"] <= truth) & (truth <= table["high"])).sum())
    count = families * SETTINGS
    assert abs(covered / count - 0.95) <= tolerance(0.95, count)


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_seeds_until_decided_keeps_alpha_across_its_looks(spending):
    design = SeedDesign.parse({"start": 5, "step": 5, "max": 20, "spending": spending})
    generator = np.random.default_rng(6)
    families = 1500
    rejected = sum(
        verdict_rows(draw(generator, [0.0] * SETTINGS, 20), design)["verdict"].isin(["better", "worse"]).any()
        for _ in range(families)
    )
    assert rejected / families <= ALPHA + tolerance(ALPHA, families)


def test_looking_at_every_batch_without_spending_would_not_keep_alpha():
    """The check above can fail: the same looks, each tested at the full level, go well over alpha."""
    generator = np.random.default_rng(6)
    families, looks = 1500, (5, 10, 15, 20)
    rejected = 0
    for _ in range(families):
        values = draw(generator, [0.0] * SETTINGS, 20)
        rejected += any(verdict_rows(values[:count])["verdict"].isin(["better", "worse"]).any() for count in looks)
    assert rejected / families > ALPHA + 2 * tolerance(ALPHA, families)


QUICK_SPREAD = 0.57  # the largest sd of a primary endpoint in the quick study's Q1 (ticket vs reinit, fc2x100)


@pytest.mark.parametrize(
    "seeds, effect",
    [([0, 1, 2, 3, 4], 1.0), (list(range(8)), 0.7), ({"start": 5, "step": 5, "max": 15}, 0.5)],
)
def test_the_power_at_a_stated_effect_is_what_plan_predicts(seeds, effect):
    """One setting with a true effect among two nulls, its endpoint's spread the quick study's
    largest in Q1: it meets the first Holm step unless a null is rejected first (rarely), so its
    power is that step's, which `plan` predicts (runner.power_lines)."""
    design = SeedDesign.parse(seeds)
    level = ALPHA / SETTINGS
    if design.sequential:
        predicted = stats.sequential_power(effect, QUICK_SPREAD, design, level)
    else:
        predicted = float(stats.power(effect, QUICK_SPREAD, len(design.seeds), level, level, stats.DELTA)["direction"])
    band = sum(pct <= 50 for pct in LEVELS_PCT)
    level_sd = QUICK_SPREAD / math.sqrt((1 + (band - 1) * LEVEL_CORRELATION) / band)  # the band mean's sd: QUICK_SPREAD
    generator = np.random.default_rng(7)
    families = 1500
    better = 0
    for _ in range(families):
        values = draw(generator, [effect, 0.0, 0.0], design.looks[-1], level_sd)
        table = verdict_rows(values, design).set_index("setting")
        better += table.loc["s0", "verdict"] == "better"
    assert 0.2 < predicted < 0.95  # a power where the check can tell
    assert abs(better / families - predicted) <= tolerance(predicted, families) + 0.01


def test_per_level_verdicts_keep_alpha_over_a_settings_levels():
    generator = np.random.default_rng(8)
    settings = 600
    rejected = 0
    for _ in range(settings):
        values = draw(generator, [0.0], 5)
        table = stats.simultaneous(as_differences(values), "round")
        rejected += table["verdict"].isin(["better", "worse"]).any()
    assert rejected / settings <= ALPHA + tolerance(ALPHA, settings)
