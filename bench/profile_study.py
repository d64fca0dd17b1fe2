"""Where a study's projected time goes: by question and architecture, then by part of a step.

For each parameter file (e.g. params/full/), the cost model (lthutils.cost, the calibration of
this machine) splits the projected time of every task `run-all` would run into training steps
and evaluation, summed by question and architecture. Then each architecture's step, as a
cluster worker trains it (one torch thread, the stack size its tasks mostly have), is profiled
with torch.profiler and its operators' self time put into parts: products (matrix products,
convolutions), optimizer, masking, casts, data (batch gathering), other tensor work
(activations, loss, pooling and their gradients) and, the rest of the wall time of a step,
Python and dispatch outside any operator. The projected training time of each architecture is
then split by those shares. Prints the tables and writes bench/results/profile_study.json.

    python bench/profile_study.py params/full/ [--scheduler local] [--steps 200]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from lthutils import cost, runner
from lthutils.data import Splits
from lthutils.experiments import prepare
from lthutils.models import build_model
from lthutils.pruning import Mask
from lthutils.training import make_optimizer, make_stack, train_stack

RESULTS = Path(__file__).parent / "results" / "profile_study.json"
PARTS = {  # operator name (without "aten::") -> part of a step; anything else is "other tensor work"
    "products": ("bmm", "baddbmm", "mm", "addmm", "mkldnn_convolution", "convolution_backward", "_convolution"),
    "optimizer": ("_fused_adam_", "_fused_sgd_", "zero_"),
    "masking": ("mul_", "_foreach_mul_"),
    "casts": ("copy_", "_to_copy", "to"),
    "data": ("index_select", "randperm", "stack", "cat", "expand"),
}
ORDER = ["products", "optimizer", "masking", "casts", "data", "other tensor work", "python and dispatch"]


def part_of(name: str) -> str | None:
    """The part an operator's self time counts in; None for the profiler's own ranges (their
    self time is Python outside operators, counted from the wall time instead)."""
    if not name.startswith("aten::"):
        return None
    bare = name.removeprefix("aten::")
    return next((part for part, names in PARTS.items() if bare in names), "other tensor work")


def step_parts(config, count: int, steps: int) -> dict[str, float]:
    """Seconds per step of a stack of `count` models of `config` (one thread, synthetic 28x28
    images as the calibration uses), split into PARTS by the profiler's self times."""
    torch.set_num_threads(1)
    config = dataclasses.replace(config, iterations=steps, eval_every=0, quiet=True)
    generator = torch.Generator().manual_seed(0)

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)

    splits = Splits(*images(cost.CALIBRATION_POOL), *images(10), *images(10))
    template = build_model(config, (1, 28, 28), 10, seed=0)

    def run() -> float:
        models = [build_model(config, (1, 28, 28), 10, seed=k) for k in range(count)]
        stack = make_stack(models, [Mask.ones(template)] * count, config.precision)
        result = train_stack(stack, make_optimizer(stack.leaves, config), [splits] * count, config, list(range(count)))
        return result[0].train_seconds * count / steps

    run()  # warm-up
    unprofiled = min(run() for _ in range(2))
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        run()
        wall = time.perf_counter() - started
    seconds = collections.Counter()
    for event in profiler.key_averages():
        part = part_of(event.key)
        if part is not None:
            seconds[part] += event.self_cpu_time_total / 1e6
    seconds["python and dispatch"] = max(0.0, wall - sum(seconds.values()))
    total = sum(seconds.values())
    return {part: unprofiled * seconds[part] / total for part in ORDER}  # shares of the unprofiled step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", type=Path, nargs="+", help="parameter files or folders")
    parser.add_argument("--scheduler", default="local", help="local (run-all's default) or none")
    parser.add_argument("--steps", type=int, default=200, help="steps per profiled training")
    parser.add_argument("--seeds-per-task", type=int, help="group seeds this way (1: one per task, as before)")
    args = parser.parse_args()
    workers = len(os.sched_getaffinity(0))
    on_cluster = args.scheduler != "none"
    threads = 1 if on_cluster else torch.get_num_threads()
    processes = workers if on_cluster else 1
    calibration = cost.Calibration()
    rows = collections.defaultdict(collections.Counter)  # (question, architecture) -> seconds
    stacks = collections.defaultdict(collections.Counter)  # architecture -> {stack size: training seconds}
    configs, wall = {}, {}
    for parameter_file in runner.load_all(args.paths):
        units, _ = runner.planned(parameter_file)
        question = parameter_file.question.key
        found = cost.plan_cost(units, args.scheduler, workers, calibration, args.seeds_per_task)
        wall[question] = found.seconds
        if on_cluster:
            groups = cost.by_unit(cost.seed_groups(units, workers, args.seeds_per_task))
        else:
            groups = {unit: [tuple(unit.config.seeds)] for unit in units}
        for unit, seed_sets in groups.items():
            setting = prepare(unit.config)
            for task in cost.unit_tasks(unit, setting, seed_sets):
                for stack in task:
                    train, evaluation = calibration.parts(stack, threads, processes)
                    name = f"{setting.config.architecture} {setting.config.optimizer} {setting.config.precision}"
                    configs[name] = setting.config
                    row = rows[question, name]
                    row.update(trainings=stack.count, train=train, evaluation=evaluation)
                    stacks[name][stack.count] += train
    calibration.save()
    profiled = {}
    for name, config in configs.items():
        count = stacks[name].most_common(1)[0][0]  # the stack size most of its training time runs at
        profiled[name] = {"stack": count, "parts": step_parts(config, count, args.steps)}
    total = sum(row["train"] + row["evaluation"] for row in rows.values())
    print(f"projected worker time by question and architecture ({args.scheduler}, {processes} processes):")
    header = f"{'question':8} {'architecture':28} {'trainings':>9} {'worker h':>9} {'share':>6} {'eval':>6}  K"
    print(header)
    table = []
    for (question, name), row in sorted(rows.items(), key=lambda item: -(item[1]["train"] + item[1]["evaluation"])):
        hours = (row["train"] + row["evaluation"]) / 3600
        parts = profiled[name]["parts"]
        step = sum(parts.values())
        split = {part: row["train"] * seconds / step / 3600 for part, seconds in parts.items()}
        split["evaluation"] = row["evaluation"] / 3600
        table.append({"question": question, "architecture": name, "trainings": row["trainings"], "hours": split})
        print(
            f"{question:8} {name:28} {row['trainings']:9d} {hours:9.2f} {hours * 3600 / total:6.1%} "
            f"{row['evaluation'] / (row['train'] + row['evaluation']):6.1%}  {profiled[name]['stack']}"
        )
    print(f"total worker time {total / 3600:.2f} h; projected wall time by question: ", end="")
    print(", ".join(f"{q} {s / 3600:.2f} h" for q, s in wall.items()), f"(total {sum(wall.values()) / 3600:.2f} h)")
    print("\nper step, as a worker trains it (1 thread; K: the stack size most of its time runs at), ms:")
    print(f"{'architecture':28} {'K':>3} {'step':>7}  " + " ".join(f"{part[:10]:>10}" for part in ORDER))
    for name, found in profiled.items():
        parts = found["parts"]
        step = sum(parts.values())
        shares = " ".join(f"{seconds / step:10.0%}" for seconds in parts.values())
        print(f"{name:28} {found['stack']:3d} {1000 * step:7.2f}  {shares}")
    print("\nprojected worker hours by part (training split by the step profile), summed over the study:")
    overall = collections.Counter()
    for row in table:
        overall.update(row["hours"])
    for part in [*ORDER, "evaluation"]:
        print(f"  {part:22} {overall[part]:7.2f} h  {overall[part] * 3600 / total:6.1%}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": cost.machine(), "rows": table, "steps": profiled, "wall_seconds": wall}, indent=1, default=str
        )
    )


if __name__ == "__main__":
    main()
