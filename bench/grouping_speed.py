"""Q1's fully connected models on a 2-worker LocalCluster: one seed per task against seeds grouped.

The grid is a slice of params/full/q1.yaml at a tenth of its steps: the small fully connected
nets fc1x10, fc2x50 and fc1x100 (with the controls reinit and random_mask, 5 seeds), 3 pruning
rounds of 1,000 steps with validation every 100 steps, on all of MNIST. Each variant runs the
same units through `cluster.run_units` into fresh folders: one seed per task (`seeds_per_task`
1, as every run-all did before) and the default grouping (cost.seed_groups: a search's 5
seeds x 3 kinds in one stack of 15). Rows must come out the same, timings aside; prints both
times and the cost model's projection of each, and writes bench/results/grouping.json.

    python bench/grouping_speed.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from lthutils import cluster, cost, study
from lthutils.results import read_results

RESULTS = Path(__file__).parent / "results" / "grouping.json"
VARIANTS = {"one seed per task": 1, "seeds grouped (default)": None}


def units(folder: str) -> list[study.Unit]:
    return study.plan_q1(
        "mnist",
        ["fc:1x10", "fc:2x50", "fc:1x100"],
        None,
        "adam",
        0.0012,
        ["reinit", "random_mask"],
        rounds=3,
        rate=0.2,
        iterations=1000,
        seeds=[0, 1, 2, 3, 4],
        eval_every=100,
        val_size=None,
        exp_root=f"{folder}/exp_result",
        model_root=f"{folder}/model_save",
        quiet=True,
    )


def rows(folder: str) -> pd.DataFrame:
    frames = [read_results(unit.results_path) for unit in units(folder)]
    timing = ["train_seconds", "eval_seconds", "checksum", "run_id"]
    frame = pd.concat(frames).drop(columns=[c for c in timing if c in frames[0]])
    return frame.sort_values(["model", "seed", "round", "kind"]).reset_index(drop=True)


def main() -> None:
    seconds, projected, frames = {}, {}, {}
    with cluster.local_cluster(2, 1) as address:
        for name, seeds_per_task in VARIANTS.items():
            with tempfile.TemporaryDirectory() as folder:
                planned = units(folder)
                projected[name] = cost.plan_cost(planned, "local", 2, seeds_per_task=seeds_per_task).seconds
                started = time.perf_counter()
                cluster.run_units(planned, address, seeds_per_task=seeds_per_task)
                seconds[name] = time.perf_counter() - started
                frames[name] = rows(folder)
    first, second = VARIANTS
    pd.testing.assert_frame_equal(frames[first], frames[second])  # grouping changes speed, not numbers
    print(f"Q1 slice ({len(frames[first])} trainings) on a 2-worker LocalCluster; rows identical")
    for name in VARIANTS:
        print(f"{name:26} {seconds[name]:7.1f} s (projected {projected[name]:6.1f} s)")
    print(f"grouped over one seed per task: {seconds[first] / seconds[second]:.2f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    report = {"seconds": seconds, "projected": projected, "speedup": seconds[first] / seconds[second]}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
