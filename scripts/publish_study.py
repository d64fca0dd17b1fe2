"""Publish what a study found, for the repository: rows, verdicts, conclusions and figures.

    python scripts/publish_study.py params/full/ docs/results/full/

For each parameter file of the folder (or the files) whose notebook has finished, that is whose
plan is recorded under its exp_root, writes into the output folder's subfolder named after the
file (docs/results/full/q2/ for q2.yaml) the report of that plan alone
(lthutils.report.build_report over a staging folder that links only its runs; a question's
verdicts are corrected over its own settings, so they equal the whole study's report):
all_results.csv, verdicts.csv, levels.csv, conclusions.md and the figures as PNG, and run.md:
the commit and platform each run's provenance names (its last writer's), the command, each
notebook's papermill duration and the rows' training and evaluation time. Never tickets or
weights. Files not finished are named and their folders left as they are, so questions finished
in different sessions (or on machines since replaced) are published one by one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
import pandas as pd

from lthutils import runner
from lthutils.report import build_report
from lthutils.results import read_results

REPORT_FILES = ("all_results.csv", "verdicts.csv", "levels.csv", "conclusions.md")


def recorded_plan(parameter_file: runner.ParameterFile) -> tuple[Path, Path, list[Path]] | None:
    """The file's recorded plan: (its plan file, exp_root, its run folders), None if not finished."""
    units, declared = runner.planned(parameter_file)
    exp_root = Path(units[0].config.exp_root).absolute()
    results = sorted(str(unit.results_path.absolute().relative_to(exp_root)) for unit in units)
    for path in sorted((exp_root / units[0].config.name / "plans").glob("*.json")):
        plan = json.loads(path.read_text())
        if plan.get("results") == results and plan.get("analysis") == declared.to_dict():
            return path, exp_root, [exp_root / relative for relative in results]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="+", help="parameter files or folders, e.g. params/full/")
    parser.add_argument("out", type=Path, help="the folder to write, e.g. docs/results/full/")
    args = parser.parse_args()
    published = 0
    for parameter_file in runner.load_all(args.paths):
        found = recorded_plan(parameter_file)
        if found is None:
            print(f"{parameter_file.path}: not finished (no recorded plan): not published")
            continue
        publish(parameter_file, *found, args.out / Path(parameter_file.path).stem)
        published += 1
    if not published:
        sys.exit("nothing to publish: no file's notebook has finished")


def publish(parameter_file: runner.ParameterFile, plan: Path, exp_root: Path, results: list[Path], out: Path) -> None:
    """One finished file's report alone, built over a staging folder that links only its runs."""
    units, _ = runner.planned(parameter_file)
    with tempfile.TemporaryDirectory() as staging:
        exp = Path(staging, "exp")
        (exp / plan.parent.relative_to(exp_root)).mkdir(parents=True)
        shutil.copy(plan, exp / plan.relative_to(exp_root))
        for path in results:
            link = exp / path.parent.relative_to(exp_root)
            if not link.exists():
                link.symlink_to(path.parent)
        # the plans name tickets as ../model_save/...
        Path(staging, "model_save").symlink_to(Path(units[0].config.model_root).absolute())
        build_report(exp)
        if out.exists():
            shutil.rmtree(out)  # a file's folder is its report alone: nothing left from an older one
        (out / "figures").mkdir(parents=True)
        for name in REPORT_FILES:
            if (exp / "report" / name).is_file():
                shutil.copy(exp / "report" / name, out / name)
        for png in sorted((exp / "figures").glob("*.png")):
            shutil.copy(png, out / "figures" / png.name)
    command = f"Published by `python scripts/publish_study.py {parameter_file.path} {out.parent}`."
    (out / "run.md").write_text("\n".join([command, "", *describe(parameter_file, exp_root, results)]) + "\n")
    print(f"published: {out}")


def describe(parameter_file: runner.ParameterFile, exp_root: Path, results: list[Path]) -> list[str]:
    """run.md's lines for one file: where and how long it ran (its notebook executed by
    run-all's default --output-dir, exp_root/notebooks/)."""
    rows = pd.concat([read_results(path) for path in results], ignore_index=True)
    made_by = [json.loads((path.parent / "provenance.json").read_text()) for path in results]
    commits = sorted({entry.get("git_commit", "?") for entry in made_by})
    machines = sorted(
        {f"{e.get('platform')}, {e.get('device')}, {e.get('torch_threads')} torch threads" for e in made_by}
    )
    notebook = exp_root / "notebooks" / f"{parameter_file.output_name()}.ipynb"
    duration = "not recorded"
    if notebook.is_file():
        seconds = nbformat.read(notebook, as_version=4).metadata.get("papermill", {}).get("duration")
        duration = "not recorded" if seconds is None else f"{seconds / 3600:.2f} h"
    worker_hours = (rows["train_seconds"].sum() + rows["eval_seconds"].sum()) / 3600
    return [
        f"- {parameter_file.path}: {len(rows)} trainings in {len(results)} runs; the last notebook run "
        f"(`python -m lthutils run-all {parameter_file.path}`, resumes) took {duration}; training and evaluation "
        f"summed over the rows: {worker_hours:.2f} worker hours; commits {', '.join(commits)}; "
        f"machines {', '.join(machines)}",
    ]


if __name__ == "__main__":
    main()
