"""Where a study's compute goes: training against evaluation seconds, from its own rows.

Sums the `train_seconds` and `eval_seconds` columns of every results.csv under a results folder
(default exp_result/, what `make study` writes), per question and in total.

    python bench/eval_share.py [exp_result]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from lthutils.results import read_results


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "exp_result")
    paths = sorted(root.glob("*/*/results.csv"))
    if not paths:
        sys.exit(f"no results.csv under {root}")
    frame = pd.concat([read_results(path).assign(question=path.parts[-3]) for path in paths], ignore_index=True)
    table = frame.groupby("question")[["train_seconds", "eval_seconds"]].sum()
    table.loc["total"] = table.sum()
    table["eval_share"] = table["eval_seconds"] / (table["train_seconds"] + table["eval_seconds"])
    print(f"compute split of {len(frame)} trainings under {root}:")
    print(table.to_string(float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
