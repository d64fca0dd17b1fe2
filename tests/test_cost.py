import dataclasses
import json

import pandas as pd
import pytest

from lthutils import cost, study
from lthutils.config import ExperimentConfig
from lthutils.models import build_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTHUTILS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "calibration.json"


def q4_units(root):
    """A search on all of digits5k (with reinit), one on 100 images, and the latter's tickets
    trained on all of it: searches and a transfer, 2 seeds, a short last batch."""
    return study.plan_q4(
        [100],
        None,
        "digits5k",
        "fc:1x30",
        None,
        None,
        rounds=2,
        rate=None,
        iterations=70,
        seeds=[0, 1],
        eval_every=20,
        val_size=None,
        exp_root=str(root / "exp_result"),
        model_root=str(root / "model_save"),
        quiet=True,
    )


def test_the_preview_counts_what_the_run_then_records(tmp_path, cache):
    units = q4_units(tmp_path)
    before = cost.plan_cost(units, "none")
    results = study.run(units)
    rows = pd.concat([pd.read_csv(unit.results_path) for unit in units])
    # per seed: the whole-set search 1 + 2 x 4 (ticket and three baselines), the small searches (equal
    # steps, equal epochs) 3 each, their transfers 5 each
    assert before.trainings == len(rows) == len(results) == 2 * (9 + 2 * 3 + 2 * 5)
    assert before.done == 0
    assert before.steps == rows["train_iterations"].sum()
    assert before.examples == rows["train_examples"].sum()
    assert before.seconds > 0 and before.flops > 0
    after = cost.plan_cost(units, "none")
    assert (after.trainings, after.done, after.steps, after.examples, after.flops) == (len(rows), len(rows), 0, 0, 0)
    assert "50 trainings (50 done: a rerun skips them), 0 optimizer steps" in after.describe()


def test_calibration_is_measured_once_per_machine_and_setting(tmp_path, cache):
    units = q4_units(tmp_path)
    cost.plan_cost(units, "local", workers=2)
    measured = json.loads(cache.read_text())
    assert list(measured) == [cost.machine()]
    (key,) = measured[cost.machine()]  # one architecture, batch size, optimizer, precision and thread count
    assert key == "fc1x30 batch 60 adam fp32, 1 threads x 2 processes"  # timed in 2 processes at once
    *steps, per_example = measured[cost.machine()][key]  # a step of 1, 4 and 16 stacked models
    assert len(steps) == len(cost.CALIBRATION_STACKS) and 0 < steps[0] < steps[1] < steps[2] and per_example > 0
    stamp = cache.stat().st_mtime_ns
    cost.plan_cost(units, "local", workers=2)
    assert cache.stat().st_mtime_ns == stamp  # read, not measured again
    assert cost.plan_cost(units, "tcp://127.0.0.1:8786").seconds is None  # a cluster elsewhere: no projection


def test_a_cifar_plan_is_priced_without_its_data_on_its_own_input_shape(tmp_path, cache):
    """No CIFAR-10 here: the plan's sizes come from data.DATASET_FACTS and the calibration times
    the model on 3x32x32 inputs with crops and flips, under its own key."""
    common = dict(rounds=1, rate=None, iterations=40, seeds=[0], eval_every=20, val_size=None, quiet=True)
    common["recipe"] = {"batch_size": 25, "reset": "init"}  # small batches: a quick calibration
    units = study.plan_q1(
        "cifar10", ["cifar_resnet_8_4"], 1000, None, None, ["reinit"], **common,
        exp_root=str(tmp_path / "e"), model_root=str(tmp_path / "m"),
    )  # fmt: skip
    priced = cost.plan_cost(units, "none")
    assert priced.trainings == 3 and priced.steps == 3 * 40 and priced.seconds > 0
    assert priced.examples == 3 * 1000  # 40 steps of 25 images: one epoch of the 1,000
    (key,) = json.loads(cache.read_text())[cost.machine()]
    assert key.startswith("cifar_resnet_8_4 3x32x32 batch 25 sgd fp32 crop_flip, ")


def test_a_clusters_eta_prices_each_task_from_the_cached_calibration_only(tmp_path, cache):
    units = q4_units(tmp_path)
    groups = cost.seed_groups(units, 1)
    assert cost.task_seconds(groups, 1) is None  # nothing cached: no ETA, and nothing measured for it
    assert not cache.exists()
    whole = cost.plan_cost(units, "local", workers=1).seconds  # measures; one worker runs the tasks in turn
    seconds = cost.task_seconds(groups, 1)
    assert len(seconds) == len(groups) and all(s > 0 for s in seconds)
    assert sum(seconds) == pytest.approx(whole)


def test_forward_flops_of_known_models():
    lenet300 = build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0)
    assert cost.forward_flops(lenet300, (1, 28, 28)) == 2 * (784 * 300 + 300 * 100 + 100 * 10)
    lenet5 = build_model(ExperimentConfig(model="lenet5"), (1, 28, 28), 10, seed=0)
    convolutions = 2 * (1 * 25 * 6 * 28 * 28 + 6 * 25 * 16 * 10 * 10)
    assert cost.forward_flops(lenet5, (1, 28, 28)) == convolutions + 2 * (400 * 120 + 120 * 84 + 84 * 10)


def test_examples_and_evaluations_of_a_run():
    assert cost.examples_in(40, 130, 60) == 13 * 130 + 60  # epochs of 60, 60, 10
    assert cost.examples_in(3, 130, 60) == 130
    assert cost.evaluations(150, 10) == 16  # one before training
    assert cost.evaluations(155, 10) == 17  # and one at the end
    assert cost.evaluations(5, 0) == 1


def test_the_preview_counts_a_rewound_search_from_its_rewind_step(tiny, cache):
    config = dataclasses.replace(
        tiny, iterations=20, eval_every=6, reset="rewind", rewind_iteration=7, controls=("reinit",), seeds=(0,)
    )
    units = [study.Unit(config)]
    before = cost.plan_cost(units, "none")
    rows = study.run(units)
    assert sorted(rows["train_iterations"]) == [13, 13, 13, 13, 20]  # pruned rounds: steps 8-20
    assert before.steps == rows["train_iterations"].sum() and before.examples == rows["train_examples"].sum()


def test_seeds_are_grouped_to_fill_stacks_and_then_the_workers(tmp_path):
    units = study.plan_q1(
        "digits5k",
        ["fc:1x10", "lenet5"],
        400,
        None,
        None,
        ["reinit", "random_mask"],
        rounds=2,
        rate=None,
        iterations=10,
        seeds=list(range(7)),
        eval_every=10,
        val_size=None,
        exp_root=str(tmp_path / "exp_result"),
        model_root=str(tmp_path / "model_save"),
        quiet=True,
    )
    fc, lenet5 = units

    def groups(units, threads, seeds_per_task=None):
        return [(unit.config.model, seeds) for unit, seeds in cost.seed_groups(units, threads, seeds_per_task)]

    # a pruned round stacks 3 kinds per seed: up to 5 seeds fill 15 of a 16-model stack; LeNet-5 does not stack
    assert groups(units, 2) == [("fc", (0, 1, 2)), ("fc", (3, 4, 5, 6))] + [("lenet5", (s,)) for s in range(7)]
    assert groups([fc], 2) == [("fc", (0,)), ("fc", (1, 2)), ("fc", (3, 4)), ("fc", (5, 6))]  # 2 tasks a thread
    assert groups([fc], 4) == [("fc", (s,)) for s in range(7)]  # as many as the seeds allow
    assert groups([fc, lenet5], 2, seeds_per_task=1) == [(u.config.model, (s,)) for u in units for s in range(7)]


def test_a_stack_step_lies_on_the_lines_between_the_timed_stacks():
    steps = [1.0, 2.5, 8.5]  # timed at 1, 4 and 16 models: 0.5 a model up to 4, then 0.5 again
    assert cost.CALIBRATION_STACKS == (1, 4, 16)
    assert [cost.stack_step(k, steps) for k in (1, 2, 4, 10, 16)] == [1.0, 1.5, 2.5, 5.5, 8.5]
    kinked = [1.0, 2.5, 14.5]  # 1 a model from 4 to 16: memory-bound
    assert [cost.stack_step(k, kinked) for k in (3, 5, 15)] == [2.0, 3.5, 13.5]
