"""The bad-input catalogue (docs/RELIABILITY.md): each input is refused with one line naming the
field, the value and what is allowed, exit code 2 on the command line, no traceback, and nothing
written. The command line runs in-process here (`__main__.main`); tests/test_cli.py runs it as a
real process."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lthutils import __main__ as cli
from lthutils.config import ConfigError, ExperimentConfig
from lthutils.experiments import find_tickets
from lthutils.legacy import expIntegration
from lthutils.runner import load_all

TINY = ["--dataset", "digits5k", "--model", "fc", "--n-layers", "1", "--n-neurons", "10", "--num-train", "100"]
TINY += ["--val-size", "50", "--rounds", "1", "--iterations", "5", "--quiet"]
Q1 = {"question": "q1", "parameters": {"dataset": "digits5k", "models": ["fc:1x10"], "num_train": 100}}


class Evil:
    """Pickled, it would run a shell command on load."""

    def __reduce__(self):
        return (__import__("os").system, ("touch pwned",))


def files(root: Path) -> set:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    """A real ticket folder of an fc 1x10 net on digits5k, and a crafted one that runs code."""
    root = tmp_path_factory.mktemp("tickets")
    config = ExperimentConfig.from_dict(
        {"dataset": "digits5k", "model": "fc", "n_layers": 1, "n_neurons": 10, "num_train": 100, "val_size": 50,
         "rounds": 1, "iterations": 5, "quiet": True, "exp_root": str(root / "e"), "model_root": str(root / "m")}
    )  # fmt: skip
    folder = find_tickets(config)
    evil = root / "evil"
    shutil.copytree(folder, evil)
    torch.save({"mask": Evil(), "weights": {}}, evil / "seed0" / "round1.pt")
    return folder, evil


CASES = {  # name: (arguments, the start of the message after "error: ")
    "rate out of range": (["imp", *TINY, "--rate", "1.5"], "prune_rate=1.5 is not allowed: expected a fraction"),
    "unknown dataset": (["imp", "--dataset", "imagenet"], "dataset='imagenet' is not allowed: expected one of"),
    "unknown model": (["imp", "--model", "resnet"], "model='resnet' is not allowed: expected one of"),
    "unknown optimizer": (["imp", "--optimizer", "lion"], "optimizer='lion' is not allowed: expected one of"),
    "negative learning rate": (["imp", "--lr", "-1"], "lr=-1.0 is not allowed: expected a positive number"),
    "zero batch size": (["imp", "--batch-size", "0"], "batch_size=0 is not allowed"),
    "no seeds": (["imp", "--seeds", "0"], "seeds=0 is not allowed: expected a positive number of seeds"),
    "unknown control": (["imp", "--controls", "reinit,bogus"], "controls=('reinit', 'bogus') is not allowed"),
    "unknown tracker": (["imp", "--tracker", "neptune"], "tracker='neptune' is not allowed: expected one of none"),
    "criterion with your own prune function": (
        ["imp", "--mask-criterion", "movement", "--prune-scope", "test_pruning:prune_first_layer_only"],
        "mask_criterion='movement' is not allowed: expected large_final with your own prune_scope",
    ),
    "num_train too large": (
        ["imp", *TINY, "--num-train", "100000"],
        "num_train=100000 is not allowed: expected at most",
    ),
    "rewind past the run": (
        ["imp", *TINY, "--reset", "rewind", "--rewind-iteration", "50"],
        "rewind_iteration=50 is not allowed: expected a step from 1 to 4, within the round's 5 training steps",
    ),
    "unavailable device": (["imp", *TINY, "--device", "cuda"], "device='cuda' is not allowed: expected an available"),
    "missing config file": (["imp", "--config", "missing.yaml"], "--config='missing.yaml' is not allowed: expected a"),
    "empty config file": (["imp", "--config", "empty.yaml"], "--config='empty.yaml' is not allowed: expected a YAML"),
    "config not a mapping": (["imp", "--config", "list.yaml"], "--config='list.yaml' is not allowed: expected a YAML"),
    "config not YAML": (["imp", "--config", "broken.yaml"], "--config='broken.yaml' is not allowed: expected valid"),
    "config not text": (["imp", "--config", "binary.yaml"], "--config='binary.yaml' is not allowed: expected a UTF-8"),
    "config running code": (["imp", "--config", "evil.yaml"], "--config='evil.yaml' is not allowed: expected valid"),
    "unknown config key": (["imp", "--config", "unknown.yaml"], "rate=0.2 is not allowed: expected a known key"),
    "config field of wrong type": (["imp", "--config", "typed.yaml"], "rounds='five' is not allowed"),
    "output folder under a file": (
        ["imp", *TINY, "--config", "unwritable.yaml"],
        "exp_root='file.txt/results' is not allowed: expected a folder lthutils can create and write in",
    ),
    "not a ticket folder": (["evaluate", "nowhere"], "tickets='nowhere' is not allowed: expected a ticket folder"),
    "ticket of another model": (
        ["evaluate", "{tickets}", *TINY, "--n-neurons", "20"],
        "ticket='1.weight of shape (10, 784)' is not allowed: expected a mask that fits",
    ),
    "more rounds than the tickets": (["evaluate", "{tickets}", *TINY, "--rounds", "3"], "rounds=3 is not allowed"),
    "ticket that runs code": (["evaluate", "{evil}", *TINY], "ticket='{evil}/seed0/round1.pt' is not allowed"),
    "no results to summarize": (["summarize", "nowhere"], "results='nowhere' is not allowed: expected an existing"),
    "no results to report": (["report", "--exp-root", "nowhere"], "exp_root='nowhere' is not allowed: expected a"),
    "unknown dataset to fetch": (["data", "imagenet"], "dataset='imagenet' is not allowed: expected one of"),
    "unknown parameter": (["run", "q1bad.yaml"], "q1bad.yaml: epoch=3 is not allowed: expected a parameter of"),
    "parameter of wrong type": (["run", "q1type.yaml"], "q1type.yaml: rounds='5' is not allowed: expected an integer"),
    "unknown question": (["run", "q9.yaml"], "q9.yaml: question='q9' is not allowed: expected one of q1, q2, q3, q4"),
    "empty parameter file": (["run", "empty.yaml"], "parameter file='empty.yaml' is not allowed: expected a YAML"),
    "parameter file not text": (
        ["run", "binary.yaml"],
        "parameter file='binary.yaml' is not allowed: expected a UTF-8 text file",
    ),
    "parameter file not YAML": (["run", "broken.yaml"], "parameter file='broken.yaml' is not allowed: expected valid"),
    "plan num_train too large": (["run", "q1big.yaml"], "q1big.yaml: num_train=9000 is not allowed: expected at most"),
    "scheduler in a parameter file": (["run", "q1sched.yaml"], "q1sched.yaml: scheduler='local' is not allowed"),
    "unknown scheduler": (["run-all", "params", "--scheduler", "yarn"], "scheduler='yarn' is not allowed: expected"),
    "no workers": (["run-all", "params", "--workers", "0"], "workers=0 is not allowed: expected a positive number"),
    "folder without parameter files": (["run-all", "nowhere"], "folder='nowhere' is not allowed: expected a folder"),
    "parameter folder without YAML": (["run-all", "notes"], "folder='notes' is not allowed: expected a folder holding"),
    "parameter file in UTF-16": (["run", "utf16.yaml"], "parameter file='utf16.yaml' is not allowed: expected a UTF-8"),
    "huge parameter file": (
        ["run", "huge.yaml"],
        "parameter file='huge.yaml' is not allowed: expected a YAML file of at most 1 MB (it has 1.5 MB)",
    ),
    "huge config file": (["imp", "--config", "huge.yaml"], "--config='huge.yaml' is not allowed: expected a YAML file"),
    "parameter file linked to a device": (
        ["run", "zero.yaml"],
        "parameter file='zero.yaml' is not allowed: expected a regular YAML file (not a folder, device or pipe)",
    ),
    "parameter file a broken link": (
        ["run", "dangling.yaml"],
        "parameter file='dangling.yaml' is not allowed: expected a readable YAML file (No such file or directory)",
    ),
    "parameter file a link loop": (
        ["run", "loop.yaml"],
        "parameter file='loop.yaml' is not allowed: expected a readable YAML file (Too many levels of symbolic links)",
    ),
    "wrong type inside a list": (
        ["run", "q1list.yaml"],
        "q1list.yaml: models=['fc:1x10', 5] is not allowed: expected a list of strings like the default",
    ),
    "null inside a list": (
        ["run", "q1null.yaml"],
        "q1null.yaml: seeds=[0, None] is not allowed: expected a non-empty list of non-negative integers",
    ),
    "NaN in a parameter file": (["run", "q1nan.yaml"], "q1nan.yaml: rate=nan is not allowed: expected a finite number"),
    "infinity in a parameter file": (["run", "q1inf.yaml"], "q1inf.yaml: lr=inf is not allowed: expected a finite"),
    "NaN in a config file": (["imp", *TINY, "--config", "nan.yaml"], "momentum=nan is not allowed: expected a"),
    "infinite learning rate": (["imp", *TINY, "--lr", "inf"], "lr=inf is not allowed: expected a finite number"),
    "NaN rate": (["imp", *TINY, "--rate", "nan"], "prune_rate=nan is not allowed: expected a finite number"),
    "flag of the wrong type": (["imp", "--rounds", "five"], "argument --rounds: invalid int value: 'five'"),
    "name with a newline": (["imp", *TINY, "--name", "a\nb"], "name='a\\nb' is not allowed: expected printable"),
    "name with a NUL byte": (["imp", *TINY, "--config", "nul.yaml"], "name='a\\x00b' is not allowed: expected"),
    "name too long": (["imp", *TINY, "--name", "n" * 300], "name='nnnn"),
    "output folder with a NUL byte": (
        ["imp", *TINY, "--config", "nulroot.yaml"],
        "exp_root='out\\x00put' is not allowed: expected printable",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, tickets, name):
    args, message = CASES[name]
    values = {"tickets": str(tickets[0]), "evil": str(tickets[1])}
    monkeypatch.chdir(tmp_path)
    inputs = {
        "empty.yaml": "",
        "list.yaml": "- 1\n- 2\n",
        "broken.yaml": "a: [1, 2\n",
        "evil.yaml": "rounds: !!python/object/apply:os.system ['touch pwned']\n",
        "unknown.yaml": "rate: 0.2\n",
        "typed.yaml": "rounds: five\n",
        "unwritable.yaml": "exp_root: file.txt/results\n",
        "file.txt": "",
        "q1bad.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "epoch": 3}}),
        "q1type.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "rounds": "5"}}),
        "q9.yaml": yaml.safe_dump({"question": "q9"}),
        "q1big.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "num_train": 9000}}),
        "q1sched.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "scheduler": "local"}}),
        "q1list.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "models": ["fc:1x10", 5]}}),
        "q1null.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "seeds": [0, None]}}),
        "q1nan.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "rate": float("nan")}}),
        "q1inf.yaml": yaml.safe_dump({**Q1, "parameters": {**Q1["parameters"], "lr": float("inf")}}),
        "nan.yaml": "momentum: .nan\n",
        "nul.yaml": 'name: "a\\0b"\n',
        "nulroot.yaml": 'exp_root: "out\\0put"\n',
        "huge.yaml": "# padding\n" * 150_000,
    }
    for file_name, text in inputs.items():
        Path(file_name).write_text(text, encoding="utf-8")
    Path("utf16.yaml").write_text(yaml.safe_dump(Q1), encoding="utf-16")
    Path("binary.yaml").write_bytes(bytes(range(256)) * 4)  # random-looking bytes, not UTF-8
    Path("zero.yaml").symlink_to("/dev/zero")  # read to the end, it would never end
    Path("dangling.yaml").symlink_to("gone.yaml")
    Path("loop.yaml").symlink_to("loop.yaml")
    Path("params").mkdir()
    Path("params", "q1.yaml").write_text(yaml.safe_dump(Q1))
    Path("notes").mkdir()
    Path("notes", "q1.yaml.txt").write_text(yaml.safe_dump(Q1))
    before, tickets_before = files(tmp_path), files(tickets[0].parent)
    code = cli.main([arg.format(**values) for arg in args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: " + message.format(**values)), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert files(tmp_path) == before and files(tickets[0].parent) == tickets_before  # nothing written
    assert not Path("pwned").exists()


def test_unicode_names_and_paths_with_spaces_work(tmp_path, monkeypatch, capsys):
    root = tmp_path / "my results ✓"
    root.mkdir()
    config = root / "config é.yaml"
    config.write_text(f"exp_root: {root / 'exp é'}\nmodel_root: {root / 'models 名'}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["imp", *TINY, "--name", "résumé 名前 ✓", "--config", str(config)]) == 0
    (results,) = (root / "exp é" / "résumé 名前 ✓").glob("*/results.csv")
    assert len(pd.read_csv(results)) == 3 and str(results) in capsys.readouterr().out  # rounds 0, 1, reinit
    params = tmp_path / "my params é"
    params.mkdir()
    (params / "q1 ✓.yaml").write_text(yaml.safe_dump(Q1, allow_unicode=True), encoding="utf-8")
    assert [p.path.name for p in load_all([params])] == ["q1 ✓.yaml"]


def test_python_api_refuses_bad_input_with_the_same_messages(tmp_path):
    with pytest.raises(ConfigError, match=r"^model_type='resnet' is not allowed: expected 'fc' or 'lenet'$"):
        expIntegration(10, 1, 1, 100, 0, True, 60, "resnet", "mnist", 1, 10, 0.01, 20, 0.9, "cpu")
    with pytest.raises(ConfigError, match=r"^pr=150 is not allowed: expected a percentage"):
        expIntegration(10, 1, 1, 100, 0, True, 60, "fc", "fashionmnist", 1, 10, 0.01, 150, 0.9, "cpu")
    with pytest.raises(ConfigError, match=r"^num_train=-5 is not allowed"):
        find_tickets(ExperimentConfig(num_train=-5, exp_root=str(tmp_path / "e")))
    assert not (tmp_path / "e").exists()
