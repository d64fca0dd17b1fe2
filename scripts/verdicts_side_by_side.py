"""Two reports' verdicts on the same runs, side by side: the previous rule's, per (setting x pruning
level) cell, against this rule's, per setting on its primary endpoint.

    python scripts/verdicts_side_by_side.py PREVIOUS/verdicts.csv exp_result/report/verdicts.csv

PREVIOUS/verdicts.csv is what `python -m lthutils report` wrote at commit d9d9fb6 (the rule before
issue 19) on the same results; docs/RESULTS.md gives the commands. Prints a markdown table per
question and the counts of decided cells and settings.
"""

from __future__ import annotations

import argparse

import pandas as pd

KEYS = ["question", "comparison", "setting"]


def previous_counts(cells: pd.DataFrame) -> pd.Series:
    """Per question, comparison and setting: its cells' verdicts counted, as 'inconclusive at 7 of 7 levels'."""

    def count(verdicts: pd.Series) -> str:
        counts = verdicts.value_counts()
        return ", ".join(f"{word} at {n}" for word, n in counts.items()) + f" of {len(verdicts)} levels"

    return cells.groupby(KEYS, sort=False)["verdict"].agg(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("previous", help="the previous rule's verdicts.csv (one row per cell)")
    parser.add_argument("current", help="this rule's verdicts.csv (one row per setting)")
    args = parser.parse_args()
    cells, settings = pd.read_csv(args.previous), pd.read_csv(args.current)
    before = previous_counts(cells).rename("previous")
    table = settings.join(before, on=KEYS)
    for question, rows in table.groupby("question", sort=False):
        print(f"\n**{question.upper()}**\n")
        print("| comparison | setting | previous rule (per level) | this rule (primary endpoint) | seeds to decide |")
        print("|---|---|---|---|---|")
        for _, row in rows.iterrows():
            interval = f"{row['mean difference (points)']:+.2f} [{row['95% low']:+.2f}, {row['95% high']:+.2f}]"
            seeds = row["seeds to decide"]
            needed = "" if pd.isna(seeds) else "more than 1,000" if seeds == float("inf") else f"{int(seeds)}"
            print(
                f"| {row['comparison']} | {row['setting']} | {row['previous']} | {row['verdict']}: {interval} "
                f"| {needed} |"
            )
    decided_cells = (cells["verdict"] != "inconclusive").sum()
    decided = settings[~settings["verdict"].isin(["inconclusive"])]
    print(
        f"\nPrevious rule: {decided_cells} of {len(cells)} cells decided. This rule: {len(decided)} of "
        f"{len(settings)} settings decided ("
        + ", ".join(f"{v} {n}" for v, n in settings["verdict"].str.split(",").str[0].value_counts().items())
        + ")."
    )


if __name__ == "__main__":
    main()
