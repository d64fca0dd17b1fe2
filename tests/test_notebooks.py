"""Every notebook runs under papermill with tiny parameters; the report runs on their output."""

import ast
import json
import os
import re
import subprocess
import sys

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import papermill
import pytest
import yaml
from ipykernel.ipkernel import IPythonKernel
from PIL import Image
from tiny_study import FIGURES, PARAMETERS, ROWS

from lthutils import analysis, plots, study
from lthutils.report import _markdown_to_html, build_report
from lthutils.runner import KERNEL, NOTEBOOKS_DIR, notebook_defaults


@pytest.mark.slow
def test_every_notebook_writes_its_rows_and_figures(study_run):
    root, executed, log = study_run
    assert [path.name.split("-")[0] for path in executed] == ["q1", "q2", "q3", "q4"]
    assert "Executing" in log and "Kernel is running over TCP" not in log  # papermill's bar, not the kernel's noise
    # not a terminal: the tasks' display is one line per event, and the workers draw no bars of their own
    assert re.search(r"\] worker \d+: q1: search \S+ seeds [\d,]+: round 2, \d+ trainings\n", log)
    assert re.search(r"\] tasks on tcp://\S+, results written in place .*: (\d+) of \1 tasks in ", log)
    assert "round 2 (x" not in log and "reinit: 100%" not in log
    plans = study.plans(root / "exp_result")
    assert sorted(plans) == ["q1", "q2", "q3", "q4"] and all(len(frames) == 1 for frames in plans.values())
    for key in PARAMETERS:
        frame, declared = plans[key][0]
        assert declared.primary == {"level": "last"} and len(frame) == ROWS[key], key
        trained = frame[frame["train_iterations"] == 10]  # Q4's equal-epochs searches take 1 step
        assert len(trained) >= len(frame) - 12 and (trained["test_acc"] > 0.15).all(), key  # chance: 0.10
        for name in FIGURES[key]:
            png = root / "exp_result" / "figures" / f"{key}-{analysis.plan_id(frame, declared)}_{name}.png"
            with Image.open(png) as image:
                image.verify()
                assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 250, name
            assert (png.with_suffix(".pdf")).read_bytes().startswith(b"%PDF"), name
    q2, q4 = plans["q2"][0][0], plans["q4"][0][0]
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
        assert markdown[0].startswith("**Decision rule**") and markdown[1] == markdown[0], path.name  # before, after
        assert "settings (primary endpoint; Holm across" in markdown[2], path.name
        assert markdown[-1].startswith("**Caveats**") and "Seeds: 0" in markdown[-1], path.name
    q1 = nbformat.read(executed[0], as_version=4)
    injected = [c for c in q1.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "lenet5" in injected[0].source


@pytest.mark.slow
def test_every_figure_reads_at_report_size_and_in_a_paper_column(study_run):
    """No text overlaps or leaves a figure, none is under 6 points at 3.5 inches, no legend
    covers a panel; every PNG is one width, so the report shows them at one scale."""
    root, _, _ = study_run
    for key, frames in study.plans(root / "exp_result").items():
        question, (frame, declared) = study.QUESTIONS[key], frames[0]
        drawn = question.draw(frame, question.evidence(frame, declared))
        assert sorted(drawn) == sorted(FIGURES[key])
        for name, figure in drawn.items():
            assert plots.layout_problems(figure) == [], (key, name)
            plt.close(figure)
    widths = {Image.open(png).width for png in (root / "exp_result" / "figures").glob("*.png")}
    assert widths == {round(plots.FIGURE_WIDTH * plots.DPI)}


@pytest.mark.slow
def test_progress_shows_as_output_not_as_errors_in_executed_notebooks(study_run):
    _, executed, _ = study_run
    for path in executed:
        outputs = [o for cell in nbformat.read(path, as_version=4).cells for o in cell.get("outputs", [])]
        streams = [o for o in outputs if o["output_type"] == "stream"]
        assert [o["name"] for o in streams if o["name"] == "stderr"] == [], path.name  # JupyterLab's pink box
        shown = "".join(o["text"] for o in streams)
        assert re.search(r"tasks on tcp://.*: (\d+) of \1 tasks in ", shown) and "\r" not in shown, path.name


@pytest.mark.slow
def test_an_executed_notebook_reruns_where_it_lies_or_says_what_to_change(study_run, tmp_path):
    """The Dask cluster it ran on is gone: rerunning says so in one line. With scheduler None it
    reruns from its own folder, its relative folders starting at the project's notebooks/ (as
    in the committed notebook), so it reads its results back and trains nothing."""
    root, executed, _ = study_run
    notebook = nbformat.read(executed[0], as_version=4)
    injected = next(c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", []))
    values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(injected.source).body}
    assert values["scheduler"].startswith("tcp://127.0.0.1:")
    rerun = dict(kernel_name=KERNEL, cwd=str(executed[0].parent), progress_bar=False)
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(str(executed[0]), str(tmp_path / "dead.ipynb"), **rerun)
    message = f"scheduler='{values['scheduler']}' is not allowed: expected the address of a running Dask scheduler"
    assert error.value.evalue.startswith(message) and "or None to run here" in error.value.evalue
    failed = nbformat.read(tmp_path / "dead.ipynb", as_version=4)
    errors = [o for cell in failed.cells for o in cell.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1  # one line, no traceback
    before = {path: path.read_bytes() for path in root.rglob("results.csv")}
    relative = {name: os.path.relpath(values[name], NOTEBOOKS_DIR) for name in ("exp_root", "model_root")}
    parameters = {**values, **relative, "scheduler": None}
    papermill.execute_notebook(str(executed[0]), str(tmp_path / "again.ipynb"), parameters=parameters, **rerun)
    again = nbformat.read(tmp_path / "again.ipynb", as_version=4)
    assert sum("image/png" in o.get("data", {}) for cell in again.cells for o in cell.get("outputs", [])) >= 4
    assert {path: path.read_bytes() for path in root.rglob("results.csv")} == before  # nothing trained, nowhere


@pytest.mark.slow
def test_report_collects_every_result(study_run):
    root, _, _ = study_run
    index = build_report(root / "exp_result")
    page = index.read_text()
    for key, question in study.QUESTIONS.items():
        assert question.title in page
        evidence = question.evidence(*study.plans(root / "exp_result")[key][0])
        assert _markdown_to_html(evidence.conclusion.splitlines()[0]) in page and "<h3>Caveats</h3>" in page
    assert page.count("<img ") == sum(len(f) for f in FIGURES.values())
    assert (index.parent / "conclusions.md").read_text().count("### Q") == 4
    verdicts = pd.read_csv(index.parent / "verdicts.csv")
    assert sorted(verdicts["question"].unique()) == ["q1", "q2", "q3", "q4"]
    words = {"better", "equivalent", "worse", "inconclusive", "unconverged"}
    assert set(verdicts["verdict"].str.split(",| ").str[0]) <= words
    levels = pd.read_csv(index.parent / "levels.csv")
    assert sorted(levels["question"].unique()) == ["q1", "q2", "q3", "q4"] and len(levels) > len(verdicts)
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
        # what JupyterLab fills in from the kernel on connect: anything else opens the file as modified
        assert notebook["metadata"]["language_info"] == IPythonKernel.language_info, path.name
        assert path.read_text() == json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), path.name
        tagged = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1 and tagged[0] is code[0], path.name
        assert notebook["cells"][0]["cell_type"] == "markdown"


def test_notebook_parameters_are_the_plans_parameters():
    """Each notebook hands every parameter of its parameters cell (but the scheduler) to its
    question's plan under its own name, and the plan accepts them all."""
    for question in study.QUESTIONS.values():
        path = NOTEBOOKS_DIR / question.notebook
        defaults = notebook_defaults(path)
        assert defaults.pop("scheduler") is None  # where the units run: study.run's, not the plan's
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        calls = [
            node
            for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "question.units"
        ]
        assert len(calls) == 1, path.name
        passed = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
        assert not calls[0].args and passed == {name: name for name in defaults}, path.name
        units, declared = question.units(**{**defaults, "exp_root": "/nowhere", "model_root": "/nowhere"})
        assert units and all(unit.config.exp_root == "/nowhere" for unit in units)
        assert (declared.primary, declared.delta) == (defaults["primary"], defaults["delta"]), path.name
        assert declared.design.to_parameter() == defaults["seeds"], path.name
        assert all(list(u.config.seeds) == list(declared.design.seeds) for u in units), path.name


@pytest.mark.slow
def test_carried_rows_restore_a_searchs_rows_on_another_machine_and_transfers_are_refused(study_run, tmp_path):
    """scripts/carry_rows.py: `save` copies a file's run folders without tickets and logs the save;
    `restore` puts them under another exp_root (another machine's) where it has fewer rows, and
    the notebook run there trains nothing and concludes as the first did."""
    root, _, _ = study_run
    carried, script = tmp_path / "carried", [sys.executable, "scripts/carry_rows.py"]
    values = yaml.safe_load((root / "params" / "q1.yaml").read_text())
    subprocess.run(
        [*script, "save", str(root / "params" / "q1.yaml"), str(carried)], check=True, cwd=NOTEBOOKS_DIR.parent
    )
    runs = sorted(path.parent.relative_to(carried) for path in carried.rglob("results.csv"))
    assert [run.parts[0] for run in runs] == ["q1", "q1"] and not list(carried.rglob("*.pt"))
    saves = pd.read_csv(carried / "saves.csv")
    assert sorted(saves["run"]) == [str(run) for run in runs] and saves["rows"].sum() == ROWS["q1"]
    values["parameters"].update(exp_root=str(tmp_path / "exp_result"), model_root=str(tmp_path / "model_save"))
    (tmp_path / "q1.yaml").write_text(yaml.safe_dump(values))
    restore = [*script, "restore", str(tmp_path / "q1.yaml"), str(carried)]
    printed = subprocess.run(restore, check=True, capture_output=True, text=True, cwd=NOTEBOOKS_DIR.parent).stdout
    assert printed.count("rows restored (0 here before)") == 2
    for run in runs:
        assert (tmp_path / "exp_result" / run / "results.csv").read_bytes() == (
            root / "exp_result" / run / "results.csv"
        ).read_bytes()
    again = subprocess.run(restore, check=True, capture_output=True, text=True, cwd=NOTEBOOKS_DIR.parent).stdout
    assert again == ""  # nothing where this machine has as many rows
    run = [sys.executable, "-m", "lthutils", "run", str(tmp_path / "q1.yaml"), "--output-dir", str(tmp_path)]
    subprocess.run(run, check=True, capture_output=True, text=True, cwd=NOTEBOOKS_DIR.parent)
    assert not list((tmp_path / "model_save").rglob("*.pt"))  # nothing trained
    for run in runs:
        assert (tmp_path / "exp_result" / run / "provenance.json").read_bytes() == (
            root / "exp_result" / run / "provenance.json"
        ).read_bytes()
    ((mine, declared),), ((theirs, _),) = (study.plans(folder / "exp_result")["q1"] for folder in (tmp_path, root))
    pd.testing.assert_frame_equal(
        *(study.QUESTIONS["q1"].evidence(frame, declared).primary for frame in (mine, theirs))
    )
    refused = subprocess.run(
        [*script, "save", str(root / "params" / "q2.yaml"), str(carried)],
        capture_output=True,
        text=True,
        cwd=NOTEBOOKS_DIR.parent,
    )
    assert refused.returncode == 1 and refused.stderr.strip().endswith(
        "expected a file of searches only (such as q1.yaml)"
    )


@pytest.mark.slow
def test_a_finished_study_publishes_each_question_alone_with_the_whole_studys_verdicts(study_run, tmp_path):
    """scripts/publish_study.py: each finished file's report alone in its own folder (what
    docs/results/full/ holds), with the verdicts of the report over the whole study; a file whose
    notebook has not run is named, and its folder left as it was."""
    root, _, _ = study_run
    params = tmp_path / "params"
    params.mkdir()
    for key in PARAMETERS:
        (params / f"{key}.yaml").write_text((root / "params" / f"{key}.yaml").read_text())
    unfinished = yaml.safe_load((root / "params" / "q1.yaml").read_text())
    unfinished["parameters"]["seeds"] = [0, 1, 2]
    (params / "q5.yaml").write_text(yaml.safe_dump(unfinished))
    out = tmp_path / "published"
    (out / "q5").mkdir(parents=True)
    (out / "q5" / "verdicts.csv").write_text("published by an earlier session\n")
    command = [sys.executable, "scripts/publish_study.py", str(params), str(out)]
    printed = subprocess.run(command, check=True, capture_output=True, text=True, cwd=NOTEBOOKS_DIR.parent).stdout
    assert f"{params / 'q5.yaml'}: not finished" in printed
    assert (out / "q5" / "verdicts.csv").read_text() == "published by an earlier session\n"
    for key in PARAMETERS:
        rows = pd.read_csv(out / key / "all_results.csv")
        assert rows.groupby("study").size().to_dict() == {key: ROWS[key]}
        assert sorted(path.name.split("_", 1)[1] for path in (out / key / "figures").glob("*.png")) == sorted(
            f"{name}.png" for name in FIGURES[key]
        )
        run = (out / key / "run.md").read_text()
        trainings = rf"{key}\.yaml: {ROWS[key]} trainings in \d+ runs; the last notebook run .* took \d+\.\d\d h"
        assert re.search(trainings, run), run
    build_report(root / "exp_result")  # the whole folder holds these plans only: the same verdicts
    published = pd.concat([pd.read_csv(out / key / "verdicts.csv") for key in PARAMETERS], ignore_index=True)
    whole = pd.read_csv(root / "exp_result" / "report" / "verdicts.csv")
    order = ["question", "comparison", "setting"]
    pd.testing.assert_frame_equal(
        published.sort_values(order).reset_index(drop=True), whole.sort_values(order).reset_index(drop=True)
    )
    assert not list(out.rglob("*.pt"))
