"""Carry an unfinished study's rows to another machine through the repository, never its tickets.

    python scripts/carry_rows.py save params/full/q1.yaml docs/results/full/carried/
    python scripts/carry_rows.py restore params/full/q1.yaml docs/results/full/carried/

A study longer than a session (params/full/q1.yaml) is run across sessions whose machines do not
keep exp_result/. `save` copies each of the file's run folders (results.csv, config.json,
provenance.json) that has more rows than the folder holds into it, laid out as under exp_root,
and appends to its saves.csv each run's rows, the commit its provenance names, this machine's
CPU and the date. `restore` copies them back into exp_root where this machine has fewer rows. A
search whose every row exists and none of whose tickets are there is finished
(lottery.carried), so the next `run-all` of the file skips it; a search cut short starts
again at theta_0 and retrains its ticket trunk only (the rows it has are kept, its controls not
retrained): its rounds after the cut come from the trunk retrained on the machine that finishes
it. Transfers need their source's tickets: files that have transfers are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lthutils import runner
from lthutils.config import ConfigError
from lthutils.cost import cpu_name
from lthutils.results import read_results, write_atomic

RUN_FILES = ("results.csv", "config.json", "provenance.json")


def run_folders(parameter_file: runner.ParameterFile) -> tuple[Path, list[Path]]:
    """exp_root and the file's run folders relative to it; ConfigError for a file with transfers."""
    units, _ = runner.planned(parameter_file)
    if any(unit.source is not None for unit in units):
        raise ConfigError("parameter_file", str(parameter_file.path), "a file of searches only (such as q1.yaml)")
    exp_root = Path(units[0].config.exp_root).absolute()
    return exp_root, [unit.results_path.absolute().parent.relative_to(exp_root) for unit in units]


def rows_in(folder: Path) -> int:
    path = folder / "results.csv"
    return len(read_results(path)) if path.is_file() else 0


def copy_run(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (source / name).is_file():
            write_atomic(target / name, (source / name).read_bytes())


def save(parameter_file: runner.ParameterFile, out: Path) -> None:
    exp_root, folders = run_folders(parameter_file)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    saved = []
    for folder in folders:
        rows = rows_in(exp_root / folder)
        if rows > rows_in(out / folder):
            copy_run(exp_root / folder, out / folder)
            commit = json.loads((exp_root / folder / "provenance.json").read_text())["git_commit"]
            saved.append({"run": str(folder), "rows": rows, "commit": commit, "cpu": cpu_name(), "saved": stamp})
            print(f"{folder}: {rows} rows saved")
    if saved:
        log = out / "saves.csv"
        earlier = pd.read_csv(log) if log.is_file() else pd.DataFrame()
        write_atomic(log, pd.concat([earlier, pd.DataFrame(saved)]).to_csv(index=False).encode())


def restore(parameter_file: runner.ParameterFile, out: Path) -> None:
    exp_root, folders = run_folders(parameter_file)
    for folder in folders:
        rows, here = rows_in(out / folder), rows_in(exp_root / folder)
        if rows > here:
            copy_run(out / folder, exp_root / folder)
            print(f"{folder}: {rows} rows restored ({here} here before)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("paths", type=Path, nargs="+", help="parameter files of searches, e.g. params/full/q1.yaml")
    parser.add_argument("folder", type=Path, help="where the rows are kept, e.g. docs/results/full/carried/")
    args = parser.parse_args()
    try:
        for parameter_file in runner.load_all(args.paths, load_data=False):
            {"save": save, "restore": restore}[args.action](parameter_file, args.folder)
    except ConfigError as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
