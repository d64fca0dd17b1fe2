"""What logging every training run to a tracker costs a stack of small models.

The same IMP search (fc1x100 on 5,000 Fashion-MNIST images, 5 seeds with the reinit and
random_mask controls: stacks of up to 15 models, 3 pruning rounds of 800 steps, validation every
100) with tracker none, tensorboard, mlflow and wandb (offline), in a turning order, five
times; each tracker keeps one exp_root across the repeats, as a study's questions share one, so
its first repeat also pays the tracker's set-up (importing it, creating MLflow's store, starting
W&B's service) and the later ones show what logging costs while a study runs. Rows must not
depend on the tracker.
Prints each tracker's wall times, its best against none's best and the median of its repeats'
ratios to none's run of the same repeat (the later repeats: the first pays the set-up; issue
22's target: at most 1.05); then what each tracker's set-up costs in a fresh exp_root (the first
row logged there), what logging one more training run costs (PER_RUN_CALLS rows logged and
flushed one at a time), and that cost times the search's trainings against none's best: the
slowdown the per-run cost alone makes, steadier than wall times that drift by a few percent
between runs; and what a run that logs nothing costs (MLflow, W&B). Writes
bench/results/trackers.json.

    python bench/tracker_overhead.py
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from lthutils import tracking
from lthutils.config import TRACKERS, ExperimentConfig
from lthutils.experiments import find_tickets
from lthutils.results import RunStore, read_results

RESULTS = Path(__file__).parent / "results" / "trackers.json"
REPEATS = 5
PER_RUN_CALLS = 30


def config(folder: str, tracker: str, name: str = "bench") -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
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
        exp_root=f"{folder}/{tracker}",
        model_root=f"{folder}/models-{tracker}-{name}",
    )


def main() -> None:
    seconds: dict[str, list[float]] = {tracker: [] for tracker in TRACKERS}
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(REPEATS):
            # the order turns each repeat, so that over repeats 2-5 each tracker runs once in each
            # place: a run's place in the sequence moved its time by 2-3% (2026-12-05)
            for tracker in TRACKERS[repeat % len(TRACKERS) :] + TRACKERS[: repeat % len(TRACKERS)]:
                settings = config(folder, tracker, name=f"bench{repeat}")
                started = time.perf_counter()
                find_tickets(settings)
                seconds[tracker].append(time.perf_counter() - started)
                frame = read_results(RunStore.of(settings).dir / "results.csv")
                rows[tracker] = frame.drop(columns=["train_seconds", "eval_seconds", "checksum", "run_id"])
    for tracker in TRACKERS:
        pd.testing.assert_frame_equal(rows[tracker], rows["none"])
    best = {tracker: min(times) for tracker, times in seconds.items()}
    trainings = len(rows["none"])
    summary = {
        "trainings": trainings,
        "seconds": seconds,
        "ratio_to_none": {tracker: best[tracker] / best["none"] for tracker in TRACKERS},
        "median_paired_ratio": {
            tracker: statistics.median(t / n for t, n in zip(times[1:], seconds["none"][1:]))
            for tracker, times in seconds.items()
        },
    }
    for tracker in TRACKERS:
        times = ", ".join(f"{t:.1f}" for t in seconds[tracker])
        print(
            f"{tracker:12s} {times} s  best x{summary['ratio_to_none'][tracker]:.3f} of none's,"
            f" median of repeats 2-{REPEATS} x{summary['median_paired_ratio'][tracker]:.3f}"
        )
    row = rows["none"].iloc[-1].to_dict()
    costs = {tracker: logging_costs(tracker, row) for tracker in TRACKERS if tracker != "none"}
    summary["seconds_to_set_up"] = {tracker: setup for tracker, (setup, _, _) in costs.items()}
    summary["seconds_per_logged_run"] = {tracker: each for tracker, (_, each, _) in costs.items()}
    summary["per_run_cost_ratio"] = {
        tracker: 1 + each * trainings / best["none"] for tracker, (_, each, _) in costs.items()
    }
    summary["seconds_per_empty_run"] = {tracker: empty for tracker, (_, _, empty) in costs.items()}
    for tracker, (setup, each, empty) in costs.items():
        print(
            f"{tracker:12s} set-up {setup:5.2f} s, then {1000 * each:5.1f} ms to log one training run:"
            f" x{summary['per_run_cost_ratio'][tracker]:.3f} of none's best over {trainings} trainings"
            + (f"; a run that logs nothing {1000 * empty:5.1f} ms" if empty is not None else "")
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=1))


def logging_costs(tracker: str, row: dict) -> tuple[float, float, float | None]:
    """Seconds to log the first row into a fresh exp_root (the tracker's set-up there), then to
    log one more row and wait for it, and (MLflow, W&B) to open and close a run that logs
    nothing: the part of a run's cost that is the tracker's own, whatever the kit logs."""
    with tempfile.TemporaryDirectory() as folder:
        settings = config(folder, tracker)
        store = RunStore.of(settings)
        started = time.perf_counter()
        tracking.log_rows(settings, store, row)
        tracking.flush()
        setup = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(PER_RUN_CALLS):
            tracking.log_rows(settings, store, row)
            tracking.flush()
        each = (time.perf_counter() - started) / PER_RUN_CALLS
        return setup, each, empty_run_seconds(settings)


def empty_run_seconds(settings: ExperimentConfig) -> float | None:
    if settings.tracker == "mlflow":
        client = tracking._mlflow_client(tracking.mlflow_uri(settings.exp_root))
        experiment_id = tracking._mlflow_experiment(client, settings.name, settings.exp_root)
        started = time.perf_counter()
        for _ in range(PER_RUN_CALLS):
            client.set_terminated(client.create_run(experiment_id).info.run_id)
    elif settings.tracker == "wandb":
        import wandb

        started = time.perf_counter()
        for _ in range(PER_RUN_CALLS):
            wandb.init(
                project=settings.name,
                dir=str(Path(settings.exp_root).absolute()),
                mode=tracking._wandb_mode(),
                reinit="create_new",
                settings=tracking._wandb_settings(),
            ).finish()
    else:
        return None
    return (time.perf_counter() - started) / PER_RUN_CALLS


if __name__ == "__main__":
    main()
