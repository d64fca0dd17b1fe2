"""What logging every training run to a tracker costs a stack of small models.

The same IMP search (fc1x100 on 5,000 Fashion-MNIST images, 5 seeds with the reinit and
random_mask controls: stacks of up to 15 models, 3 pruning rounds of 800 steps, validation every
100) with tracker none, tensorboard, mlflow and wandb (offline), each into a fresh folder, in
turn, three times; rows must not depend on the tracker. Prints each tracker's best wall time and its
ratio to none (issue 22's target: at most 1.05), then what logging one training run costs each
tracker on its own (PER_RUN_CALLS rows logged and flushed one at a time, after a first call that
sets the tracker up), and writes bench/results/trackers.json.

    python bench/tracker_overhead.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from lthutils import tracking
from lthutils.config import TRACKERS, ExperimentConfig
from lthutils.experiments import find_tickets
from lthutils.results import RunStore, read_results

RESULTS = Path(__file__).parent / "results" / "trackers.json"
REPEATS = 3
PER_RUN_CALLS = 30


def config(folder: str, tracker: str) -> ExperimentConfig:
    return ExperimentConfig(
        name="bench",
        dataset="fashionmnist",
        model="fc",
        n_layers=1,
        n_neurons=100,
        num_train=5000,
        val_size=1000,
        iterations=800,
        eval_every=100,
        rounds=3,
        seeds=(0, 1, 2, 3, 4),
        controls=("reinit", "random_mask"),
        tracker=tracker,
        quiet=True,
        exp_root=f"{folder}/exp",
        model_root=f"{folder}/models",
    )


def main() -> None:
    seconds: dict[str, list[float]] = {tracker: [] for tracker in TRACKERS}
    rows = {}
    for _ in range(REPEATS):
        for tracker in TRACKERS:
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                tickets = find_tickets(config(folder, tracker))
                seconds[tracker].append(time.perf_counter() - started)
                frame = read_results(Path(folder) / "exp" / "bench" / tickets.name / "results.csv")
                rows[tracker] = frame.drop(columns=["train_seconds", "eval_seconds", "checksum"])
    for tracker in TRACKERS:
        pd.testing.assert_frame_equal(rows[tracker], rows["none"])
    best = {tracker: min(times) for tracker, times in seconds.items()}
    summary = {
        "trainings": len(rows["none"]),
        "seconds": seconds,
        "ratio_to_none": {tracker: best[tracker] / best["none"] for tracker in TRACKERS},
    }
    for tracker in TRACKERS:
        print(f"{tracker:12s} best {best[tracker]:7.1f} s  x{summary['ratio_to_none'][tracker]:.3f} of none")
    row = rows["none"].iloc[-1].to_dict()
    summary["seconds_per_logged_run"] = {tracker: per_run(tracker, row) for tracker in TRACKERS if tracker != "none"}
    for tracker, seconds_each in summary["seconds_per_logged_run"].items():
        print(f"{tracker:12s} {1000 * seconds_each:6.1f} ms to log one training run")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=1))


def per_run(tracker: str, row: dict) -> float:
    """Seconds to log one training run's row (and wait for it), on a set-up tracker."""
    with tempfile.TemporaryDirectory() as folder:
        settings = config(folder, tracker)
        store = RunStore.of(settings)
        tracking.log_rows(settings, store, row)
        tracking.flush()
        started = time.perf_counter()
        for _ in range(PER_RUN_CALLS):
            tracking.log_rows(settings, store, row)
            tracking.flush()
        return (time.perf_counter() - started) / PER_RUN_CALLS


if __name__ == "__main__":
    main()
