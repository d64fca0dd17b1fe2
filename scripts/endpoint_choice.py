"""Which primary endpoint: the same runs judged on three, and whether the band hides a sign change.

For each question's plan under an exp_result folder (the fixed-seed ones), counts the settings
each endpoint decides: the mean over the pruned levels at or below 50% of weights remaining (the
default), the sparsest level, and every pruned level. Then lists the settings whose per-level
mean differences change sign inside the band, with whether any level's 95% interval lies above
zero and any below (a sign change the band's mean would hide).

    python scripts/endpoint_choice.py exp_result
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lthutils import study
from lthutils.rule import Analysis

ENDPOINTS = {
    "band <= 50%": {"band": [0.0, 0.5]},
    "sparsest level": {"level": "last"},
    "every pruned level": {"band": [0.0, 1.0]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exp_root", type=Path)
    args = parser.parse_args()
    print("| question | endpoint | settings | decided | verdicts |\n|---|---|---|---|---|")
    signs = []
    for key, plans in study.plans(args.exp_root).items():
        for frame, declared in plans:
            if declared.design.sequential:
                continue
            for name, primary in ENDPOINTS.items():
                analysis = Analysis.declare(primary, declared.delta, list(declared.design.seeds))
                evidence = study.QUESTIONS[key].evidence(frame, analysis)
                verdicts = evidence.primary["verdict"]
                counts = ", ".join(f"{v} {n}" for v, n in verdicts.value_counts().items())
                print(f"| {key} | {name} | {len(verdicts)} | {(verdicts != 'inconclusive').sum()} | {counts} |")
                if primary == ENDPOINTS["band <= 50%"]:
                    band = evidence.levels[evidence.levels["weights_remaining_pct"] <= 50]
                    for (comparison, setting), rows in band.groupby(["comparison", "setting"], sort=False):
                        if (rows["mean"] > 0).any() and (rows["mean"] < 0).any():
                            above, below = (rows["low"] > 0).any(), (rows["high"] < 0).any()
                            signs.append(f"{key} {comparison}, {setting}: a level above 0: {above}, below 0: {below}")
    print(f"\n{len(signs)} settings change sign inside the band; with a level's 95% interval on each side of 0:")
    print("\n".join(f"- {line}" for line in signs if line.endswith("True, below 0: True")) or "- none")


if __name__ == "__main__":
    main()
