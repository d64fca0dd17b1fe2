"""Run the study's notebooks headless with papermill, from YAML parameter files.

A parameter file names its question and overrides some of the notebook's parameters:

    question: q1
    parameters:
      rounds: 10
      seeds: [0, 1, 2]

Everything is checked before a kernel starts: the file, each key against the notebook's
`parameters` cell (papermill.inspect_notebook), each value's type against the notebook's
default, and the plan it makes against lthutils' config and the data. The executed notebook is
written to `<output_dir>/<file stem>-<hash>.ipynb`; a failing one is kept as
`<file stem>-<hash>.failed.ipynb` and reported with its cell and the original exception.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill

from lthutils import monitor, stats, study
from lthutils.config import ConfigError, read_yaml
from lthutils.rule import Analysis

NOTEBOOKS_DIR = study.NOTEBOOKS_DIR
ANALYSIS_PARAMETERS = ("seeds", "primary", "delta")  # rule.Analysis.declare checks them, naming what is allowed
KERNEL = "python3"  # the project's own interpreter: see the Makefile's kernel registration
# The kernel's own log at ERROR: ipykernel 7 warns on every start that its loopback TCP is unencrypted.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


class NotebookError(RuntimeError):
    """A notebook raised in one of its cells; the message names the notebook, cell and exception."""


@dataclass(frozen=True)
class ParameterFile:
    """A checked parameter file: its question, notebook and parameter overrides."""

    path: Path
    question: study.Question
    parameters: dict[str, Any]
    defaults: dict[str, Any]  # the notebook's parameters cell

    @property
    def notebook(self) -> Path:
        return NOTEBOOKS_DIR / self.question.notebook

    def output_name(self) -> str:
        identity = json.dumps({"question": self.question.key, "parameters": self.parameters}, sort_keys=True)
        return f"{self.path.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def notebook_defaults(notebook: Path) -> dict[str, Any]:
    """The notebook's `parameters` cell as values (each default is a Python literal)."""
    return {name: ast.literal_eval(spec["default"]) for name, spec in papermill.inspect_notebook(str(notebook)).items()}


def _type_ok(value: Any, default: Any) -> bool:
    if default is None:
        return True  # lthutils' own checks decide what a None default may become
    if value is None:  # numbers may be null ("the model's default", "the whole training set")
        return isinstance(default, (int, float)) and not isinstance(default, bool)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(default, list) and default:  # each item like the default's first
        return isinstance(value, list) and all(item is not None and _type_ok(item, default[0]) for item in value)
    return isinstance(value, type(default))


def _type_name(value: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", list: "a list"}
    if isinstance(value, list) and value:
        items = {bool: "true or false", int: "integers", float: "finite numbers", str: "strings"}
        return f"a list of {items.get(type(value[0]), type(value[0]).__name__)}"
    return names.get(type(value), type(value).__name__)


def load_parameter_file(
    path: str | Path, overrides: dict[str, Any] | None = None, load_data: bool = True
) -> ParameterFile:
    """Read and check a parameter file completely, including its plan's data (with
    load_data=False: against the data's known sizes, for a plan of data that need not be here),
    with `overrides` (parameters a command line sets for every file) on top; raise ConfigError."""
    path = Path(path)
    where = str(path)
    content = read_yaml(path, "parameter file")
    if not isinstance(content, dict) or set(content) - {"question", "parameters"} or "question" not in content:
        raise ConfigError("parameter file", where, "a YAML mapping with 'question' and optional 'parameters'")
    if content["question"] not in study.QUESTIONS:
        raise ConfigError("question", content["question"], "one of " + ", ".join(study.QUESTIONS)).located(where)
    question = study.QUESTIONS[content["question"]]
    parameters = content.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ConfigError("parameters", parameters, "a mapping of notebook parameters").located(where)
    parameters = {**parameters, **(overrides or {})}
    defaults = notebook_defaults(NOTEBOOKS_DIR / question.notebook)
    for key, value in parameters.items():
        if key == "scheduler":  # where the work runs is the command's choice, not the study's
            raise ConfigError(key, value, "no scheduler in a parameter file: use run / run-all --scheduler").located(
                where
            )
        if key not in defaults:
            allowed = f"a parameter of {question.notebook}: " + ", ".join(defaults)
            raise ConfigError(key, value, allowed).located(where)
        if key in ANALYSIS_PARAMETERS:  # a list or a mapping: checked in full when the plan declares them
            continue
        if not _type_ok(value, defaults[key]):
            raise ConfigError(key, value, _type_name(defaults[key]) + f" like the default {defaults[key]!r}").located(
                where
            )
    checked = ParameterFile(path, question, parameters, defaults)
    try:
        study.check(*planned(checked), load_data=load_data)
    except ConfigError as error:
        raise error.located(where) from error
    return checked


def plan(parameter_file: ParameterFile) -> list[study.Unit]:
    """The units of work the notebook will run first with these parameters (a sequential seed
    design: its first look's seeds)."""
    return planned(parameter_file)[0]


def planned(parameter_file: ParameterFile) -> tuple[list[study.Unit], Analysis]:
    """The units of work and the analysis the notebook declares with these parameters."""
    values = {**parameter_file.defaults, **parameter_file.parameters}
    del values["scheduler"]  # where the units run, not what they are
    for name in ("exp_root", "model_root"):  # as the notebook resolves them
        values[name] = study.notebook_folder(name, values[name])
    return parameter_file.question.units(**values)


def run(
    parameter_file: ParameterFile,
    output_dir: str | Path,
    scheduler_address: str | None = None,
    verbose: bool = False,
) -> Path:
    """Execute the notebook with papermill; return the executed notebook's path. With a Dask
    `scheduler_address`, the notebook submits its units there (its `scheduler` parameter).
    The notebook's stream output (its progress bars, prints, warnings) is shown on stderr; with
    `verbose`, also each cell's start and end."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    name = parameter_file.output_name()
    running = output_dir / f".{name}.running.ipynb"
    done, failed = output_dir / f"{name}.ipynb", output_dir / f"{name}.failed.ipynb"
    where = f"{parameter_file.notebook.name} (from {parameter_file.path})"
    papermill_log = logging.getLogger("papermill")
    level = papermill_log.level
    papermill_log.setLevel(logging.INFO if verbose else logging.WARNING)
    live = os.environ.get(monitor.LIVE)
    os.environ[monitor.LIVE] = "1" if sys.stderr.isatty() and not verbose else "0"  # the kernel's display: in place?
    try:
        papermill.execute_notebook(
            str(parameter_file.notebook),
            str(running),
            parameters={**parameter_file.parameters, **({"scheduler": scheduler_address} if scheduler_address else {})},
            kernel_name=KERNEL,
            extra_arguments=KERNEL_ARGUMENTS,
            progress_bar=True,
            # the notebook's streams (the progress bars go to a kernel's stdout) reach stderr:
            # through papermill's log with `verbose` (stderr at WARNING, stdout at INFO), else raw
            log_output=verbose,
            **({} if verbose else {"stdout_file": sys.stderr, "stderr_file": sys.stderr}),
            coalesce_streams=True,  # the executed notebook keeps each bar's last state, not every redraw
            cwd=str(NOTEBOOKS_DIR),
        )
    except papermill.PapermillExecutionError as error:
        os.replace(running, failed)
        first_line = (error.source.strip().splitlines() or [""])[0]
        raise NotebookError(
            f"{where} failed in cell [{error.exec_count}] ({first_line}): {error.ename}: {error.evalue} "
            f"(executed notebook: {failed})"
        ) from error
    except Exception as error:  # the kernel died or would not start
        running.unlink(missing_ok=True)
        raise NotebookError(f"{where} could not run: {type(error).__name__}: {error}") from error
    except BaseException:
        running.unlink(missing_ok=True)
        raise
    finally:
        papermill_log.setLevel(level)
        if live is None:
            del os.environ[monitor.LIVE]
        else:
            os.environ[monitor.LIVE] = live
    os.replace(running, done)
    failed.unlink(missing_ok=True)
    return done


def run_all(
    paths: list[Path],
    output_dir: str | Path,
    scheduler: str = "local",
    workers: int | None = None,
    verbose: bool = False,
    overrides: dict[str, Any] | None = None,
) -> list[Path]:
    """Check every parameter file first (each path a file, or a folder of *.yaml / *.yml run in name
    order; `overrides` set parameters of every file), then run them all, their units on `scheduler`
    (cluster.session: 'local', 'none' or an address); raise NotebookError naming every failure
    after the others have run."""
    from lthutils import cluster  # dask: only when notebooks run

    cluster.check_scheduler(scheduler, workers)
    parameter_files = load_all(paths, overrides)
    print(preview(parameter_files, scheduler, workers), file=sys.stderr, flush=True)  # stdout: the executed paths
    executed, failures = [], []
    cluster.quiet_dask(verbose)
    with cluster.session(scheduler, workers) as address:
        for parameter_file in parameter_files:
            try:
                executed.append(run(parameter_file, output_dir, address, verbose))
            except NotebookError as error:
                failures.append(str(error))
    if failures:
        raise NotebookError(f"{len(failures)} of {len(parameter_files)} notebooks failed: " + " | ".join(failures))
    return executed


def load_all(paths: list[Path], overrides: dict[str, Any] | None = None, load_data: bool = True) -> list[ParameterFile]:
    """Every parameter file of `paths` (each a file, or a folder of *.yaml / *.yml in name order),
    with `overrides` on top, checked (see load_parameter_file)."""
    files = []
    for path in map(Path, paths):
        yaml_files = [path] if path.suffix in (".yaml", ".yml") else []
        found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else yaml_files
        if not found:
            raise ConfigError("folder", str(path), "a folder holding *.yaml or *.yml parameter files")
        files += found
    return [load_parameter_file(path, overrides, load_data) for path in files]


def preview(parameter_files: list[ParameterFile], scheduler: str = "local", workers: int | None = None) -> str:
    """What the files ask for and a projected time here (cost.plan_cost, plus each notebook's
    start-up and first figure), per file and in total."""
    from lthutils import cost  # calibrates on first use

    calibration = cost.Calibration()
    startup = calibration.timing("notebook start-up and first figure seconds", notebook_startup_seconds)
    total = cost.Cost()
    lines = []
    searched: dict[tuple[str, str], set] = {}  # a search two files share is trained by the first
    for parameter_file in parameter_files:
        units, declared = planned(parameter_file)
        asked = cost.plan_cost(units, scheduler, workers, calibration, searched=searched)
        if asked.seconds is not None:
            asked.seconds += startup
        total.add(asked)
        lines.append(f"{parameter_file.path}: {asked.describe()}")
        if declared.design.sequential:  # what every look would add if no setting were ever decided
            design = declared.design
            everything = [
                dataclasses.replace(u, config=dataclasses.replace(u.config, seeds=design.seeds)) for u in units
            ]
            most = cost.plan_cost(everything, scheduler, workers, calibration)
            lines.append(
                f"  (the first look's {design.looks[0]} seeds; {design.describe()}: if no setting were decided, "
                f"all {design.looks[-1]} would be {most.describe()})"
            )
    calibration.save()
    if len(parameter_files) > 1:
        lines.append(f"total: {total.describe()}")
    heading = "cost preview (training, evaluation, notebook start-up and a first figure; more figures add a little)"
    return heading + ":\n  " + "\n  ".join(lines)


def power_lines(parameter_file: ParameterFile, effect: float) -> list[str]:
    """Per comparison and setting of the file: the power its seeds give to call a true mean
    difference of `effect` points better (stats.power; a sequential design: stats.sequential_power)
    at the first Holm step, at the spread of the primary endpoint in the file's finished runs."""
    units, declared = planned(parameter_file)
    design = declared.design
    if not all(unit.results_path.exists() for unit in units):
        return [
            f"power for a {effect:+.1f}-point difference: the spread is known once every run of the file has results"
        ]
    frame = study.collect([unit.results_path for unit in units], seeds=design.seeds)
    primary = parameter_file.question.evidence(frame, declared).primary
    lines = [
        f"power to call a true difference of {effect:+.1f} points better with {design.describe()}, at the first Holm "
        "step, at the spread (sd of the primary endpoint) of the finished runs:"
    ]
    for name, table in primary[primary["verdict"] != "unconverged"].groupby("comparison", sort=False):
        level = declared.alpha / len(table)
        parts = []
        for row in table.itertuples():
            if not row.n >= 2 or not row.sd > 0:
                parts.append(f"{row.setting} (spread unknown: {row.n} seeds)")
                continue
            if design.sequential:
                chance = stats.sequential_power(effect, row.sd, design, level)
            else:
                chance = float(
                    stats.power(effect, row.sd, len(design.seeds), level, level, declared.delta)["direction"]
                )
            parts.append(f"{row.setting} {chance:.0%} (sd {row.sd:.2f} from {row.n} seeds)")
        lines.append(f"  {name}: " + "; ".join(parts))
    return lines


FIRST_FIGURE = """import pandas as pd, seaborn as sns
import lthutils.study
from lthutils import plots
grid = sns.relplot(pd.DataFrame({"x": [0, 1], "y": [0, 1]}), x="x", y="y", kind="line")
plots.save(grid.figure, FOLDER, "figure")"""


def notebook_startup_seconds() -> float:
    """Seconds to start a notebook kernel, import the study, save a first figure (PNG and PDF,
    as the notebooks do) and stop (papermill, as `run` does)."""
    with tempfile.TemporaryDirectory() as folder:
        code = FIRST_FIGURE.replace("FOLDER", repr(folder))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL, "language": "python"}
        path = Path(folder, "startup.ipynb")
        nbformat.write(notebook, path)
        started = time.perf_counter()
        papermill.execute_notebook(
            str(path),
            str(path),
            kernel_name=KERNEL,
            extra_arguments=KERNEL_ARGUMENTS,
            progress_bar=False,
            cwd=str(NOTEBOOKS_DIR),
        )
        return time.perf_counter() - started
