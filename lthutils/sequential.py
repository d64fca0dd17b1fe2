"""Seeds in batches until decided: the seed design and its group-sequential boundaries.

A `SeedDesign` says which seeds a study trains and when it looks at them. A list of seeds is one
look at all of them (the fixed design). `{start: 5, step: 5, max: 30}` trains seeds 0-4, looks,
and trains the next 5 seeds of every setting still undecided, up to 30: looks at 5, 10, ..., 30.

Looking again after every batch would inflate the error rates, so each look tests at a nominal
level from a Lan-DeMets alpha-spending function (a group-sequential design): the error
probability spent by look k is alpha(t_k), with t_k = seeds at look k / the design's most seeds.
We chose group-sequential boundaries over an anytime-valid confidence sequence because the looks
are few and planned (the batches), and a spending function spends the whole alpha by the last
look, where a confidence sequence pays for every possible look and needs far more seeds at the
5-30 seeds a study can afford. O'Brien-Fleming-type spending (the default) spends almost nothing
at the first look and nearly the whole alpha at the last, so a setting decided early is decided
by a large effect, and the last look keeps nearly the power of the fixed design with the same
seeds; Pocock-type spending spends evenly and stops clear effects sooner, at some power at the end.

The boundaries are those of the canonical joint distribution of the standardized statistics
(Brownian motion in information time, Jennison & Turnbull 2000, ch. 2 and 7), computed by
numerical integration (ch. 19); a t-test at look k rejects when its p-value is at most the nominal
level of the boundary (the "significance level approach", ch. 3.8). The simulation tests in
tests/test_sequential.py check that this keeps the error rate with t-tests at 5 seeds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

from lthutils.config import ConfigError

SPENDING = ("obrien_fleming", "pocock")
GRID_POINTS = 1201  # per look's continuation interval: boundaries to about 1e-6 (tests/test_sequential.py)


@dataclass(frozen=True)
class SeedDesign:
    """The seeds a study trains, in the order it adds them, and the looks: the number of seeds
    each setting has at each look (the last look: all of them)."""

    seeds: tuple[int, ...]
    looks: tuple[int, ...]
    spending: str = "obrien_fleming"

    @classmethod
    def parse(cls, value: list | dict | tuple) -> SeedDesign:
        """A list of seeds (one look), or a mapping {start, step, max[, spending]} (seeds 0 ..
        max - 1, looks at start, start + step, ..., max); ConfigError for anything else."""
        if isinstance(value, (list, tuple)):
            seeds = tuple(value)
            if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
                raise ConfigError("seeds", value, "a non-empty list of non-negative integers, or {start, step, max}")
            if len(set(seeds)) != len(seeds):
                raise ConfigError("seeds", value, "distinct seeds")
            return cls(seeds, (len(seeds),))
        allowed = (
            "{start: S, step: T, max: M} with 2 <= S <= M, T >= 1 (and optional spending: obrien_fleming or pocock)"
        )
        if not isinstance(value, dict) or not {"start", "step", "max"} <= set(value) <= {
            "start",
            "step",
            "max",
            "spending",
        }:
            raise ConfigError("seeds", value, "a list of seeds or " + allowed)
        start, step, most = (value[key] for key in ("start", "step", "max"))
        numbers = (start, step, most)
        if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers) or not 2 <= start <= most or step < 1:
            raise ConfigError("seeds", value, allowed)
        spending = value.get("spending", "obrien_fleming")
        if spending not in SPENDING:
            raise ConfigError("seeds", value, "spending: one of " + ", ".join(SPENDING))
        looks = tuple(range(start, most, step)) + (most,)
        return cls(tuple(range(most)), looks, spending)

    @property
    def sequential(self) -> bool:
        return len(self.looks) > 1

    def seeds_at(self, look: int) -> tuple[int, ...]:
        """The seeds a setting has at look `look` (0-based)."""
        return self.seeds[: self.looks[look]]

    def to_parameter(self) -> list | dict:
        """The notebook / YAML value that parses back to this design."""
        if not self.sequential:
            return list(self.seeds)
        step = self.looks[1] - self.looks[0]
        return {"start": self.looks[0], "step": step, "max": self.looks[-1], "spending": self.spending}

    def describe(self) -> str:
        if not self.sequential:
            return f"{len(self.seeds)} seeds"
        looks = ", ".join(map(str, self.looks))
        name = {"obrien_fleming": "O'Brien-Fleming", "pocock": "Pocock"}[self.spending]
        return f"seeds until decided, looking at {looks} seeds with Lan-DeMets {name}-type alpha spending"

    def nominal_levels(self, alpha: float, sides: int) -> np.ndarray:
        """Per look, the p-value at or below which a test of level `alpha` (`sides` 2: two-sided;
        1: one-sided) rejects; the fixed design's one look: alpha itself."""
        fractions = tuple(n / self.looks[-1] for n in self.looks)
        return nominal_levels(fractions, alpha, self.spending, sides)


def spent(fractions: np.ndarray, alpha: float, spending: str, sides: int) -> np.ndarray:
    """The error probability spent by each information fraction (Lan & DeMets 1983); a
    two-sided test spends alpha / 2 on each side (DeMets & Lan 1994)."""
    t, side_alpha = np.asarray(fractions, dtype=float), alpha / sides
    if spending == "obrien_fleming":
        return sides * 2 * scipy_stats.norm.sf(scipy_stats.norm.isf(side_alpha / 2) / np.sqrt(t))
    return sides * side_alpha * np.log(1 + (math.e - 1) * t)  # pocock


@functools.lru_cache(maxsize=4096)
def boundaries(fractions: tuple[float, ...], alpha: float, spending: str, sides: int) -> np.ndarray:
    """Critical values c_k of the standardized statistics Z_k (reject at look k when Z_k >= c_k,
    or |Z_k| >= c_k with `sides` 2) such that the probability of a first rejection at look k,
    under the null, is the alpha spent between looks k - 1 and k.

    Z_k sqrt(t_k) is Brownian motion in t: the sub-density of the statistic on the continuation
    region at each look is carried to the next by convolution with the increment's normal
    density, on a grid (Simpson's rule); the exit probability is then solved for the boundary."""
    cumulative = spent(np.array(fractions), alpha, spending, sides)
    increments = np.diff(np.concatenate([[0.0], cumulative]))
    critical = [scipy_stats.norm.isf(increments[0] / sides)]  # the first look: Z_1 is standard normal
    grid = _continuation(critical[0], fractions[0], sides)
    density = scipy_stats.norm.pdf(grid / math.sqrt(fractions[0])) / math.sqrt(fractions[0])
    for previous, t, increment in zip(fractions, fractions[1:], increments[1:]):
        sd, weighted = math.sqrt(t - previous), density * _simpson(grid)
        if increment <= 0:
            c = math.inf
        else:  # the exit probability falls as the boundary b (on the score scale) rises
            b = optimize.brentq(_excess, 0.0, 40.0, args=(grid, weighted, sd, sides, increment), xtol=1e-10)
            c = b / math.sqrt(t)
        critical.append(c)
        new_grid = _continuation(c, t, sides)
        density = scipy_stats.norm.pdf((new_grid[:, None] - grid[None, :]) / sd) / sd @ weighted
        grid = new_grid
    return np.array(critical)


def _continuation(c: float, t: float, sides: int) -> np.ndarray:
    """The grid of the score Z sqrt(t) where the test goes on at information t (beyond 12 sd
    nothing is left)."""
    bound = min(c, 12.0) * math.sqrt(t)
    return np.linspace(-bound if sides == 2 else -12.0 * math.sqrt(t), bound, GRID_POINTS)


def _excess(b: float, grid: np.ndarray, weighted: np.ndarray, sd: float, sides: int, target: float) -> float:
    """The probability of crossing the boundary b (and -b for two sides) at the next look, from
    the sub-density `weighted` (Simpson-weighted) on `grid` with an increment of spread `sd`,
    less `target`."""
    upper = scipy_stats.norm.sf((b - grid) / sd)
    lower = scipy_stats.norm.cdf((-b - grid) / sd) if sides == 2 else 0.0
    return float(np.sum(weighted * (upper + lower))) - target


def _simpson(grid: np.ndarray) -> np.ndarray:
    """Simpson's rule weights on an evenly spaced grid of an odd number of points."""
    weights = np.ones(len(grid))
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return weights * (grid[1] - grid[0]) / 3


def nominal_levels(fractions: tuple[float, ...], alpha: float, spending: str, sides: int) -> np.ndarray:
    """The boundaries as p-values: reject at look k when the test's p-value is at most this."""
    if len(fractions) == 1:
        return np.array([alpha])
    return sides * scipy_stats.norm.sf(boundaries(fractions, alpha, spending, sides))
