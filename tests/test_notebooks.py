"""Every notebook runs under papermill with tiny parameters; the report runs on their output."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from PIL import Image

from lthutils import analysis, study
from lthutils.report import _markdown_to_html, build_report
from lthutils.runner import NOTEBOOKS_DIR, notebook_defaults

TINY = {"rounds": 2, "iterations": 10, "seeds": [0, 1], "eval_every": 5, "val_size": 500}
PARAMETERS = {
    "q1": {"models": ["fc:1x20", "lenet5"], "num_train": 300, **TINY, "seeds": [0]},
    "q2": {"datasets": ["fashionmnist", "digits5k"], "num_train": 300, "heatmap_rounds": [1, 2], **TINY},
    "q3": {
        "optimizers": ["sgd", "adam"],
        "lrs": {"sgd": 0.01, "adam": 0.001},
        "num_train": 300,
        "heatmap_rounds": [2],
        **TINY,
    },
    "q4": {"search_sizes": [100, 300], "num_train": None, "dataset": "digits5k", **TINY},
}
ROWS = {"q1": 2 * 7, "q2": 2 * 2 * 10, "q3": 2 * 2 * 10, "q4": 2 * (9 + 4 * 3 + 4 * 5)}
COMMON_FIGURES = ["accuracy", "early_stop", "differences"]
FIGURES = {
    "q1": COMMON_FIGURES,
    "q2": [*COMMON_FIGURES, "overlap", "margin_heatmap"],
    "q3": [*COMMON_FIGURES, "overlap", "margin_heatmap"],
    "q4": [*COMMON_FIGURES, "overlap", "cost"],
}


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    """The four notebooks executed by `run-all` on tiny parameter files."""
    root = tmp_path_factory.mktemp("study")
    params = root / "params"
    params.mkdir()
    for key, values in PARAMETERS.items():
        values = {**values, "exp_root": str(root / "exp_result"), "model_root": str(root / "model_save")}
        (params / f"{key}.yaml").write_text(yaml.safe_dump({"question": key, "parameters": values}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lthutils",
            "run-all",
            str(params),
            "--output-dir",
            str(root / "exp_result" / "notebooks"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    executed = [Path(line.removeprefix("executed: ")) for line in result.stdout.splitlines()]
    return root, executed, result.stderr


@pytest.mark.slow
def test_every_notebook_writes_its_rows_and_figures(study_run):
    root, executed, log = study_run
    assert [path.name.split("-")[0] for path in executed] == ["q1", "q2", "q3", "q4"]
    assert "seed 0 round 2 reinit: 100%" in log and "Executing" in log  # tqdm bars of notebooks and papermill
    plans = study.plans(root / "exp_result")
    assert sorted(plans) == ["q1", "q2", "q3", "q4"] and all(len(frames) == 1 for frames in plans.values())
    for key in PARAMETERS:
        frame = plans[key][0]
        assert len(frame) == ROWS[key], key
        trained = frame[frame["train_iterations"] == 10]  # Q4's equal-epochs searches take 1 step
        assert len(trained) >= len(frame) - 12 and (trained["test_acc"] > 0.15).all(), key  # chance: 0.10
        for name in FIGURES[key]:
            png = root / "exp_result" / "figures" / f"{key}-{analysis.plan_id(frame)}_{name}.png"
            with Image.open(png) as image:
                image.verify()
                assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 250, name
            assert (png.with_suffix(".pdf")).read_bytes().startswith(b"%PDF"), name
    q2, q4 = plans["q2"][0], plans["q4"][0]
    crossed = q2[q2["transfer"]]
    assert len(crossed) == 20 and (crossed["source_dataset"] != crossed["dataset"]).all()
    assert set(q4["source_num_train"]) == {100, 300, 3500} and set(q4[q4["transfer"]]["num_train"]) == {3500}


@pytest.mark.slow
def test_executed_notebooks_show_figures_and_a_computed_conclusion(study_run):
    _, executed, _ = study_run
    for path in executed:
        notebook = nbformat.read(path, as_version=4)
        outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2, path.name
        markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
        assert markdown[0].startswith("**Decision rule**") and "cells, with" in markdown[1], path.name
        assert markdown[-1].startswith("**Caveats**") and "Seeds: 0" in markdown[-1], path.name
    q1 = nbformat.read(executed[0], as_version=4)
    injected = [c for c in q1.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "lenet5" in injected[0].source


@pytest.mark.slow
def test_report_collects_every_result(study_run):
    root, _, _ = study_run
    index = build_report(root / "exp_result")
    page = index.read_text()
    for key, question in study.QUESTIONS.items():
        assert question.title in page
        evidence = question.evidence(study.plans(root / "exp_result")[key][0])
        assert _markdown_to_html(evidence.conclusion.splitlines()[0]) in page and "<h3>Caveats</h3>" in page
    assert page.count("<img ") == sum(len(f) for f in FIGURES.values())
    assert (index.parent / "conclusions.md").read_text().count("### Q") == 4
    verdicts = pd.read_csv(index.parent / "verdicts.csv")
    assert sorted(verdicts["question"].unique()) == ["q1", "q2", "q3", "q4"]
    assert set(verdicts["verdict"]) <= {"better", "equivalent", "worse", "inconclusive", "unconverged"}
    all_results = pd.read_csv(index.parent / "all_results.csv")
    assert len(all_results) == sum(ROWS.values())
    assert sorted(all_results["study"].unique()) == ["q1", "q2", "q3", "q4"]
    assert all_results["source_dataset"].notna().all()
    result = subprocess.run(
        [sys.executable, "-m", "lthutils", "report", "--exp-root", str(root / "exp_result")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip() == f"report: {index}"


def test_committed_notebooks_are_clean_with_one_parameters_cell():
    notebooks = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    assert [p.name for p in notebooks] == sorted(q.notebook for q in study.QUESTIONS.values())
    for path in notebooks:
        notebook = json.loads(path.read_text())
        assert notebook["metadata"]["kernelspec"]["name"] == "python3"
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), path.name
        tagged = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1 and tagged[0] is code[0], path.name
        assert notebook["cells"][0]["cell_type"] == "markdown"


def test_notebook_parameters_are_the_plans_parameters():
    for question in study.QUESTIONS.values():
        defaults = notebook_defaults(NOTEBOOKS_DIR / question.notebook)
        assert defaults.pop("scheduler") is None  # where the units run: study.run's, not the plan's
        units = question.plan(**{**defaults, "exp_root": "/nowhere", "model_root": "/nowhere"})
        assert units and all(unit.config.exp_root == "/nowhere" for unit in units)
