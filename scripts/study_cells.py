"""Run chosen code cells of the original study's notebook, unchanged, against lthutils.

The study's notebook (ESE539_Project_Q1_Q4.ipynb, in the public repository
ChenDaiwei-99/lottery-ticket-hypothesis-different-scale) defines expIntegration and
evalIntegration in its own cells; a user moving to lthutils drops those cells and runs the rest
with `from lthutils import expIntegration, evalIntegration`. This runs the given cells that way,
in order and in one namespace, from the current folder (where exp_result/ is), figures drawn
off-screen, and prints each cell's output. Pass your own copy of the notebook.

    python scripts/study_cells.py ESE539_Project_Q1_Q4.ipynb --cells 0 67 70 71 72 73 75 76 77 78
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import matplotlib
import nbformat

matplotlib.use("Agg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--cells", type=int, nargs="+", required=True, help="code cell indices, in running order")
    args = parser.parse_args()
    cells = nbformat.read(args.notebook, as_version=4).cells
    namespace: dict = {}
    exec("from lthutils import expIntegration, evalIntegration", namespace)
    for index in args.cells:
        if cells[index].cell_type != "code":
            raise SystemExit(f"cell {index} is {cells[index].cell_type}, not code")
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(compile(cells[index].source, f"<cell {index}>", "exec"), namespace)
        print(f"--- cell {index}: ran\n{output.getvalue()}", end="")


if __name__ == "__main__":
    main()
