"""Two studies' verdicts per (question, comparison, setting), side by side: such as the quick
study's and the full study's, whose settings share their names (Q3's "adam -> sgd" on
Fashion-MNIST with 800 steps per round in one, on MNIST with 10,000 in the other).

    python scripts/studies_side_by_side.py docs/results/quick/verdicts.csv docs/results/full/q3/verdicts.csv

Prints a markdown table per question the second file holds: each setting's verdict, mean
difference and 95% interval (points) in each study, and the seeds it had; then, over the
settings both hold, how many verdicts differ, how far the mean differences move (mean and
largest absolute change, points) and how many settings each study decided.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

KEYS = ["question", "comparison", "setting"]


def summary(verdicts: pd.DataFrame) -> pd.Series:
    """'verdict: +0.30 [-0.25, +0.86], 5 seeds' per setting."""
    text = [
        f"{row['verdict']}: {row['mean difference (points)']:+.2f} [{row['95% low']:+.2f}, "
        f"{row['95% high']:+.2f}], {row['seeds']} seeds"
        for _, row in verdicts.iterrows()
    ]
    return pd.Series(text, index=pd.MultiIndex.from_frame(verdicts[KEYS]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="a report's verdicts.csv, such as the quick study's")
    parser.add_argument("second", type=Path, help="another's, such as the full study's")
    args = parser.parse_args()
    first, second = (pd.read_csv(path) for path in (args.first, args.second))
    folders = [path.absolute().parent for path in (args.first, args.second)]
    common = Path(os.path.commonpath(folders))
    names = [str(folder.relative_to(common)) or folder.name for folder in folders]  # "quick", "full/q3"
    table = pd.concat([summary(first).rename(names[0]), summary(second).rename(names[1])], axis=1, join="outer")
    for question in second["question"].unique():
        rows = table.loc[question].fillna("not in this study")
        print(f"\n**{question.upper()}**\n")
        print(f"| comparison | setting | {names[0]} | {names[1]} |\n|---|---|---|---|")
        for (comparison, setting), row in rows.iterrows():
            print(f"| {comparison} | {setting} | {row[names[0]]} | {row[names[1]]} |")
    print(f"\n{agreement(first, second, names)}")


def agreement(first: pd.DataFrame, second: pd.DataFrame, names: list[str]) -> str:
    """One sentence on the settings both studies hold: verdicts that differ, how far the mean
    differences move, and how many settings each decided (a verdict other than inconclusive)."""
    both = first.merge(second, on=KEYS, suffixes=("_1", "_2"))
    moved = (both["mean difference (points)_2"] - both["mean difference (points)_1"]).abs()
    decided = [int((both[f"verdict_{i}"] != "inconclusive").sum()) for i in (1, 2)]
    return (
        f"{len(both)} settings in both: {int((both['verdict_1'] != both['verdict_2']).sum())} verdicts differ; "
        f"the mean differences move by {moved.mean():.2f} points on average (at most {moved.max():.2f}); "
        f"decided: {decided[0]} in {names[0]}, {decided[1]} in {names[1]}."
    )


if __name__ == "__main__":
    main()
