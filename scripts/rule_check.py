"""The decision rule's operating characteristics on simulated studies with known answers.

Runs lthutils.simulation.operating_characteristics (the rule itself, stats.verdicts, on paired
differences drawn like the quick study's) for the cases tests/test_rule_simulation.py bounds, and
prints each measured rate beside what the rule claims, as the markdown table docs/RESULTS.md shows.

    python scripts/rule_check.py               # 4,000 simulated comparisons per row (about 7 minutes)
    python scripts/rule_check.py --families 500
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from lthutils import stats
from lthutils.sequential import SeedDesign
from lthutils.simulation import Spread, as_differences, draw, operating_characteristics

QUICK_SPREAD = 0.57  # the largest primary-endpoint sd of the quick study's Q1
FIXED = SeedDesign.parse([0, 1, 2, 3, 4])
SEQUENTIAL = {
    spending: SeedDesign.parse({"start": 5, "step": 5, "max": 20, "spending": spending})
    for spending in ("obrien_fleming", "pocock")
}


def rows(families: int) -> list[tuple[str, str, str, str]]:
    """(case, what is measured, measured, claimed)."""
    band = 3 * math.sqrt(0.05 * 0.95 / families)
    table = []
    null = operating_characteristics([0.0] * 3, FIXED, families, seed=3)
    claimed = f"<= 0.05 (+-{band:.3f} Monte-Carlo)"
    table.append(
        ("3 null settings, 5 seeds", "families with a better or worse", f"{null['any_better_or_worse']:.3f}", claimed)
    )
    margin = operating_characteristics([0.5, -0.5, 0.5], FIXED, families, seed=4)
    table.append(
        (
            "3 settings at +-0.5 (the margin), 5 seeds",
            "families with a setting shown within the margin (equivalent, or better / worse by less than it)",
            f"{margin['any_within_margin']:.3f}",
            claimed,
        )
    )
    beyond = operating_characteristics([0.5, 0.5, -0.5], FIXED, families, seed=7)
    half = 3 * math.sqrt(0.025 * 0.975 / families)
    table.append(
        (
            "3 settings at +-0.5 (the margin), 5 seeds",
            "families with a setting shown beyond the margin (by more than it)",
            f"{beyond['any_beyond_margin']:.3f}",
            f"<= 0.025 (+-{half:.3f} Monte-Carlo)",
        )
    )
    truth = [0.0, 0.7, -1.2]
    coverage = operating_characteristics(truth, FIXED, families, seed=5)["coverage"]
    table.append(
        (
            "true means 0, +0.7, -1.2, 5 seeds",
            "95% intervals holding the true mean",
            " / ".join(f"{c:.3f}" for c in coverage),
            "0.95",
        )
    )
    for spending, design in SEQUENTIAL.items():
        found = operating_characteristics([0.0] * 3, design, families, seed=6)
        case = f"3 null settings, seeds until decided (5, 5, 20; {spending})"
        table.append((case, "families with a better or worse", f"{found['any_better_or_worse']:.3f}", claimed))
    spread = Spread().with_endpoint_sd(QUICK_SPREAD)
    for seeds, effect in (([0, 1, 2, 3, 4], 1.0), (list(range(8)), 0.7), ({"start": 5, "step": 5, "max": 15}, 0.5)):
        design = SeedDesign.parse(seeds)
        level = 0.05 / 3
        if design.sequential:
            predicted = stats.sequential_power(effect, QUICK_SPREAD, design, level)
        else:
            predicted = float(stats.power(effect, QUICK_SPREAD, len(design.seeds), level, level, 0.5)["direction"])
        found = operating_characteristics([effect, 0.0, 0.0], design, families, spread=spread, seed=7)
        case = f"+{effect} points among 2 nulls, sd {QUICK_SPREAD}, {design.describe()}"
        measured = f"{found['better'][0]:.3f} (mean seeds {found['seeds'][0]:.1f})"
        table.append((case, "called better (power)", measured, f"{predicted:.3f} (plan's prediction)"))
    generator = np.random.default_rng(8)
    flagged = sum(
        stats.simultaneous(as_differences(draw(generator, [0.0], 5)), "round")["verdict"]
        .isin(["better", "worse"])
        .any()
        for _ in range(families // 4)
    )
    case = "1 null setting, its 7 levels, 5 seeds (secondary, per level)"
    table.append((case, "settings with a level called better or worse", f"{flagged / (families // 4):.3f}", "<= 0.05"))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=4000, help="simulated comparisons per row")
    args = parser.parse_args()
    print("| case | measured | rate | the rule claims |\n|---|---|---|---|")
    for row in rows(args.families):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
