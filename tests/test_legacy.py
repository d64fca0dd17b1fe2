"""The original study's API on real MNIST: its call sequence, semantics and .pth files."""

import contextlib
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lthutils import evalIntegration, expIntegration
from lthutils.config import ConfigError
from lthutils.data import load_dataset
from lthutils.legacy import device_name, study_config, study_splits
from lthutils.lottery import Ticket

# n_classes, n_epochs_train, n_epochs_iterative_prune, num_train, random_seed, reinit, batch_size,
# model_type, dataset_type, n_layers, n_neurons, lr, pr, momentum, device: the study's order
ARGS = (10, 2, 3, 300, 42, False, 10, "fc", "mnist", 1, 20, 0.001, 20, 0.9, torch.device("cpu"))
WEIGHTS, BIASES = 784 * 20 + 20 * 10, 20 + 10


def with_reinit(reinit):
    return ARGS[:5] + (reinit,) + ARGS[6:]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Both trajectories of a 3-level fc1x20 study on 300 MNIST images, then whole-set retraining,
    called as the study's notebook calls them (positional arguments, a torch.device)."""
    folder = tmp_path_factory.mktemp("study")
    with contextlib.chdir(folder):
        tickets = {reinit: expIntegration(*with_reinit(reinit)) for reinit in (False, True)}
        evalIntegration(*ARGS, tickets[False])
        # the study's analysis cells read its files back like this
        levels = {
            reinit: torch.load(f"exp_result/fc_mnist_1_20_0.001_300_reinit-{reinit}.pth") for reinit in (False, True)
        }
        evaluated = torch.load("exp_result/fc_mnist_1_20_0.001_300_reinit-False_evaluate.pth")
    return folder, tickets, levels, evaluated


def test_levels_returned_tickets_and_result_file(study):
    folder, tickets, levels, _ = study
    assert [path.rsplit("/", 1)[1] for path in tickets[False]] == ["round1.pt", "round2.pt"]  # n - 1 pruned tickets
    assert list(levels[False]) == [0, 1, 2]  # n trained levels, the dense one first
    for level, entry in levels[False].items():
        assert set(entry) == {"store_path", "nonzero_percent", "valLoss_per_epoch", "accu_per_epoch"}
        assert (
            len(entry["valLoss_per_epoch"]) == len(entry["accu_per_epoch"]) == 2 + 1
        )  # before each epoch, after the last
        assert (
            entry["accu_per_epoch"][0] < 0.3 and entry["accu_per_epoch"][-1] > 0.6
        )  # real MNIST: chance, then learned
        alive = Ticket.load(folder / entry["store_path"]).mask.alive()
        assert entry["nonzero_percent"] == round(100 * (sum(alive.values()) + BIASES) / (WEIGHTS + BIASES), 1)
        for name, size in (("1.weight", 784 * 20), ("3.weight", 200)):  # every tensor, the output too, 20% per level
            assert abs(alive[name] - size * 0.8**level) <= 1
    assert levels[False][0]["nonzero_percent"] == 100.0
    run_id = tickets[False][0].split("/")[1]  # model_save/<run id>/seed42/round1.pt
    rows = pd.read_csv(folder / "exp_result" / "expIntegration" / run_id / "results.csv").sort_values("round")
    assert list(rows["round"]) == [0, 1, 2] and set(rows["kind"]) == {"ticket"}  # no controls: reinit is a trajectory
    for entry, test_acc in zip(levels[False].values(), rows["test_acc"]):
        assert entry["accu_per_epoch"][-1] == pytest.approx(test_acc, abs=1e-6)  # the file is made from the rows


def test_evaluation_retrains_every_ticket_on_the_whole_training_set(study):
    folder, tickets, _, evaluated = study
    assert list(evaluated) == [0, 1]
    assert [entry["ticket_path"] for entry in evaluated.values()] == tickets[False]
    rows = pd.read_csv(next((folder / "exp_result" / "evalIntegration").glob("*/results.csv")))
    assert sorted(rows["round"]) == [1, 2] and set(rows["kind"]) == {"ticket"}
    assert set(rows["num_train"]) == {60_000} and set(rows["source_num_train"]) == {300}
    assert set(rows["train_examples"]) == {2 * 60_000}  # two epochs of the whole set, whatever num_train was
    for entry in evaluated.values():
        assert len(entry["accu_per_epoch"]) == 3 and entry["accu_per_epoch"][-1] > 0.88


def test_reinit_is_its_own_trajectory(study):
    """reinit=False resets survivors to theta_0; reinit=True gives them fresh weights (biases too)
    each level, so its later masks come from other networks than the tickets'."""
    folder, tickets, _, _ = study
    load = {reinit: [Ticket.load(folder / path) for path in tickets[reinit]] for reinit in (False, True)}
    theta_0 = Ticket.load(folder / tickets[False][0].replace("round1", "round0")).weights
    assert all(torch.equal(load[False][0].weights[name], theta_0[name]) for name in theta_0)
    for first, second in zip(load[True], load[True][1:]):
        assert not torch.equal(first.weights["1.weight"], second.weights["1.weight"])
        assert not torch.equal(first.weights["1.bias"], second.weights["1.bias"])
    assert not torch.equal(load[True][0].weights["1.weight"], theta_0["1.weight"])
    # level 1 prunes the same trained dense network; level 2 prunes different networks
    assert load[True][0].mask["1.weight"].equal(load[False][0].mask["1.weight"])
    assert not load[True][1].mask["1.weight"].equal(load[False][1].mask["1.weight"])
    assert bool((load[True][1].mask["1.weight"] <= load[True][0].mask["1.weight"]).all())  # masks still nest


def test_the_study_recipe():
    config = study_config(ARGS, "x").resolved()
    assert (config.optimizer, config.lr, config.momentum, config.lr_schedule, config.loss_reduction) == (
        "sgd",
        0.001,
        0.9,
        "one_cycle",
        "sum",
    )
    assert (config.prune_rate, config.prune_rate_conv, config.prune_rate_output) == (0.2, 0.2, 0.2)
    assert (config.rounds, config.epochs, config.eval_every, config.bias_init) == (2, 2, math.ceil(300 / 10), "normal")
    assert (config.reset, config.controls, config.seeds) == ("init", (), (42,))
    assert study_config(with_reinit(True), "x").reset == "reinit"
    lenet = study_config((*ARGS[:7], "lenet", *ARGS[8:]), "x")
    assert lenet.model == "lenet5_tanh"


def test_study_splits_draw_with_numpy_and_watch_the_test_set():
    mnist = load_dataset("mnist")
    splits = study_splits(mnist, study_config(ARGS, "x"), 42)
    chosen = np.random.RandomState(42).choice(60000, 300, replace=False)
    assert torch.equal(splits.train_labels, mnist.train_labels[torch.from_numpy(chosen)])
    assert torch.equal(splits.val_labels, mnist.test_labels) and torch.equal(splits.test_images, splits.val_images)
    assert splits.train_images.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)  # a black pixel
    assert splits.train_images.max().item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)
    whole = study_splits(mnist, study_config((*ARGS[:3], 60000, *ARGS[4:]), "x"), 42)
    assert len(whole.train_labels) == 60000


def test_devices_as_the_study_passes_them():
    assert device_name(torch.device("cpu")) == "cpu"
    assert device_name(torch.device("cuda", 0)) == device_name("cuda:0") == device_name("cuda") == "cuda"
    with pytest.raises(ConfigError, match="^device='tpu:0' is not allowed"):
        device_name("tpu:0")


def test_lenet5_of_the_study_learns(tmp_path):
    with contextlib.chdir(tmp_path):
        args = (10, 2, 2, 1000, 0, False, 10, "lenet", "mnist", 2, 10, 0.002, 20, 0.9, "cpu")
        (ticket,) = expIntegration(*args)
        levels = torch.load("exp_result/lenet_mnist_2_10_0.002_1000_reinit-False.pth")
    mask = Ticket.load(tmp_path / ticket).mask
    assert sum(m.numel() for m in mask.values()) == 43_272
    assert sum(mask.alive().values()) == pytest.approx(0.8 * 43_272, abs=5)
    assert levels[1]["accu_per_epoch"][-1] > 0.7  # real MNIST, chance 0.1


@pytest.mark.parametrize(
    "position, value, message",
    [
        (2, 1, "n_epochs_iterative_prune=1 is not allowed: expected at least 2"),
        (3, 70000, "num_train=70000 is not allowed: expected a positive integer of at most 60000"),
        (7, "vgg", "model_type='vgg' is not allowed: expected 'fc' or 'lenet'"),
        (8, "cifar10", "dataset_type='cifar10' is not allowed"),
        (12, 0, "pr=0 is not allowed"),
    ],
)
def test_bad_study_arguments_are_refused_before_any_work(tmp_path, position, value, message):
    args = list(ARGS)
    args[position] = value
    with contextlib.chdir(tmp_path), pytest.raises(ConfigError, match="^" + message):
        expIntegration(*args)
    assert not list(tmp_path.iterdir())


def test_evaluation_needs_the_returned_list(tmp_path):
    with contextlib.chdir(tmp_path), pytest.raises(ConfigError, match="^tickets_path='model_save' is not allowed"):
        evalIntegration(*ARGS, "model_save")
