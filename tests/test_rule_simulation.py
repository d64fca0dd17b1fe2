"""The decision rule checked against known answers, by simulation (lthutils.simulation: paired
differences drawn like the quick study's, 3 settings per comparison, run through stats.verdicts).
Monte-Carlo tolerances are 3 binomial standard errors; `python scripts/rule_check.py` prints the
rates these tests bound."""

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from lthutils import rule, stats
from lthutils.sequential import SeedDesign
from lthutils.simulation import Spread, as_differences, draw, endpoints, operating_characteristics

ALPHA = 0.05
FIVE_SEEDS = SeedDesign.parse([0, 1, 2, 3, 4])
QUICK_SPREAD = 0.57  # the largest sd of a primary endpoint in the quick study's Q1 (ticket vs random_mask, fc2x300)


def tolerance(rate: float, count: int) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / count)


def test_the_simulated_endpoints_are_the_rules():
    values = draw(np.random.default_rng(1), [0.0, 1.0, -1.0], 5)
    computed = rule.primary_endpoints(as_differences(values), rule.Analysis())
    merged = computed.merge(endpoints(values), on=["setting", "seed"])
    assert len(merged) == 15 and np.allclose(merged["difference_x"], merged["difference_y"])
    assert set(computed["levels"]) == {5} and set(computed["lowest_pct"]) == {13.3}
    sample = endpoints(draw(np.random.default_rng(2), [0.0], 20_000))["difference"]
    assert sample.std() == pytest.approx(Spread().endpoint_sd(), rel=0.03)


def test_holm_across_settings_is_statsmodels_holm_on_the_two_sided_p_values():
    generator = np.random.default_rng(2)
    for _ in range(20):  # multipletests runs the garbage collector at every call: a few suffice
        table = stats.verdicts(endpoints(draw(generator, [0.3, 0.6, 0.0], 5)), ["setting"])
        rejected = multipletests(table["p_direction"], alpha=ALPHA, method="holm")[0]
        assert list(table["verdict"].isin(["better", "worse"])) == list(rejected)


def test_holm_across_settings_is_statsmodels_holm_on_the_equivalence_p_values():
    generator = np.random.default_rng(6)
    for _ in range(20):
        table = stats.verdicts(endpoints(draw(generator, [0.0, 0.2, -0.3], 5)), ["setting"])
        rejected = multipletests(table["p_equivalent"], alpha=ALPHA, method="holm")[0]
        shown_within = (table["verdict"] == "equivalent") | (table["margin"] == "within")
        assert list(shown_within) == list(rejected)


def test_under_a_true_null_a_family_calls_better_or_worse_at_most_alpha_of_the_time():
    found = operating_characteristics([0.0] * 3, FIVE_SEEDS, families=2000, seed=3)
    assert found["any_better_or_worse"] <= ALPHA + tolerance(ALPHA, 2000)


def test_at_the_margin_a_family_shows_a_setting_within_it_at_most_alpha_of_the_time():
    found = operating_characteristics([0.5, -0.5, 0.5], FIVE_SEEDS, families=2000, seed=4)
    assert found["any_within_margin"] <= ALPHA + tolerance(ALPHA, 2000)  # Holm: family-wise


def test_at_the_margin_a_family_shows_a_setting_beyond_it_at_most_half_alpha_of_the_time():
    found = operating_characteristics([0.5, 0.5, -0.5], FIVE_SEEDS, families=2000, seed=7)
    assert found["any_beyond_margin"] <= ALPHA / 2 + tolerance(ALPHA / 2, 2000)  # one-sided, Holm


def test_the_95_percent_intervals_cover_the_true_mean_95_percent_of_the_time():
    found = operating_characteristics([0.0, 0.7, -1.2], FIVE_SEEDS, families=2000, seed=5)
    assert all(abs(found["coverage"] - 0.95) <= tolerance(0.95, 2000))


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_seeds_until_decided_keeps_alpha_across_its_looks(spending):
    design = SeedDesign.parse({"start": 5, "step": 5, "max": 20, "spending": spending})
    found = operating_characteristics([0.0] * 3, design, families=1500, seed=6)
    assert found["any_better_or_worse"] <= ALPHA + tolerance(ALPHA, 1500)


def test_looking_at_every_batch_without_spending_would_not_keep_alpha():
    """The check above can fail: the same four looks, each at the full level, go well over alpha."""
    generator = np.random.default_rng(6)
    families, rejected = 1000, 0
    for _ in range(families):
        values = draw(generator, [0.0] * 3, 20)
        looks = (stats.verdicts(endpoints(values[:count]), ["setting"]) for count in (5, 10, 15, 20))
        rejected += any(table["verdict"].isin(["better", "worse"]).any() for table in looks)
    assert rejected / families > ALPHA + 2 * tolerance(ALPHA, families)


@pytest.mark.parametrize(
    "seeds, effect", [([0, 1, 2, 3, 4], 1.0), (list(range(8)), 0.7), ({"start": 5, "step": 5, "max": 15}, 0.5)]
)
def test_the_power_at_a_stated_effect_is_what_plan_predicts(seeds, effect):
    """One setting with a true effect among two nulls, at the quick study's largest endpoint sd in
    Q1: it meets the first Holm step unless a null is rejected first (rarely), so its power is
    that step's, the number `plan` prints (runner.power_lines)."""
    design = SeedDesign.parse(seeds)
    level = ALPHA / 3
    if design.sequential:
        predicted = stats.sequential_power(effect, QUICK_SPREAD, design, level)
    else:
        predicted = float(stats.power(effect, QUICK_SPREAD, len(design.seeds), level, level, stats.DELTA)["direction"])
    spread = Spread().with_endpoint_sd(QUICK_SPREAD)
    found = operating_characteristics([effect, 0.0, 0.0], design, families=1500, spread=spread, seed=7)
    assert 0.2 < predicted < 0.95  # a power where the check can tell
    assert abs(found["better"][0] - predicted) <= tolerance(predicted, 1500) + 0.01


@pytest.mark.slow
def test_per_level_verdicts_keep_alpha_over_a_settings_levels():
    """A null setting's 7 correlated levels: some level called better or worse in alpha of the
    settings, neither above it nor far below (an over-strict correction decides nothing);
    measured 0.047 of 2,000."""
    generator = np.random.default_rng(8)
    settings, rejected = 2000, 0
    for _ in range(settings):
        table = stats.simultaneous(as_differences(draw(generator, [0.0], 5)), "round")
        rejected += table["verdict"].isin(["better", "worse"]).any()
    assert abs(rejected / settings - ALPHA) <= tolerance(ALPHA, settings)
