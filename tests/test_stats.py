from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats
from statsmodels.stats.weightstats import ttost_paired

from lthutils.pruning import Mask, random_mask
from lthutils.stats import (
    claim,
    expected_jaccard,
    mask_overlap,
    max_t_critical,
    p_values,
    paired_differences,
    power,
    seeds_to_decide,
    simultaneous,
    t_interval,
    verdicts,
)


def test_t_interval_of_known_values():
    low, high = t_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    half_width = 2.7764451051977987 * np.sqrt(2.5) / np.sqrt(5)  # t(0.975, 4) x sd / sqrt(n)
    assert (low, high) == pytest.approx((3 - half_width, 3 + half_width))
    assert np.isnan(t_interval(np.array([1.0]))[0])


def test_the_three_tests_agree_with_scipy_and_statsmodels():
    generator = np.random.default_rng(0)
    for values in [generator.normal(mean, 0.6, 5) for mean in (-1.0, -0.2, 0.0, 0.3, 1.2)] + [np.array([0.1, 0.4])]:
        found = p_values(values, 0.5)
        assert found["p_direction"] == pytest.approx(scipy_stats.ttest_1samp(values, 0).pvalue)
        tost = ttost_paired(values, np.zeros_like(values), -0.5, 0.5)[0]
        assert found["p_equivalent"] == pytest.approx(tost)
        side = "greater" if values.mean() >= 0 else "less"
        bound = 0.5 if side == "greater" else -0.5
        assert found["p_beyond"] == pytest.approx(scipy_stats.ttest_1samp(values, bound, alternative=side).pvalue)


def frame_of(differences: dict[str, list[float]], control: str = "reinit") -> pd.DataFrame:
    """Rows of ticket and control per cell and seed, the ticket ahead by the given points."""
    rows = []
    for cell, points in differences.items():
        for seed, gap in enumerate(points):
            rows.append({"cell": cell, "seed": seed, "kind": control, "test_acc_at_early_stop": 0.8})
            rows.append({"cell": cell, "seed": seed, "kind": "ticket", "test_acc_at_early_stop": 0.8 + gap / 100})
    return pd.DataFrame(rows)


def test_the_decision_rule_on_constructed_results():
    frame = frame_of(
        {
            "clear gain": [2.9, 3.1, 3.0, 3.2, 2.8],
            "true null": [0.05, -0.04, 0.02, -0.03, 0.01],
            "noisy": [3.0, -2.5, 1.5, -3.0, 2.0],
            "clear loss": [-2.0, -2.2, -1.9, -2.1, -2.05],
            "one seed": [5.0],
            "small gain": [0.3, 0.25, 0.2, 0.35, 0.3],
            "gain near the margin": [0.9, 0.5, 1.1, 0.4, 0.8],
        }
    )
    table = verdicts(paired_differences(frame, ["cell"], "reinit"), ["cell"], delta=0.5).set_index("cell")
    assert table[["verdict", "margin"]].apply(tuple, axis=1).to_dict() == {
        "clear gain": ("better", "beyond"),
        "true null": ("equivalent", ""),
        "noisy": ("inconclusive", ""),
        "clear loss": ("worse", "beyond"),
        "one seed": ("inconclusive", ""),
        "small gain": ("better", "within"),  # above 0 and inside +-0.5: both tests reject
        "gain near the margin": ("better", "not shown"),
    }
    assert table.loc["clear gain", "n"] == 5 and table.loc["clear gain", "mean"] == pytest.approx(3.0)
    assert table.loc["noisy", "low"] < 0 < table.loc["noisy", "high"]
    assert claim("better", "within", 0.5) == "better, by less than the 0.5-point margin"
    assert claim("worse", "beyond", 0.5) == "worse, by more than 0.5 points"


def test_holm_makes_a_borderline_setting_inconclusive_among_many():
    borderline = [1.0, 0.3, 1.4, 0.2, 0.9]  # mean 0.76: two-sided p of about 0.03 alone
    alone = verdicts(paired_differences(frame_of({"a": borderline}), ["cell"], "reinit"), ["cell"])
    assert alone["verdict"].tolist() == ["better"] and 0.01 < alone["p_direction"].iloc[0] < 0.05
    many = {"a": borderline, **{f"noisy {k}": [3.0, -2.5, 1.5, -3.0, 2.0] for k in range(5)}}
    table = verdicts(paired_differences(frame_of(many), ["cell"], "reinit"), ["cell"]).set_index("cell")
    assert table.loc["a", "verdict"] == "inconclusive"  # held to 0.05 / 6 at the first step
    assert table.loc["a", "level_direction"] == pytest.approx(0.05 / 6)


def test_a_decided_setting_passes_its_alpha_on():
    """Holm: once the clear gain is rejected at 0.05 / 2, the borderline one faces 0.05 / 1."""
    both = {"clear": [2.9, 3.1, 3.0, 3.2, 2.8], "a": [1.0, 0.3, 1.4, 0.2, 0.9]}
    table = verdicts(paired_differences(frame_of(both), ["cell"], "reinit"), ["cell"]).set_index("cell")
    assert table["verdict"].tolist() == ["better", "better"]
    assert table.loc["clear", "level_direction"] == pytest.approx(0.025) and table.loc["a", "level_direction"] == 0.05


def test_a_diverged_side_drops_its_pair():
    frame = frame_of({"cell": [1.0, 2.0, 3.0]})
    frame.loc[(frame["seed"] == 1) & (frame["kind"] == "reinit"), "test_acc_at_early_stop"] = np.nan
    differences = paired_differences(frame, ["cell"], "reinit")
    assert differences["seed"].tolist() == [0, 2] and differences["difference"].tolist() == pytest.approx([1.0, 3.0])


def test_seeds_to_decide_is_where_the_power_reaches_80_percent():
    for mean, sd, expected in ((0.6, 0.5, "better"), (-0.9, 1.0, "worse"), (0.05, 0.3, "equivalent")):
        seeds, claimed = seeds_to_decide(mean, sd, 0.05 / 3, 0.05 / 3, 0.5)
        assert claimed == expected
        reached = power(mean, sd, np.array([seeds - 1, seeds]), 0.05 / 3, 0.05 / 3, 0.5)
        key = "equivalence" if expected == "equivalent" else "direction"
        assert reached[key][0] < 0.8 <= reached[key][1]
    assert seeds_to_decide(0.5, 50.0, 0.05, 0.05, 0.5) == (None, "better")  # beyond 1,000 seeds


CONTROLS = [8766, 9212, 9033, 8900, 9100, 8650, 9300, 8875]  # correct test images of 10,000, per seed


def images_apart(gap: int, seeds: int, level: int = 1) -> pd.DataFrame:
    """Ticket and reinit rows per seed, the ticket `gap` images of 10,000 ahead, their accuracies
    as training.evaluate gives them (float32 correct / count, as Python floats)."""
    rows = []
    for seed, correct in enumerate(CONTROLS[:seeds]):
        for kind, count in (("reinit", correct), ("ticket", correct + gap)):
            accuracy = float(np.float32(count) / np.float32(10_000))
            rows.append({"cell": "a", "round": level, "seed": seed, "kind": kind, "test_acc_at_early_stop": accuracy})
    return pd.DataFrame(rows)


def test_seeds_the_same_number_of_images_apart_have_no_spread_and_take_the_sign_test():
    differences = paired_differences(images_apart(11, 8), ["cell"], "reinit")
    assert 0 < differences["difference"].std() < 1e-5  # float32 rounding, not a spread
    three = verdicts(differences[differences["seed"] < 3], ["cell"]).iloc[0]
    assert three["verdict"] == "inconclusive" and three["p_direction"] == pytest.approx(2 * 0.5**3)
    assert np.isnan(three["effect_size"])
    seven = verdicts(differences[differences["seed"] < 7], ["cell"]).iloc[0]
    assert (seven["verdict"], seven["margin"]) == ("better", "within")  # both sign tests: 0.0156, 0.0078
    assert seven["p_direction"] == pytest.approx(2 * 0.5**7) and seven["p_equivalent"] == pytest.approx(0.5**7)


def test_equal_differences_at_the_margin_are_not_shown_within_it():
    differences = paired_differences(images_apart(50, 8), ["cell"], "reinit")  # 0.4999995 points each
    found = verdicts(differences, ["cell"]).iloc[0]
    assert (found["verdict"], found["margin"]) == ("better", "not shown")
    assert found["p_equivalent"] == 1.0 and found["p_beyond"] == 1.0


def test_a_level_without_spread_takes_the_sign_test_bonferroni_over_the_levels():
    spread = paired_differences(frame_of({"a": [0.9, 1.6, 0.4, 1.2, 0.7, 1.4, 1.0]}), ["cell"], "reinit")
    for seeds, expected in ((3, "inconclusive"), (7, "better")):  # 2 x 0.5^7 = 0.016 <= 0.05 / 2
        flat = paired_differences(images_apart(11, seeds, level=2), ["cell", "round"], "reinit")
        rows = pd.concat([spread[spread["seed"] < seeds].assign(round=1), flat])
        table = simultaneous(rows[["seed", "round", "difference"]], "round").set_index("round")
        assert table.loc[2, "verdict"] == expected
        assert table.loc[1, "simultaneous_high"] - table.loc[1, "simultaneous_low"] > 0.5  # a real spread


def test_seeds_to_decide_without_spread_counts_the_sign_tests_seeds():
    level = 0.05 / 3
    assert seeds_to_decide(0.11, 0.0, level, level, 0.5) == (6, "equivalent")  # 0.5^6 <= 0.0167
    assert seeds_to_decide(1.0, 3e-6, level, level, 0.5) == (7, "better")  # 2 x 0.5^7 <= 0.0167
    assert seeds_to_decide(0.0, 0.0, level, level, 0.5) == (6, "equivalent")


def test_the_max_t_critical_value_lies_between_one_level_and_independent_levels():
    seeds, t_one = 5, scipy_stats.t.ppf(0.975, 4)
    same = np.tile(np.array([[-2.0], [-1.0], [0.0], [1.0], [2.0]]), (1, 3))  # three identical levels
    assert max_t_critical(same, 0.95) == pytest.approx(t_one, rel=0.03)
    centered = np.linalg.qr(np.eye(seeds) - 1 / seeds)[0][:, :3]  # three uncorrelated, centered levels
    independent = scipy_stats.t.ppf(1 - (1 - 0.95 ** (1 / 3)) / 2, seeds - 1)  # Sidak over 3 independent t's
    assert max_t_critical(centered, 0.95) == pytest.approx(independent, rel=0.03)


def masks(size: int, alive: int, seed: int) -> Mask:
    """A random mask of one entry, `alive` of `size` weights kept."""
    keep = torch.zeros(size)
    keep[:alive] = 1
    return random_mask(Mask({"w": keep}), torch.Generator().manual_seed(seed))


def test_expected_jaccard_matches_random_masks():
    draws = [mask_overlap(masks(50, 20, seed), masks(50, 15, 1000 + seed)).loc[0, "jaccard"] for seed in range(2000)]
    assert np.mean(draws) == pytest.approx(expected_jaccard(50, 20, 15), abs=0.005)
    subsets = [set(chosen) for chosen in combinations(range(10), 5)]  # every pair of 5-of-10 subsets, exactly
    exact = np.mean([len(a & b) / len(a | b) for a in subsets for b in subsets])
    assert expected_jaccard(10, 5, 5) == pytest.approx(exact)
    assert expected_jaccard(10, 10, 10) == pytest.approx(1.0)


def test_chance_corrected_overlap_is_1_for_the_same_mask_and_about_0_for_unrelated_ones():
    first = masks(100_000, 20_000, 0)
    same = mask_overlap(first, first).set_index("layer")
    assert same.loc["w", "chance_corrected"] == pytest.approx(1.0) and same.loc["overall", "chance_corrected"] == 1.0
    unrelated = mask_overlap(first, masks(100_000, 20_000, 1)).set_index("layer")
    assert abs(unrelated.loc["w", "chance_corrected"]) < 0.01
    assert abs(unrelated.loc["overall", "chance_corrected"]) < 0.01
    assert unrelated.loc["w", "jaccard"] == pytest.approx(1 / 9, abs=0.005)  # 0.2 x 0.2 / (0.4 - 0.04)


@pytest.mark.parametrize("size, first, second", [(235200, 176400, 176400), (235200, 30000, 30000), (1000, 870, 870)])
def test_expected_jaccard_sums_all_the_mass_of_the_hypergeometric(size, first, second):
    shared = np.arange(max(0, first + second - size), min(first, second) + 1)
    everything = np.sum(scipy_stats.hypergeom.pmf(shared, size, first, second) * shared / (first + second - shared))
    assert expected_jaccard(size, first, second) == pytest.approx(everything, rel=1e-9)
