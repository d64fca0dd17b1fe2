import numpy as np
import pandas as pd
import pytest

from lthutils.config import ConfigError
from lthutils.sequential import SeedDesign, boundaries, nominal_levels, spent
from lthutils.stats import verdicts

FIVE_LOOKS = (0.2, 0.4, 0.6, 0.8, 1.0)


def test_boundaries_match_the_published_lan_demets_values():
    """Five equally spaced looks, two-sided 0.05 (DeMets & Lan 1994; the ld98 program and R's
    gsDesign give the same): O'Brien-Fleming-type and Pocock-type spending."""
    published = {
        "obrien_fleming": [4.8769, 3.3569, 2.6803, 2.2898, 2.0310],
        "pocock": [2.4380, 2.4268, 2.4101, 2.3966, 2.3859],
    }
    for spending, values in published.items():
        assert boundaries(FIVE_LOOKS, 0.05, spending, 2) == pytest.approx(values, abs=2e-4)
        assert boundaries(FIVE_LOOKS, 0.025, spending, 1) == pytest.approx(values, abs=2e-4)  # one side of it


def test_the_boundaries_spend_what_the_spending_function_says():
    """Brownian motion in information time, simulated: the chance of a first crossing by each
    look is the alpha spent by then."""
    generator = np.random.default_rng(0)
    steps = np.diff(np.concatenate([[0.0], FIVE_LOOKS]))
    score = np.cumsum(generator.standard_normal((400_000, 5)) * np.sqrt(steps), axis=1)
    z = np.abs(score / np.sqrt(FIVE_LOOKS))
    crossed = np.maximum.accumulate(z >= boundaries(FIVE_LOOKS, 0.05, "obrien_fleming", 2), axis=1)
    expected = spent(np.array(FIVE_LOOKS), 0.05, "obrien_fleming", 2)
    assert crossed.mean(axis=0) == pytest.approx(expected, abs=3 * np.sqrt(0.05 * 0.95 / 400_000))


def test_one_look_is_the_fixed_design():
    assert nominal_levels((1.0,), 0.05, "obrien_fleming", 2).tolist() == [0.05]
    design = SeedDesign.parse([3, 1, 4])
    assert design.looks == (3,) and design.seeds == (3, 1, 4) and not design.sequential
    assert design.nominal_levels(0.01, 1).tolist() == [0.01]


def test_seeds_until_decided_looks_at_each_batch():
    design = SeedDesign.parse({"start": 5, "step": 5, "max": 17})
    assert design.looks == (5, 10, 15, 17) and design.seeds == tuple(range(17))
    assert design.seeds_at(1) == tuple(range(10))
    assert SeedDesign.parse(design.to_parameter()) == design
    levels = design.nominal_levels(0.05, 2)
    assert all(np.diff(levels) > 0) and levels[-1] < 0.05  # O'Brien-Fleming: little early, nearly all at the end


@pytest.mark.parametrize(
    "value, message",
    [
        ([], "non-empty list"),
        ([0, 0], "distinct"),
        ([-1], "non-negative"),
        ({"start": 1, "step": 5, "max": 10}, "2 <= S <= M"),
        ({"start": 5, "step": 0, "max": 10}, "T >= 1"),
        ({"start": 5, "step": 5}, "a list of seeds or"),
        ({"start": 5, "step": 5, "max": 10, "spending": "haybittle"}, "spending: one of"),
        ("5", "a list of seeds or"),
    ],
)
def test_a_bad_seed_design_is_one_clear_error(value, message):
    with pytest.raises(ConfigError, match=message):
        SeedDesign.parse(value)


def _differences(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"setting": s, "seed": i, "difference": v} for s, points in values.items() for i, v in enumerate(points)]
    return pd.DataFrame(rows)


def test_a_setting_is_decided_at_the_first_look_it_clears_and_keeps_that_verdict():
    design = SeedDesign.parse({"start": 5, "step": 5, "max": 10, "spending": "pocock"})
    clear = [3.0, 3.1, 2.9, 3.2, 3.05] + [-9.0] * 5  # decided at 5 seeds: what came later does not change it
    slow = [1.0, 0.2, 1.5, -0.1, 0.9, 0.8, 0.6, 1.1, 0.7, 0.9]
    unfinished = [0.3, -0.2, 0.1, 0.0, 0.2, 0.1]  # 6 seeds: the second look is not reached
    table = verdicts(_differences({"clear": clear, "slow": slow, "unfinished": unfinished}), ["setting"], design=design)
    table = table.set_index("setting")
    assert table.loc["clear", ["verdict", "look", "seeds", "n"]].tolist() == ["better", 1, 5, 5]
    assert table.loc["clear", "mean"] == pytest.approx(3.05)
    assert table.loc["slow", ["verdict", "look", "seeds"]].tolist() == ["better", 2, 10]
    assert table.loc["unfinished", ["look", "seeds", "n"]].tolist() == [1, 5, 5]
