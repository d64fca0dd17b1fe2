"""Shared fixtures: real datasets loaded once, small configs that train in well under a second."""

import pytest

from lthutils.config import ExperimentConfig
from lthutils.data import load_dataset, make_splits


@pytest.fixture(scope="session")
def fashion():
    return load_dataset("fashionmnist")


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits5k")


@pytest.fixture(scope="session")
def fashion_splits(fashion):
    """500 training and 500 validation images of real Fashion-MNIST."""
    return make_splits(fashion, num_train=500, val_size=500, seed=0)


@pytest.fixture
def tiny(tmp_path):
    """A 2-round IMP config on 300 Fashion-MNIST images, writing under tmp_path."""
    return ExperimentConfig(
        name="tiny",
        dataset="fashionmnist",
        num_train=300,
        val_size=200,
        rounds=2,
        epochs=1,
        eval_every=2,
        controls=("reinit", "random_mask"),
        exp_root=str(tmp_path / "exp_result"),
        model_root=str(tmp_path / "model_save"),
        quiet=True,
    )


@pytest.fixture(scope="session")
def study_run(tmp_path_factory):
    """The four notebooks executed by `run-all` on tiny parameter files (tests/tiny_study.py)."""
    from tiny_study import run_tiny_study

    return run_tiny_study(tmp_path_factory.mktemp("study"))
