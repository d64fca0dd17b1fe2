import argparse
import dataclasses
import subprocess
import sys

import pandas as pd
import pytest

from lthutils.__main__ import FLAG_FIELDS, _config_arguments, config_from_args, main
from lthutils.config import ConfigError, ExperimentConfig


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lthutils", *args], cwd=cwd, capture_output=True, text=True)


def test_imp_then_evaluate_then_summarize(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = [
        "--num-train",
        "300",
        "--val-size",
        "200",
        "--epochs",
        "1",
        "--rounds",
        "1",
        "--eval-every",
        "5",
        "--quiet",
    ]
    assert main(["imp", "--name", "cli", "--rate", "0.5", "--seeds", "2", *flags]) == 0
    out = capsys.readouterr().out
    folder = next((tmp_path / "exp_result" / "cli").iterdir())
    frame = pd.read_csv(folder / "results.csv")
    assert sorted(zip(frame["seed"], frame["round"], frame["kind"])) == [
        (0, 0, "ticket"),
        (0, 1, "reinit"),
        (0, 1, "ticket"),
        (1, 0, "ticket"),
        (1, 1, "reinit"),
        (1, 1, "ticket"),
    ]
    assert f"results: exp_result/cli/{folder.name}/results.csv" in out
    assert "| ticket acc at early stop (%)" in out and "| 50.1 " in out  # 50% of fc weights, 25% of output
    tickets = tmp_path / "model_save" / folder.name
    assert main(["evaluate", str(tickets), "--name", "to-digits", "--dataset", "digits5k", *flags]) == 0
    assert "reinit final acc (%)" in capsys.readouterr().out
    moved = pd.read_csv(next((tmp_path / "exp_result" / "to-digits").iterdir()) / "results.csv")
    assert set(moved["dataset"]) == {"digits5k"} and set(moved["source_run_id"]) == {folder.name}
    assert sorted(zip(moved["seed"], moved["round"], moved["kind"])) == [
        (0, 0, "ticket"),
        (0, 1, "reinit"),
        (0, 1, "ticket"),
    ]
    assert (moved["test_acc"] > 0.2).all()  # 10 classes: chance is 0.1
    assert main(["summarize", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("|")[1].strip() for line in lines if line.startswith("|")][2:] == ["0", "1"]
    assert lines[-1].startswith("Tickets at round 1 (50.1% of weights remaining) minus, paired by seed ")
    assert " reinit " in lines[-1] and "(2 seeds)" in lines[-1]


def test_config_file_with_flags_on_top(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.yaml").write_text(
        "name: fromfile\nnum_train: 200\nval_size: 100\nepochs: 1\nrounds: 1\ncontrols: []\nquiet: true\n"
    )
    assert main(["imp", "--config", "q.yaml", "--model", "fc", "--n-neurons", "20", "--n-layers", "1"]) == 0
    frame = pd.read_csv(next((tmp_path / "exp_result" / "fromfile").iterdir()) / "results.csv")
    assert list(frame["kind"]) == ["ticket", "ticket"] and set(frame["model"]) == {"fc1x20"}


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["imp", "--rate", "1.5"],
            "error: prune_rate=1.5 is not allowed: expected a fraction strictly between 0 and 1",
        ),
        (["imp", "--dataset", "imagenet"], "error: dataset='imagenet' is not allowed: expected one of mnist"),
        (["imp", "--seeds", "0"], "error: seeds=0 is not allowed: expected a positive number of seeds"),
        (["imp", "--controls", "reinit,bogus"], "error: controls=('reinit', 'bogus') is not allowed"),
        (["imp", "--num-train", "100000"], "error: num_train=100000 is not allowed: expected at most 55000"),
        (
            ["imp", "--config", "missing.yaml"],
            "error: --config='missing.yaml' is not allowed: expected a readable YAML file",
        ),
        (["imp", "--config", "list.yaml"], "error: --config='list.yaml' is not allowed: expected a YAML mapping"),
        (["imp", "--config", "broken.yaml"], "error: --config='broken.yaml' is not allowed: expected valid YAML"),
        (["imp", "--config", "unknown.yaml"], "error: rate=0.2 is not allowed: expected a known key"),
        (["evaluate", "nowhere"], "error: tickets='nowhere' is not allowed: expected a ticket folder"),
        (["summarize", "nowhere"], "error: results='nowhere' is not allowed: expected an existing results.csv"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    (tmp_path / "unknown.yaml").write_text("rate: 0.2\n")
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "exp_result").exists() and not (tmp_path / "model_save").exists()


def test_every_config_field_has_its_flag():
    """One name per knob: each config field but these four (set in a config file) is a flag."""
    parser = argparse.ArgumentParser()
    _config_arguments(parser)
    flags = {FLAG_FIELDS.get(action.dest, action.dest) for action in parser._actions}
    fields = {field.name for field in dataclasses.fields(ExperimentConfig)}
    assert fields - flags == {"prune_biases", "data_root", "exp_root", "model_root"}


def test_cifar_recipe_flags_reach_the_config():
    parser = argparse.ArgumentParser()
    _config_arguments(parser)
    flags = "--model cifar_resnet_20 --dataset cifar10 --lr-schedule step --lr-milestones 0.5,0.75 --lr-gamma 0.2"
    args = parser.parse_args([*flags.split(), "--weight-decay", "1e-4", "--no-prune-output", "--augment", "none"])
    config = config_from_args(args).resolved()
    assert (config.lr_milestones, config.lr_gamma, config.weight_decay) == ((0.5, 0.75), 0.2, 1e-4)
    assert (config.prune_output, config.prune_scope, config.augment) == (False, "global", "none")
    with pytest.raises(ConfigError, match="lr_milestones='half' is not allowed: expected comma-separated fractions"):
        config_from_args(parser.parse_args(["--lr-milestones", "half"]))


def test_your_own_model_and_prune_function_from_the_command_line(tmp_path, monkeypatch):
    """IMP of a user's model (tests/test_models.py:small_cnn) under a user's prune function
    (tests/test_pruning.py:prune_first_layer_only), both named by module path."""
    monkeypatch.chdir(tmp_path)
    flags = "--num-train 300 --val-size 200 --epochs 5 --lr 0.01 --rounds 2 --eval-every 5 --controls reinit --quiet"
    custom = ["--model", "test_models:small_cnn", "--prune-scope", "test_pruning:prune_first_layer_only"]
    assert main(["imp", "--name", "own", *custom, *flags.split()]) == 0
    folder = next((tmp_path / "exp_result" / "own").iterdir())
    assert folder.name.startswith("small_cnn-fashionmnist-adam-")
    frame = pd.read_csv(folder / "results.csv")
    tickets = frame[frame["kind"] == "ticket"]
    first_layer = 8 * 1 * 3 * 3  # only 0.weight is pruned: 20% of its alive weights per round
    alive = [first_layer, first_layer - round(0.2 * first_layer)]
    alive.append(alive[-1] - round(0.2 * alive[-1]))
    total = first_layer + 8 * 16 * 10
    assert tickets["weights_remaining"].tolist() == pytest.approx([(a + 1280) / total for a in alive])
    assert (frame["test_acc"] > 0.3).all()  # 300 real images: chance is 0.1
