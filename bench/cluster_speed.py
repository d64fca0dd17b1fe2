"""run-all of a 4-task quick grid on a Dask LocalCluster: 2 worker processes against 1.

The grid is one Q1 parameter file: two models (LeNet-300-100 and a 2x300 fully connected net)
x two seeds, 3 pruning rounds of 1,336 steps (4 epochs of batch 60) on 20,000 Fashion-MNIST
images, i.e. 4 tasks. Each variant runs the whole `run-all` (notebook kernel, plan, tasks,
figures) into fresh folders:
- 1 worker with 1 torch thread, 2 workers with 1 torch thread each (the target compares these);
- 1 worker with 2 torch threads, for comparison: one process using both cores through torch;
- the first variant's run-all again in its folders, where every unit is done: the fixed cost of a
  run (cluster and kernel start, plan checks, figures), which more workers cannot shorten.
Prints a table and writes bench/results/cluster.json.

    python bench/cluster_speed.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from lthutils import cluster, runner

RESULTS = Path(__file__).parent / "results" / "cluster.json"
GRID = {
    "question": "q1",
    "parameters": {
        "dataset": "fashionmnist",
        "models": ["lenet300", "fc:2x300"],
        "num_train": 20000,
        "rounds": 3,
        "iterations": 1336,
        "seeds": [0, 1],
        "eval_every": 100,
        "quiet": True,
        "primary": {"level": "last"},  # 3 rounds of 20% stop at 51%: the default band (<= 50%) holds none
    },
}
VARIANTS = {"1 worker x 1 thread": (1, 1), "2 workers x 1 thread": (2, 1), "1 worker x 2 threads": (1, 2)}
FIRST, FIXED = "1 worker x 1 thread", "again, every unit done (fixed)"


def run_grid(folder: str, workers: int, torch_threads: int) -> float:
    """Seconds for run-all of GRID on a fresh LocalCluster, into `folder`."""
    parameters = {**GRID["parameters"], "exp_root": f"{folder}/exp_result", "model_root": f"{folder}/model_save"}
    grid = Path(folder, "grid.yaml")
    grid.write_text(yaml.safe_dump({**GRID, "parameters": parameters}))
    started = time.perf_counter()  # as `run-all --scheduler local --workers N`, with the threads set here
    with cluster.local_cluster(workers, torch_threads) as address:
        runner.run_all([grid], Path(folder, "notebooks"), address)
    return time.perf_counter() - started


def main() -> None:
    seconds = {}
    with tempfile.TemporaryDirectory() as first:
        for name, setting in VARIANTS.items():
            with tempfile.TemporaryDirectory() as folder:
                seconds[name] = run_grid(first if name == FIRST else folder, *setting)
        seconds[FIXED] = run_grid(first, *VARIANTS[FIRST])
    base, two = seconds[FIRST], seconds["2 workers x 1 thread"]
    report = {
        "cores": len(os.sched_getaffinity(0)),
        "grid": GRID,
        "seconds": seconds,
        "speedup_2_workers_over_1": base / two,
        "speedup_beyond_the_fixed_cost": (base - seconds[FIXED]) / (two - seconds[FIXED]),
    }
    print(f"run-all of a 4-task Q1 grid on a LocalCluster ({report['cores']} cores)")
    for name, value in seconds.items():
        print(f"{name:32} {value:8.1f} s  {base / value:5.2f}x")
    print(f"2 workers over 1, beyond the fixed cost: {report['speedup_beyond_the_fixed_cost']:.2f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
