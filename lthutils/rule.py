"""The decision rule applied to a question: what it is judged on, the verdicts and their sentences.

An `Analysis` is declared with a question's parameters, before any number: the *primary endpoint*
(by default each seed's mean paired difference over the pruned levels at or below 50% of weights
remaining, `primary: {band: [0.0, 0.5]}`; or the sparsest level, `primary: {level: last}`), the
margin delta and the seed design (lthutils.sequential). A question names *comparisons* (ticket vs
a control, or vs another ticket), each a family of *settings*; `judge` pairs their runs by seed,
reduces each seed to its primary endpoint, and calls stats.verdicts once per comparison (Holm
across its settings). The per-level differences stay as secondary estimates with intervals
simultaneous over a setting's levels (stats.simultaneous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lthutils import stats
from lthutils.config import ConfigError
from lthutils.sequential import SeedDesign

METRIC = "test_acc_at_early_stop"
DEFAULT_PRIMARY = {"band": [0.0, 0.5]}
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
PRIMARY_ALLOWED = "{band: [low, high]} (fractions of weights remaining, 0 <= low < high <= 1) or {level: last}"


@dataclass(frozen=True)
class Analysis:
    """What a question's verdicts are drawn from, declared before the runs."""

    primary: dict = field(default_factory=lambda: dict(DEFAULT_PRIMARY))
    delta: float = stats.DELTA
    design: SeedDesign = field(default_factory=lambda: SeedDesign.parse(DEFAULT_SEEDS))
    alpha: float = stats.ALPHA

    @classmethod
    def declare(
        cls, primary: dict | None = None, delta: float = stats.DELTA, seeds: list | dict | None = None
    ) -> Analysis:
        """From notebook / YAML parameters; ConfigError naming the parameter for a bad value."""
        primary = dict(DEFAULT_PRIMARY) if primary is None else primary
        if not isinstance(primary, dict) or len(primary) != 1:
            raise ConfigError("primary", primary, PRIMARY_ALLOWED)
        ((kind, value),) = primary.items()
        if kind == "band":
            numbers = isinstance(value, (list, tuple)) and len(value) == 2
            numbers = numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            if not numbers or not 0 <= value[0] < value[1] <= 1:
                raise ConfigError("primary", primary, PRIMARY_ALLOWED)
            primary = {"band": [float(value[0]), float(value[1])]}
        elif kind != "level" or value != "last":
            raise ConfigError("primary", primary, PRIMARY_ALLOWED)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 100:
            raise ConfigError("delta", delta, "a margin in points of accuracy, above 0 and below 100")
        design = SeedDesign.parse(DEFAULT_SEEDS if seeds is None else seeds)
        return cls(primary, float(delta), design)

    def to_dict(self) -> dict:
        return {"primary": self.primary, "delta": self.delta, "seeds": self.design.to_parameter()}

    @classmethod
    def from_dict(cls, values: dict) -> Analysis:
        return cls.declare(values.get("primary"), values.get("delta", stats.DELTA), values.get("seeds"))

    def rounds(self, levels: pd.Series) -> list[int]:
        """The pruned rounds the primary endpoint averages, of `levels` (weights remaining in %
        by pruned round)."""
        if "level" in self.primary:
            return [int(levels.idxmin())] if len(levels) else []
        low, high = self.primary["band"]
        chosen = levels[(levels >= 100 * low - 1e-9) & (levels <= 100 * high + 1e-9)]
        return sorted(int(r) for r in chosen.index)

    def endpoint(self) -> str:
        """The primary endpoint in words."""
        if "level" in self.primary:
            return "each seed's paired difference at the sparsest pruned level"
        low, high = (100 * v for v in self.primary["band"])
        where = f"at or below {high:g}%" if low == 0 else f"from {low:g}% to {high:g}%"
        return f"each seed's mean paired difference over the pruned levels {where} of weights remaining"


def text(analysis: Analysis) -> str:
    """The decision rule, in the words the report states it before any number."""
    delta, alpha, margin = analysis.delta, analysis.alpha, stats.points(analysis.delta)
    left_out = "" if "level" in analysis.primary else " (a seed without a pair at each of those levels is left out)"
    sequential = ""
    if analysis.design.sequential:
        sequential = (
            f" Seeds are added in batches ({analysis.design.describe()}): after each look the settings decided "
            "stop and the others get the next batch, and each look's tests run at the nominal level of the "
            "alpha-spending boundary, so the error rates hold over all the looks."
        )
    return (
        "**Decision rule** (fixed before the numbers). Evidence is the per-seed paired difference *ticket - "
        "comparison* in test accuracy at early stop (points); a pair shares its seed's theta_0 and data order, and "
        "a pair with a diverged side is dropped. Each setting of a comparison is judged on one number per seed, "
        f"its **primary endpoint**: {analysis.endpoint()}{left_out}. A setting is **better** or **worse** when "
        f"the two-sided t-test of a zero mean rejects at {alpha} after Holm's correction across the settings of "
        "its comparison (the mean's sign gives the direction), and the verdict says whether it clears the "
        f"{delta:g}-point margin: *by more than {margin}* when the one-sided test beyond +-{delta:g} rejects at "
        "the same level, *by less than the margin* when the equivalence test rejects too, else *not shown to "
        f"exceed* it. A setting is **equivalent** when both one-sided tests of lying within +-{margin} reject "
        f"(TOST at {alpha}, Holm-corrected), and **inconclusive** otherwise or with fewer than 2 pairs; an "
        "inconclusive setting says how many seeds would decide it." + sequential + " A setting whose dense "
        "network did not converge (its least validation loss at its last evaluation, for at least half of the "
        "seeds) gets no verdict: **unconverged**. Per pruning level the differences are secondary estimates: 95% "
        "intervals simultaneous over the setting's levels (max-|t|), with the verdict they read."
    )


@dataclass(frozen=True)
class Comparison:
    """Ticket rows of one setting against the rows they are paired with (same seed and round)."""

    name: str
    setting: str
    first: pd.DataFrame
    second: pd.DataFrame


def pair_up(comparisons: list[Comparison]) -> pd.DataFrame:
    """Per comparison, setting, pruned round and seed with rows on both sides: the paired
    difference (points; NaN when a side diverged). Raises if a pair's two runs do not have the
    same sparsity (they must, by construction)."""
    frames = []
    for c in comparisons:
        first, second = c.first[c.first["round"] > 0], c.second[c.second["round"] > 0]
        keys = ["seed", "round"]
        sparsity = first[[*keys, "weights_remaining"]].merge(second[[*keys, "weights_remaining"]], on=keys)
        if not np.allclose(sparsity["weights_remaining_x"], sparsity["weights_remaining_y"]):
            raise ValueError(f"{c.name} ({c.setting}): paired runs of different sparsity")
        pairs = stats.paired(first, second, keys, METRIC, dropna=False)
        levels = first.drop_duplicates("round").set_index("round")["weights_remaining_pct"]
        frames.append(
            pairs.assign(comparison=c.name, setting=c.setting, weights_remaining_pct=pairs["round"].map(levels))
        )
    columns = ["comparison", "setting", "round", "weights_remaining_pct", "seed", "difference"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def primary_endpoints(differences: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """Per comparison, setting and seed with a pair at every round the primary endpoint takes:
    the endpoint (`difference`, NaN when a pair there was dropped), with the rounds' span."""
    rows = []
    for (name, setting), group in differences.groupby(["comparison", "setting"], sort=False):
        levels = group.drop_duplicates("round").set_index("round")["weights_remaining_pct"]
        rounds = analysis.rounds(levels)
        if not rounds:
            continue
        chosen = group[group["round"].isin(rounds)]
        span = (levels[rounds].max(), levels[rounds].min())
        for seed, pairs in chosen.groupby("seed"):
            if len(pairs) == len(rounds):
                value = pairs["difference"].mean(skipna=False)
                rows.append((name, setting, seed, value, len(rounds), *span))
    columns = ["comparison", "setting", "seed", "difference", "levels", "highest_pct", "lowest_pct"]
    return pd.DataFrame(rows, columns=columns)


def judge(differences: pd.DataFrame, unconverged: list[str], analysis: Analysis) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The primary verdict of every (comparison, setting), Holm across a comparison's converged
    settings (an unconverged one: verdict 'unconverged'), each inconclusive one with the seeds
    that would decide it; and per level the secondary estimates, from the seeds its verdict used."""
    endpoints = primary_endpoints(differences, analysis)
    primary, levels = [], []
    for name, group in endpoints.groupby("comparison", sort=False):
        converged = group[~group["setting"].isin(unconverged)]
        judged = stats.verdicts(converged, ["setting"], analysis.delta, analysis.alpha, analysis.design)
        skipped = stats.verdicts(group[group["setting"].isin(unconverged)], ["setting"], analysis.delta, analysis.alpha)
        table = pd.concat([judged, skipped.assign(verdict="unconverged")], ignore_index=True)
        spans = group.drop_duplicates("setting").set_index("setting")[["levels", "highest_pct", "lowest_pct"]]
        primary.append(table.join(spans, on="setting").assign(comparison=name))
    primary = pd.concat(primary, ignore_index=True) if primary else _empty_primary()
    primary = _with_seeds_to_decide(primary, analysis)
    used = {(row.comparison, row.setting): row for row in primary.itertuples()}
    for (name, setting), rows in differences.groupby(["comparison", "setting"], sort=False):
        row = used.get((name, setting))
        if row is not None and analysis.design.sequential and row.look:
            rows = rows[rows["seed"].isin(analysis.design.seeds_at(row.look - 1))]
        per_level = stats.simultaneous(rows.dropna(subset=["difference"]), "round", analysis.delta, analysis.alpha)
        if setting in unconverged:
            per_level["verdict"] = "unconverged"
        pct = rows.drop_duplicates("round").set_index("round")["weights_remaining_pct"]
        levels.append(
            per_level.assign(comparison=name, setting=setting, weights_remaining_pct=per_level["round"].map(pct))
        )
    levels = pd.concat(levels, ignore_index=True) if levels else _empty_levels()
    first = ["comparison", "setting"]
    return (
        primary[[*first, *[c for c in primary if c not in first]]],
        levels[[*first, *[c for c in levels if c not in first]]],
    )


def _with_seeds_to_decide(primary: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """Each inconclusive setting's seeds to decide it (stats.seeds_to_decide at its observed
    mean and spread, at the Holm levels it faces) and the claim they would reach."""
    counts, claims = [], []
    for row in primary.itertuples():
        count, claim = math.nan, ""
        if row.verdict == "inconclusive" and row.n >= 2 and not math.isnan(row.level_direction):
            found, claim = stats.seeds_to_decide(
                row.mean, row.sd, row.level_direction, row.level_equivalence, analysis.delta
            )
            count = math.inf if found is None else found
        counts.append(count)
        claims.append(claim)
    return primary.assign(seeds_to_decide=counts, would_decide=claims)


def _empty_primary() -> pd.DataFrame:
    columns = ["comparison", "setting", "look", "n", "mean", "sd", "low", "high", "effect_size", "p_direction"]
    columns += ["p_equivalent", "p_beyond", "level_direction", "level_equivalence", "verdict", "margin", "levels"]
    return pd.DataFrame(columns=[*columns, "highest_pct", "lowest_pct"])


def _empty_levels() -> pd.DataFrame:
    return pd.DataFrame(columns=["comparison", "setting", "round", "weights_remaining_pct", "n", "mean", "verdict"])


# --- sentences --------------------------------------------------------------------------------


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _counts(table: pd.DataFrame, delta: float) -> str:
    counts = table["verdict"].value_counts()
    beyond = int(((table["verdict"] == "better") & (table["margin"] == "beyond")).sum())
    parts = []
    for word in stats.VERDICTS:
        part = f"{word} at {counts.get(word, 0)}"
        if word == "better" and counts.get(word, 0):
            part += f" ({beyond} by more than {stats.points(delta)})"
        parts.append(part)
    if counts.get("unconverged", 0):
        parts.append(f"no verdict at {counts['unconverged']} (dense network unconverged)")
    return ", ".join(parts)


def _seeds_needed(row) -> str:
    if row.verdict != "inconclusive" or pd.isna(row.seeds_to_decide):
        return ""
    if math.isinf(row.seeds_to_decide):
        return f"; more than {stats.MOST_SEEDS:,} seeds would be needed to decide it at this mean and spread"
    return (
        f"; about {int(row.seeds_to_decide)} seeds would decide it ({row.would_decide}, {stats.POWER:.0%} power at "
        f"this mean and spread, paired t-test at its Holm level)"
    )


def _levels_note(rows: pd.DataFrame, band: tuple[float, float]) -> str:
    """The secondary per-level verdicts of one setting, and a sign change inside the band."""
    counts = rows["verdict"].value_counts()
    parts = ", ".join(f"{word} at {counts[word]}" for word in (*stats.VERDICTS, "unconverged") if counts.get(word))
    inside = rows[(rows["weights_remaining_pct"] <= band[0] + 1e-9) & (rows["weights_remaining_pct"] >= band[1] - 1e-9)]
    note = f"per level (secondary, 95% simultaneous): {parts} of {len(rows)}"
    if {"better", "worse"} <= set(inside["verdict"]):
        better = inside.loc[inside["verdict"] == "better", "weights_remaining_pct"]
        worse = inside.loc[inside["verdict"] == "worse", "weights_remaining_pct"]
        note += (
            f"; **the endpoint averages a sign change**: better at {', '.join(f'{v:.3g}%' for v in better)}, "
            f"worse at {', '.join(f'{v:.3g}%' for v in worse)}"
        )
    return note


def sentences(primary: pd.DataFrame, levels: pd.DataFrame, analysis: Analysis) -> list[str]:
    """Per comparison a sentence of verdict counts over its settings, and a line per setting
    with its endpoint's estimate, interval, seeds, verdict and what would decide it."""
    lines = []
    for name in dict.fromkeys(levels["comparison"]):
        if name not in set(primary["comparison"]):
            lines.append(
                f"**{name}**: no verdict: no setting has a pruned level its primary endpoint takes "
                f"({analysis.endpoint()}); the per-level estimates are in the table."
            )
    for name, table in primary.groupby("comparison", sort=False):
        judged = table[table["verdict"] != "unconverged"]
        lines.append(
            f"**{name}**: {_counts(table, analysis.delta)} of {len(table)} settings "
            f"(primary endpoint; Holm across {_count(len(judged), 'setting')})."
        )
        for row in table.itertuples():
            interval = f"[{row.low:+.2f}, {row.high:+.2f}]" if row.n >= 2 else "(no interval)"
            span = f"{row.highest_pct:.3g}%" if row.levels == 1 else f"{row.highest_pct:.3g}-{row.lowest_pct:.3g}%"
            decided = row.verdict not in ("inconclusive", "unconverged")
            look = f", decided at look {row.look}" if analysis.design.sequential and decided else ""
            verdict = stats.claim(row.verdict, row.margin, analysis.delta)
            rows = levels[(levels["comparison"] == name) & (levels["setting"] == row.setting)]
            lines.append(
                f"- {row.setting}: **{verdict}**: {row.mean:+.2f} points {interval} "
                f"({row.n} seeds{look}; {row.levels} levels, {span} of weights){_seeds_needed(row)}; "
                f"{_levels_note(rows, (row.highest_pct, row.lowest_pct))}."
            )
    return lines


LABELS = {  # the tables' columns as a reader sees them
    "n": "seeds",
    "mean": "mean difference (points)",
    "low": "95% low",
    "high": "95% high",
    "effect_size": "effect size (d_z)",
    "p_direction": "p (mean 0)",
    "p_equivalent": "p (TOST)",
    "p_beyond": "p (beyond margin)",  # held to half its level (mean 0) for "by more than the margin"
    "level_direction": "its level (mean 0)",
    "seeds_to_decide": "seeds to decide",
    "levels": "weights remaining",
    "weights_remaining_pct": "weights remaining (%)",
    "simultaneous_low": "simultaneous 95% low",
    "simultaneous_high": "simultaneous 95% high",
}


def verdict_table(primary: pd.DataFrame, delta: float) -> pd.DataFrame:
    """The primary verdicts as a reader's table: one row per (comparison, setting), rounded."""
    columns = ["comparison", "setting", "n", "mean", "low", "high", "effect_size", "p_direction", "p_equivalent"]
    table = primary[[*columns, "p_beyond", "level_direction", "seeds_to_decide"]]
    table = table.assign(
        verdict=[stats.claim(v, m, delta) for v, m in zip(primary["verdict"], primary["margin"])],
        levels=[f"{a:.3g}-{b:.3g}%" for a, b in zip(primary["highest_pct"], primary["lowest_pct"])],
    )
    rounding = {"mean": 2, "low": 2, "high": 2, "effect_size": 2}
    rounding |= dict.fromkeys(["p_direction", "p_equivalent", "p_beyond", "level_direction"], 5)
    return table.round(rounding).rename(columns=LABELS)


def level_table(levels: pd.DataFrame) -> pd.DataFrame:
    """The secondary per-level estimates as a reader's table."""
    columns = ["comparison", "setting", "weights_remaining_pct", "n", "mean", "low", "high"]
    table = levels.reindex(columns=[*columns, "simultaneous_low", "simultaneous_high", "verdict"])
    rounding = {"weights_remaining_pct": 1, "mean": 2, "low": 2, "high": 2}
    return table.round({**rounding, "simultaneous_low": 2, "simultaneous_high": 2}).rename(columns=LABELS)


def power_note(primary: pd.DataFrame, analysis: Analysis) -> str:
    """What the design can decide: per comparison, the smallest difference (in sds of the
    endpoint) the first Holm step calls better or worse with 80% power at the seeds used."""
    parts = []
    for name, table in primary[primary["verdict"] != "unconverged"].groupby("comparison", sort=False):
        n, count = int(table["n"].min()), len(table)
        if n < 2:
            continue
        size = stats.detectable(n, analysis.alpha / count)
        spread = table["sd"].median()
        parts.append(
            f"{name}: {size:.2f} sd ({size * spread:.2f} points at the median sd {spread:.2f}) with {n} seeds, "
            f"{_count(count, 'setting')}"
        )
    if not parts:
        return ""
    return (
        f"Power: the first Holm step calls a difference better or worse with {stats.POWER:.0%} power when its mean is "
        "at least " + "; ".join(parts) + "."
    )
