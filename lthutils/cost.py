"""What a study asks for before it runs: trainings, optimizer steps, training examples, dense
FLOPs, and a projected wall time on this machine.

The counts follow from the plan alone and equal what the runs' rows then record (one row per
training; `train_iterations` and `train_examples` per row). The time comes from a short
calibration of each architecture's training step (stacks of 1, 4 and 16 models) and evaluation on
this machine, timed in as many processes at once as will train side by side, measured once and
cached in `~/.cache/lthutils/calibration.json` (or $LTHUTILS_CACHE), then spread over the
workers the way `cluster.run_units` hands out tasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy
import torch

from lthutils.config import ExperimentConfig
from lthutils.data import DATASET_FACTS, GRAY28, Splits, default_val_size
from lthutils.experiments import Setting, finished_elsewhere, prepare
from lthutils.lottery import kinds_at
from lthutils.models import build_model, forward_flops
from lthutils.pruning import Mask
from lthutils.results import RunStore, write_json
from lthutils.training import (
    EVAL_BATCH_SIZE,
    MAX_STACKED_MODELS,
    evaluate,
    make_optimizer,
    make_stack,
    stackable,
    total_iterations,
    train_stack,
)

if TYPE_CHECKING:
    from lthutils.jobs import Unit

CALIBRATION_STEPS = 50  # at most: fewer (at least 3) where they would exceed CALIBRATION_WORK
CALIBRATION_WORK = 1e11  # dense training FLOPs per timing: a CIFAR VGG's 50 steps would take minutes on a CPU
# stack sizes timed; a stack's step time is read off the straight lines between them: the steps of
# 15 or 16 stacked LeNet-300-100s are memory-bound, and the line through 1 and 4 alone priced a stack
# of 15 at 11 ms a step against 14-17 measured (docs/PERFORMANCE.md)
CALIBRATION_STACKS = (1, 4, MAX_STACKED_MODELS)
CALIBRATION_POOL = 10_000  # training images to draw batches from: a pool that fits in cache would flatter the step


@dataclass(frozen=True)
class Stack:
    """Models trained together: `count` trainings of one setting, each of `steps` steps."""

    config: ExperimentConfig  # resolved; its architecture, batch size and precision set the speed
    count: int
    steps: int
    examples: int  # training examples each model processes
    eval_examples: int  # validation and test examples each model is evaluated on (test set twice)
    forward_flops: int  # one example through one dense model
    stacked: bool  # fully connected: the models share each step (training.StackedLinear)


@dataclass
class Cost:
    """Totals over trainings; `seconds` is None where no projection is made (a remote cluster)."""

    trainings: int = 0
    done: int = 0  # trainings whose rows already exist: a rerun skips them
    shared: int = 0  # trainings of searches an earlier file of the same run trains: copied, not trained
    steps: int = 0
    examples: int = 0
    flops: float = 0.0
    seconds: float | None = 0.0

    def add(self, other: Cost) -> None:
        for name in ("trainings", "done", "shared", "steps", "examples", "flops"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds = None if self.seconds is None or other.seconds is None else self.seconds + other.seconds

    def describe(self) -> str:
        todo = [f"{self.done} done: a rerun skips them"] if self.done else []
        todo += [f"{self.shared} shared with a search an earlier file trains"] if self.shared else []
        todo = f" ({'; '.join(todo)})" if todo else ""
        when = "time not projected" if self.seconds is None else f"about {_duration(self.seconds)} on this machine"
        return (
            f"{self.trainings} trainings{todo}, {self.steps:,} optimizer steps, {self.examples:,} sample-epochs "
            f"(training examples processed), {self.flops / 1e12:,.1f} dense TFLOP; {when}"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} hours"


def examples_in(steps: int, num_train: int, batch_size: int) -> int:
    """Training examples in `steps` steps of epochs of ceil(num_train / batch_size) steps."""
    per_epoch = math.ceil(num_train / batch_size)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * num_train + min(rest * batch_size, num_train)


def evaluations(steps: int, eval_every: int) -> int:
    """Validation evaluations of a run: before training and every eval_every steps (when
    eval_every is set), and at the end."""
    if not eval_every:
        return 1
    return 1 + steps // eval_every + (0 if steps % eval_every == 0 else 1)


def seed_groups(
    units: list[Unit], threads: int, seeds_per_task: int | None = None
) -> list[tuple[Unit, tuple[int, ...]]]:
    """Each unit's seeds in groups, one task each, searches first. A fully connected unit groups
    at most as many seeds as fill a stack of MAX_STACKED_MODELS (a search stacks one pruned
    round's kinds per seed, a transfer every round's), in groups of even sizes, other units one
    seed per task; the largest groups (of the biggest models first) shrink until there are at
    least two tasks per worker thread (`threads`), where the seeds allow, so that no thread
    waits long while another trains a big stack (a Q1 slice of 3 units of 5 seeds as 3 tasks on
    2 workers ran 0.93x as fast as one seed per task: docs/PERFORMANCE.md).
    `seeds_per_task`: at most that many instead."""
    units = sorted(units, key=lambda u: u.source is not None)
    sizes, weights = [], []  # weights: parameters per model, which unit to split first
    for unit in units:
        config = unit.config.resolved()
        rounds = range(config.rounds + 1) if unit.source is not None else [min(1, config.rounds)]
        per_seed = sum(len(kinds_at(r, config.controls)) for r in rounds)
        facts = DATASET_FACTS[config.dataset]
        model = build_model(config, facts.input_shape, facts.num_classes, seed=0)
        sizes.append(max(1, MAX_STACKED_MODELS // per_seed) if stackable(model) else 1)
        weights.append(sum(p.numel() for p in model.parameters()))
    if seeds_per_task is not None:
        sizes = [seeds_per_task] * len(units)
    sizes = [min(size, len(unit.config.seeds)) for size, unit in zip(sizes, units)]

    def tasks() -> int:
        return sum(-(-len(unit.config.seeds) // size) for unit, size in zip(units, sizes))

    while seeds_per_task is None and tasks() < 2 * threads and max(sizes) > 1:
        largest = max(range(len(units)), key=lambda i: (sizes[i], weights[i]))  # the biggest model of ties
        sizes[largest] -= 1
    groups = []
    for unit, size in zip(units, sizes):  # as many groups as `size` needs, of sizes as even as can be
        seeds = unit.config.seeds
        count = -(-len(seeds) // size)
        bounds = [len(seeds) * i // count for i in range(count + 1)]
        groups += [(unit, tuple(seeds[a:b])) for a, b in zip(bounds, bounds[1:])]
    return groups


def by_unit(groups: list[tuple[Unit, tuple[int, ...]]]) -> dict[Unit, list[tuple[int, ...]]]:
    """seed_groups' tasks as each unit's seed groups, in their order."""
    found: dict[Unit, list[tuple[int, ...]]] = {}
    for unit, seeds in groups:
        found.setdefault(unit, []).append(tuple(seeds))
    return found


def unit_tasks(
    unit: Unit, setting: Setting, seed_sets: list[tuple[int, ...]], trained_before: set | frozenset = frozenset()
) -> list[list[Stack]]:
    """The unit's work as tasks, one per group of seeds (as seed_groups makes them for a
    cluster; all seeds in one group in one process), each a list of stacks grouped as
    lottery.run_imp and experiments._train_on_target group them. Trainings whose rows exist
    (here, or for a search in another question's folder: experiments.finished_elsewhere) or are
    `trained_before` ((seed, round, kind): an earlier file's search) are left out."""
    config = setting.config
    source = None if unit.source is None else unit.source.run_id()
    done = RunStore.of(config, source).done() | trained_before
    if unit.source is None:  # what another question's folder holds finished is copied, not trained
        elsewhere = finished_elsewhere(config)
        done |= set(zip(elsewhere["seed"].astype(int), elsewhere["round"].astype(int), elsewhere["kind"].astype(str)))
    steps = total_iterations(config, setting.num_train)
    facts = DATASET_FACTS[config.dataset]
    val_size = default_val_size(facts.pool) if config.val_size is None else config.val_size

    def stack(count: int, first_step: int) -> Stack:
        """`count` trainings of steps first_step+1..steps (a rewound search's pruned rounds start at k)."""
        examples = examples_in(steps, setting.num_train, config.batch_size)
        examples -= examples_in(first_step, setting.num_train, config.batch_size)
        validations = evaluations(steps, config.eval_every) - (
            first_step // config.eval_every if config.eval_every else 0
        )
        eval_examples = validations * val_size + 2 * facts.test
        return Stack(config, count, steps - first_step, examples, eval_examples, flops, stacked)

    flops = forward_flops(setting.template, facts.input_shape)
    stacked = stackable(setting.template)
    size = MAX_STACKED_MODELS if stacked else 1
    tasks = []
    for seeds in seed_sets:
        counts = []  # (trainings, first step) per stack: a search trains round by round, a transfer all at once
        groups = [[r] for r in range(config.rounds + 1)] if unit.source is None else [range(config.rounds + 1)]
        for group in groups:
            items = [
                (seed, r, kind)
                for r in group
                for kind in kinds_at(r, config.controls)
                for seed in seeds
                if (seed, r, kind) not in done
            ]
            rewound = unit.source is None and config.reset == "rewind" and group[0] > 0
            counts += [
                (len(items[i : i + size]), config.rewind_iteration if rewound else 0)
                for i in range(0, len(items), size)
            ]
        tasks.append([stack(count, first_step) for count, first_step in counts])
    return tasks


def plan_cost(
    units: list[Unit],
    scheduler: str | None,
    workers: int | None = None,
    calibration: Calibration | None = None,
    seeds_per_task: int | None = None,
    searched: dict[tuple[str, str], set] | None = None,
) -> Cost:
    """What these units (a notebook's plan) ask for, and how long they take here when run with
    `scheduler` ('local' with `workers` processes, 'none' in one process, an address: no time)
    and its seeds grouped into tasks as seed_groups(..., seeds_per_task) groups them.
    `calibration`: the caller's, which it saves; by default one is read and saved here.
    `searched`: the rows (seed, round, kind) of each search (exp_root, run id) that earlier files
    of one run train, which these units copy instead of training them (study.run adopts them);
    this call adds its own searches' rows."""
    cores = len(os.sched_getaffinity(0))
    on_cluster = scheduler != "none"
    workers = workers or cores
    threads = max(1, cores // workers) if on_cluster else torch.get_num_threads()
    settings = {config: prepare(config, load_data=False) for config in {unit.config for unit in units}}
    cost = Cost(seconds=None if scheduler not in ("local", "none") else 0.0)
    finish_of: dict[tuple[str, int], float] = {}  # (a search's run id, seed): when its task ends
    free = [0.0] * (workers if on_cluster else 1)
    own = calibration is None
    calibration = calibration or Calibration()
    searched = {} if searched is None else searched
    groups = by_unit(seed_groups(units, workers, seeds_per_task)) if on_cluster else {}
    for unit in sorted(units, key=lambda u: u.source is not None):
        setting = settings[unit.config]
        rows = len(_row_keys(unit))
        earlier = set(searched.get(_search_key(unit), ())) if unit.source is None else set()
        if unit.source is None:
            searched.setdefault(_search_key(unit), set()).update(_row_keys(unit))
        seed_sets = groups.get(unit, [tuple(unit.config.seeds)])
        tasks = unit_tasks(unit, setting, seed_sets)
        missing = sum(stack.count for task in tasks for stack in task)  # no rows yet, here or elsewhere
        if earlier:
            tasks = unit_tasks(unit, setting, seed_sets, earlier)
        stacks = [stack for task in tasks for stack in task]
        todo = sum(stack.count for stack in stacks)
        cost.trainings += rows
        cost.done += rows - missing
        cost.shared += missing - todo
        cost.steps += sum(stack.count * stack.steps for stack in stacks)
        cost.examples += sum(stack.count * stack.examples for stack in stacks)
        cost.flops += sum(
            stack.count * (3 * stack.examples + stack.eval_examples) * stack.forward_flops for stack in stacks
        )
        if cost.seconds is None:
            continue
        for task, seeds in zip(tasks, seed_sets):
            ready_at = (
                max((finish_of.get((unit.source.run_id(), s), 0.0) for s in seeds), default=0.0) if unit.source else 0.0
            )
            worker = min(range(len(free)), key=free.__getitem__)
            seconds = sum(calibration.seconds(stack, threads, len(free)) for stack in task)
            free[worker] = max(free[worker], ready_at) + seconds
            if unit.source is None:
                finish_of.update(dict.fromkeys(((unit.config.run_id(), s) for s in seeds), free[worker]))
    if cost.seconds is not None:
        cost.seconds = max(free)
    if own:
        calibration.save()
    return cost


def _row_keys(unit: Unit) -> set[tuple[int, int, str]]:
    """(seed, round, kind) of each training (result row) the unit asks for."""
    config = unit.config
    return {(s, r, k) for s in config.seeds for r in range(config.rounds + 1) for k in kinds_at(r, config.controls)}


def _search_key(unit: Unit) -> tuple[str, str]:
    return os.path.abspath(unit.config.exp_root), unit.config.run_id()


def task_seconds(groups: list[tuple[Unit, tuple[int, ...]]], workers: int) -> list[float] | None:
    """The projected seconds of each task (a unit's group of seeds, as seed_groups makes them)
    on `workers` worker processes here, from this machine's cached calibration only: None when a
    timing is not cached (nothing is measured)."""
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    calibration, settings, tasks = Calibration(), {}, {}
    for unit, seed_sets in by_unit(groups).items():  # each run's rows read once
        if unit.config not in settings:
            settings[unit.config] = prepare(unit.config, load_data=False)
        tasks.update(zip(((unit, seeds) for seeds in seed_sets), unit_tasks(unit, settings[unit.config], seed_sets)))
    stacks = [stack for task in tasks.values() for stack in task]
    if any(calibration.key(stack, threads, workers) not in calibration.measured for stack in stacks):
        return None
    return [
        sum(calibration.seconds(stack, threads, workers) for stack in tasks[unit, tuple(seeds)])
        for unit, seeds in groups
    ]


def cache_path() -> Path:
    return Path(os.environ.get("LTHUTILS_CACHE") or Path.home() / ".cache" / "lthutils") / "calibration.json"


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    """What the calibration is valid for: this machine's processor, cores and torch."""
    return f"{platform.node()} | {cpu_name()} | {len(os.sched_getaffinity(0))} cores | torch {torch.__version__}"


class Calibration:
    """Timings measured on this machine, cached per machine: seconds per training step (by stack
    size) and per evaluated example for each architecture, and whatever else a caller times."""

    def __init__(self):
        self.path = cache_path()
        try:
            cached = json.loads(self.path.read_text())
        except (OSError, ValueError):
            cached = {}
        self.all = cached if isinstance(cached, dict) else {}
        self.measured = self.all.setdefault(machine(), {})
        self.changed = False

    def timing(self, key: str, measure: Callable[[], Any]) -> Any:
        """The cached value of `key`, measured (and cached) first if it is not known here."""
        if key not in self.measured:
            self.measured[key] = measure()
            self.changed = True
        return self.measured[key]

    def seconds(self, stack: Stack, threads: int, processes: int) -> float:
        """Projected seconds for `stack` trained with `threads` torch threads in each of
        `processes` processes training side by side."""
        return sum(self.parts(stack, threads, processes))

    @staticmethod
    def key(stack: Stack, threads: int, processes: int) -> str:
        config = stack.config
        shape = DATASET_FACTS[config.dataset].input_shape
        inputs = "" if shape == GRAY28 else " " + "x".join(map(str, shape))  # 28x28 gray: keys as before
        augment = " crop_flip" if config.augment == "crop_flip" else ""
        return (
            f"{config.architecture}{inputs} batch {config.batch_size} {config.optimizer} {config.precision}{augment}, "
            f"{threads} threads x {processes} processes"
        )

    def parts(self, stack: Stack, threads: int, processes: int) -> tuple[float, float]:
        """seconds(), as (training steps, evaluation)."""
        config, key = stack.config, self.key(stack, threads, processes)
        if len(self.measured.get(key, ())) not in (0, len(CALIBRATION_STACKS) + 1):
            del self.measured[key]  # timed at other stack sizes by an earlier version: timed again
        *steps, per_example = self.timing(key, lambda: measure_alongside(config, threads, processes))
        step = stack_step(stack.count, steps) if stack.stacked else steps[0] * stack.count
        return stack.steps * step, stack.count * stack.eval_examples * per_example

    def save(self) -> None:
        if self.changed:
            with contextlib.suppress(OSError):  # a cache that cannot be written is measured again next time
                write_json(self.path, self.all)


def stack_step(count: int, steps: list[float]) -> float:
    """Seconds per step of a stack of `count` models (at most MAX_STACKED_MODELS), on the straight
    lines between the steps timed at CALIBRATION_STACKS."""
    return float(numpy.interp(count, CALIBRATION_STACKS, steps))


def measure_alongside(config: ExperimentConfig, threads: int, processes: int) -> list[float]:
    """`measure` in `processes` processes at once, as many as will train side by side (the cores
    and caches they share slow each of them down); the mean of their timings."""
    if processes == 1:
        return measure(config, threads)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        pool = context.Pool(processes)
        try:
            timings = pool.starmap(measure, [(config, threads, manager.Barrier(processes))] * processes)
        finally:
            pool.close()
            pool.join()
    return [statistics.mean(values) for values in zip(*timings)]


def measure(config: ExperimentConfig, threads: int, barrier: Any = None) -> list[float]:
    """[seconds per step of a stack of each of CALIBRATION_STACKS models (one model's each time for
    models that do not stack), seconds per evaluated example of one model], timed with
    `threads` torch threads on synthetic inputs of the config's dataset's shape and classes
    (speed does not depend on the pixels). `barrier`: shared with processes measuring at the same
    time; each timing starts together."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    facts = DATASET_FACTS[config.dataset]
    shape, classes = facts.input_shape, facts.num_classes
    try:
        template = build_model(config, shape, classes, seed=0)
        per_step = 3 * forward_flops(template, shape) * config.batch_size  # forward and backward, dense
        steps = max(3, min(CALIBRATION_STEPS, int(CALIBRATION_WORK / per_step)))
        config = dataclasses.replace(config, iterations=steps, eval_every=0, quiet=True)
        generator = torch.Generator().manual_seed(0)

        def images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.randn(count, *shape, generator=generator), torch.randint(
                0, classes, (count,), generator=generator
            )

        splits = Splits(*images(CALIBRATION_POOL), *images(10), *images(10))
        step = []
        for count in CALIBRATION_STACKS if stackable(template) else (1,):
            seconds = []
            for _ in range(3):  # the first run warms the kernels up; the fastest of the others counts
                if barrier is not None:
                    barrier.wait()
                stack = make_stack(
                    [build_model(config, shape, classes, seed=k) for k in range(count)],
                    [Mask.ones(template)] * count,
                    config.precision,
                )
                optimizer = make_optimizer(stack.leaves, config)
                result = train_stack(stack, optimizer, [splits] * count, config, list(range(count)))[0]
                seconds.append(result.train_seconds * count / steps)  # train_seconds: per model
            step.append(min(seconds[1:]))
        if len(step) == 1:  # a model that does not stack: its "stack" is itself again
            step *= len(CALIBRATION_STACKS)
        stack = make_stack([template], [Mask.ones(template)], config.precision)
        evaluation = images(EVAL_BATCH_SIZE)
        seconds = []
        for _ in range(3):
            if barrier is not None:
                barrier.wait()
            started = time.perf_counter()
            evaluate(stack, [evaluation[0]], [evaluation[1]])
            seconds.append(time.perf_counter() - started)
        return [*step, min(seconds[1:]) / EVAL_BATCH_SIZE]
    finally:
        torch.set_num_threads(previous)
