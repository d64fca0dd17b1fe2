"""The decision rule run on simulated studies with known answers: its error rates, coverage and power.

`draw` makes paired differences like a study's: seeds x settings x pruning levels, each setting's
true mean known, the noise correlated across a seed's levels and across the settings that share a
seed. `operating_characteristics` runs many such studies through the rule itself (stats.verdicts,
on the primary endpoints) and counts what it concluded. tests/test_rule_simulation.py holds the
rule to its claims with it; `python scripts/rule_check.py` prints the table docs/RESULTS.md shows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lthutils import stats
from lthutils.sequential import SeedDesign


@dataclass(frozen=True)
class Spread:
    """How a study's paired differences vary. The defaults are the quick study's (`make study`,
    2026-12-03): a per-level sd of 0.6 points (the median per-level sd of Q1-Q3), a correlation of
    0.25 between a seed's levels (Q1 and Q3: 0.24 and 0.25; Q2: 0.05) and of 0.5 between the
    settings of a comparison that share a seed (Q1: 0.71 and 0.89; Q2 and Q3 between -0.56 and
    0.72); 7 levels of 25% pruning, the primary endpoint the mean of the 5 at or below 50%."""

    level_sd: float = 0.6
    level_correlation: float = 0.25
    setting_correlation: float = 0.5
    levels_pct: tuple[float, ...] = (75.0, 56.2, 42.2, 31.6, 23.7, 17.8, 13.3)
    band_pct: float = 50.0

    @property
    def band(self) -> list[int]:
        return [i for i, pct in enumerate(self.levels_pct) if pct <= self.band_pct]

    def endpoint_sd(self) -> float:
        """The sd of a seed's primary endpoint (the mean of the band's correlated levels)."""
        count = len(self.band)
        return self.level_sd * math.sqrt((1 + (count - 1) * self.level_correlation) / count)

    def with_endpoint_sd(self, sd: float) -> Spread:
        """The same correlations, the levels' sd scaled so that the endpoint's sd is `sd`."""
        return dataclasses.replace(self, level_sd=sd * self.level_sd / self.endpoint_sd())


def draw(generator: np.random.Generator, means: list[float], seeds: int, spread: Spread = Spread()) -> np.ndarray:
    """seeds x settings x levels paired differences (points), setting i's true mean means[i] at
    every level: a seed's noise is shared by its settings in part, each part correlated across levels."""
    levels = len(spread.levels_pct)
    root = np.linalg.cholesky(spread.level_correlation + (1 - spread.level_correlation) * np.eye(levels))
    shared = generator.standard_normal((seeds, 1, levels)) @ root.T
    own = generator.standard_normal((seeds, len(means), levels)) @ root.T
    weight = math.sqrt(spread.setting_correlation)
    noise = weight * shared + math.sqrt(1 - spread.setting_correlation) * own
    return np.asarray(means, dtype=float)[None, :, None] + spread.level_sd * noise


def as_differences(values: np.ndarray, spread: Spread = Spread(), comparison: str = "ticket vs reinit") -> pd.DataFrame:
    """`values` as the rows rule.judge takes: comparison, setting, round, weights remaining, seed, difference."""
    seeds, settings, levels = values.shape
    index = pd.MultiIndex.from_product([range(seeds), range(settings), range(levels)], names=["seed", "s", "level"])
    frame = pd.DataFrame({"difference": values.ravel()}, index=index).reset_index()
    return frame.assign(
        comparison=comparison,
        setting="s" + frame["s"].astype(str),
        round=frame["level"] + 1,
        weights_remaining_pct=np.array(spread.levels_pct)[frame["level"]],
    )[["comparison", "setting", "round", "weights_remaining_pct", "seed", "difference"]]


def endpoints(values: np.ndarray, spread: Spread = Spread()) -> pd.DataFrame:
    """Every seed's primary endpoint per setting (setting, seed, difference): the band's mean, as
    rule.primary_endpoints computes it from as_differences(values) (the tests check they agree)."""
    seeds, settings, _ = values.shape
    means = values[:, :, spread.band].mean(axis=2)
    return pd.DataFrame(
        {
            "setting": np.tile([f"s{i}" for i in range(settings)], seeds),
            "seed": np.repeat(np.arange(seeds), settings),
            "difference": means.ravel(),
        }
    )


def operating_characteristics(
    means: list[float],
    design: SeedDesign,
    families: int,
    spread: Spread = Spread(),
    delta: float = stats.DELTA,
    alpha: float = stats.ALPHA,
    seed: int = 0,
) -> dict[str, np.ndarray | float]:
    """Run `families` simulated comparisons (settings with true means `means`) through the rule
    with `design`: per setting the rate of each verdict and how often its 95% interval held its
    true mean, the mean number of seeds it was decided (or left) with, and the rates of families
    with any better or worse verdict, with any setting shown within the margin (equivalent, or
    better / worse by less than it) and with any shown beyond it (by more than it)."""
    generator = np.random.default_rng(seed)
    counts = {verdict: np.zeros(len(means)) for verdict in stats.VERDICTS}
    covered, seeds = np.zeros(len(means)), np.zeros(len(means))
    any_direction = any_within = any_beyond = 0
    for _ in range(families):
        table = stats.verdicts(
            endpoints(draw(generator, means, design.looks[-1], spread), spread), ["setting"], delta, alpha, design
        )
        for verdict in stats.VERDICTS:
            counts[verdict] += (table["verdict"] == verdict).to_numpy()
        covered += ((table["low"] <= means) & (means <= table["high"])).to_numpy()
        seeds += table["seeds"].to_numpy()
        any_direction += table["verdict"].isin(["better", "worse"]).any()
        any_within += ((table["verdict"] == "equivalent") | (table["margin"] == "within")).any()
        any_beyond += (table["margin"] == "beyond").any()
    return {
        **{verdict: count / families for verdict, count in counts.items()},
        "coverage": covered / families,
        "seeds": seeds / families,
        "any_better_or_worse": any_direction / families,
        "any_within_margin": any_within / families,
        "any_beyond_margin": any_beyond / families,
    }
