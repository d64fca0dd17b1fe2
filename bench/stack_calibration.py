"""The cost preview's calibrated step of a stack against the step a run's stack takes.

For LeNet-300-100 and fc2x300 (Adam, bf16 as in params/quick/, batches of 60): the calibration
(`cost.measure_alongside`: stacks of cost.CALIBRATION_STACKS models, 50 steps, in 2 processes at
once) and, in 2 processes at once too, stacks of 5 and 15 trained as a run trains them (800 steps,
validation on 1,000 images every 100 steps; the median of 3 timings after a warm-up). Prints each
measured step beside `cost.stack_step` on the calibrated points and beside the straight line
through the first two points alone (the calibration before 2026-12-04), and writes
bench/results/stack_calibration.json.

    python bench/stack_calibration.py
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
from pathlib import Path
from typing import Any

import torch

from lthutils import cost
from lthutils.config import ExperimentConfig
from lthutils.data import Splits
from lthutils.models import build_model
from lthutils.pruning import Mask
from lthutils.training import make_optimizer, make_stack, train_stack

RESULTS = Path(__file__).parent / "results" / "stack_calibration.json"
MODELS = {"lenet300": {"model": "lenet300"}, "fc2x300": {"model": "fc", "n_layers": 2, "n_neurons": 300}}
SHAPE, CLASSES = (1, 28, 28), 10


def config(name: str) -> ExperimentConfig:
    return ExperimentConfig(
        name="bench", dataset="fashionmnist", optimizer="adam", precision="bf16", iterations=800,
        eval_every=100, quiet=True, **MODELS[name],
    ).resolved()  # fmt: skip


def run_step(name: str, count: int, barrier: Any) -> float:
    """Seconds per step of a stack of `count` models trained as a run trains them."""
    torch.set_num_threads(1)
    settings = config(name)
    generator = torch.Generator().manual_seed(0)

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, *SHAPE, generator=generator), torch.randint(0, CLASSES, (n,), generator=generator)

    splits = Splits(*images(5000), *images(1000), *images(10))
    seconds = []
    for _ in range(4):  # the first warms up
        barrier.wait()
        template = build_model(settings, SHAPE, CLASSES, seed=0)
        models = [build_model(settings, SHAPE, CLASSES, seed=k) for k in range(count)]
        stack = make_stack(models, [Mask.ones(template)] * count, settings.precision)
        optimizer = make_optimizer(stack.leaves, settings)
        result = train_stack(stack, optimizer, [splits] * count, settings, list(range(count)))[0]
        seconds.append(result.train_seconds * count / settings.iterations)  # train_seconds: per model
    return statistics.median(seconds[1:])


def main() -> None:
    context = multiprocessing.get_context("spawn")
    summary = {}
    for name in MODELS:
        *points, _ = cost.measure_alongside(config(name), threads=1, processes=2)
        first_line = (points[1] - points[0]) / (cost.CALIBRATION_STACKS[1] - 1)
        rows = {}
        for count in (5, 15):
            with context.Manager() as manager, context.Pool(2) as pool:
                barrier = manager.Barrier(2)
                measured = statistics.mean(pool.starmap(run_step, [(name, count, barrier)] * 2))
            rows[count] = {
                "measured": measured,
                "calibrated": cost.stack_step(count, points),
                "line through 1 and 4": points[0] + first_line * (count - 1),
            }
            print(
                f"{name:9s} K={count:2d}: {1000 * measured:6.2f} ms a step in a run; calibrated "
                f"{1000 * rows[count]['calibrated']:6.2f}, the line through 1 and 4 "
                f"{1000 * rows[count]['line through 1 and 4']:6.2f}",
                flush=True,
            )
        summary[name] = {"calibrated points": dict(zip(cost.CALIBRATION_STACKS, points)), "stacks": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
