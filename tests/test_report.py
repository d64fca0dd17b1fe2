import subprocess
import sys
from pathlib import Path

import pandas as pd

from lthutils.report import summarize
from lthutils.results import RunStore

REPO = Path(__file__).resolve().parents[1]


def test_summary_averages_over_seeds(tmp_path):
    rows = [
        {"seed": s, "round": r, "kind": k, "weights_remaining": 1 - 0.2 * r, "test_acc": a, "test_acc_at_early_stop": a}
        for s, r, k, a in [
            (0, 0, "ticket", 0.8),
            (1, 0, "ticket", 0.9),
            (0, 1, "ticket", 0.7),
            (1, 1, "ticket", 0.9),
            (0, 1, "reinit", 0.5),
            (1, 1, "reinit", 0.6),
        ]
    ]
    store = RunStore(tmp_path, "summary", "run-1", tmp_path)
    store.append(*rows)
    lines = summarize(store.results_path).splitlines()
    assert "85.00 ± 7.07" in lines[2] and "100.0" in lines[2]
    assert "80.00 ± 14.14" in lines[3] and "55.00 ± 7.07" in lines[3] and "80.0" in lines[3]
    # paired by seed: differences 20 and 30 (reinit), -10 and 0 (round 0); sem 5, t(0.975, 1 df) 12.706
    assert lines[-1] == (
        "Tickets at round 1 (80.0% of weights remaining) minus, paired by seed (mean [95% t interval], points):"
        " reinit +25.00 [-38.53, +88.53] at early stop, +25.00 [-38.53, +88.53] at the end (2 seeds);"
        " the dense network (round 0) -5.00 [-68.53, +58.53] at early stop, -5.00 [-68.53, +58.53] at the end"
        " (2 seeds)."
    )


def test_summary_pairs_only_seeds_with_both_sides(tmp_path):
    """A diverged control has an accuracy at early stop but none at the end: its seed leaves
    only the end's pairs."""
    rows = [
        {"seed": s, "round": 1, "kind": k, "weights_remaining": 0.8, "test_acc_at_early_stop": a, "test_acc": end}
        for s, k, a, end in [
            (0, "ticket", 0.7, 0.7),
            (1, "ticket", 0.8, 0.8),
            (2, "ticket", 0.9, 0.9),
            (0, "reinit", 0.6, 0.6),
            (1, "reinit", 0.6, 0.6),
            (2, "reinit", 0.6, None),
        ]
    ]
    store = RunStore(tmp_path, "summary", "run-1", tmp_path)
    store.append(*rows)
    assert (
        summarize(store.results_path)
        .splitlines()[-1]
        .endswith("reinit +20.00 [-4.84, +44.84] at early stop, +15.00 [-48.53, +78.53] at the end (3 and 2 seeds).")
    )  # 10, 20, 30: sem 5.77, t(0.975, 2 df) 4.303; 10, 20: sem 5, t(0.975, 1 df) 12.706


def test_summary_of_tickets_without_controls_or_round_0_has_no_comparison(tmp_path):
    """evalIntegration trains pruned tickets alone: the summary is the table only."""
    store = RunStore(tmp_path, "eval", "run-1", tmp_path)
    store.append(
        *[
            {
                "seed": s,
                "round": r,
                "kind": "ticket",
                "weights_remaining": 0.8**r,
                "test_acc": 0.9,
                "test_acc_at_early_stop": 0.9,
            }
            for s in (0, 1)
            for r in (1, 2)
        ]
    )
    text = summarize(store.results_path)
    assert text.splitlines()[-1].startswith("| 2 ") and "Tickets at round" not in text


def test_one_seed_gets_a_difference_and_no_interval(tmp_path):
    store = RunStore(tmp_path, "one", "run-1", tmp_path)
    store.append(
        {
            "seed": 0,
            "round": 0,
            "kind": "ticket",
            "weights_remaining": 1.0,
            "test_acc": 0.9,
            "test_acc_at_early_stop": 0.9,
        },
        {
            "seed": 0,
            "round": 1,
            "kind": "ticket",
            "weights_remaining": 0.8,
            "test_acc": 0.8,
            "test_acc_at_early_stop": 0.85,
        },
    )
    assert (
        summarize(store.results_path)
        .splitlines()[-1]
        .endswith(": the dense network (round 0) -5.00 at early stop, -10.00 at the end (1 seed, no interval).")
    )


def test_studies_side_by_side_counts_what_moves_between_two_studies(tmp_path):
    """scripts/studies_side_by_side.py: per setting both verdicts, then the settings both hold:
    verdicts that differ, mean and largest move of the mean difference, settings decided."""
    columns = ["question", "comparison", "setting", "seeds", "mean difference (points)", "95% low", "95% high"]
    first = [
        ["q1", "ticket vs reinit", "fc1x10", 5, 0.9, 0.6, 1.2, "better"],
        ["q1", "ticket vs reinit", "fc1x50", 5, 0.1, -0.3, 0.5, "inconclusive"],
        ["q1", "ticket vs reinit", "fc1x99", 5, 0.0, -0.1, 0.1, "equivalent"],
    ]  # only in the first
    second = [
        ["q1", "ticket vs reinit", "fc1x10", 5, 0.6, 0.1, 1.1, "inconclusive"],
        ["q1", "ticket vs reinit", "fc1x50", 5, 0.2, -0.2, 0.6, "inconclusive"],
    ]
    paths = []
    for name, rows in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "verdicts.csv")
        pd.DataFrame(rows, columns=[*columns, "verdict"]).to_csv(paths[-1], index=False)
    command = [sys.executable, "scripts/studies_side_by_side.py", *map(str, paths)]
    printed = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
    assert "| ticket vs reinit | fc1x10 | better: +0.90 [+0.60, +1.20], 5 seeds | inconclusive: +0.60" in printed
    assert printed.splitlines()[-1] == (
        "2 settings in both: 1 verdicts differ; the mean differences move by 0.20 points on average "
        "(at most 0.30); decided: 1 in a, 0 in b."
    )
