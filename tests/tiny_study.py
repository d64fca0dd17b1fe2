"""The four notebooks on tiny parameter files, executed by `run-all`: what tests/conftest.py's
`study_run` fixture runs once for tests/test_notebooks.py and tests/test_browser.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

TINY = {"rounds": 2, "iterations": 10, "seeds": [0, 1], "eval_every": 5, "val_size": 500, "primary": {"level": "last"}}
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
COMMON_FIGURES = ["accuracy", "accuracy_end", "early_stop", "primary", "differences"]
FIGURES = {
    "q1": COMMON_FIGURES,
    "q2": [*COMMON_FIGURES, "overlap", "margin_heatmap"],
    "q3": [*COMMON_FIGURES, "overlap", "margin_heatmap"],
    "q4": [*COMMON_FIGURES, "overlap", "cost"],
}


def run_tiny_study(root: Path) -> tuple[Path, list[Path], str]:
    """Write the parameter files under root/params and run them; (root, executed notebooks, stderr)."""
    params = root / "params"
    params.mkdir()
    for key, values in PARAMETERS.items():
        values = {**values, "exp_root": str(root / "exp_result"), "model_root": str(root / "model_save")}
        (params / f"{key}.yaml").write_text(yaml.safe_dump({"question": key, "parameters": values}))
    command = [sys.executable, "-m", "lthutils", "run-all", str(params)]
    result = subprocess.run(
        [*command, "--output-dir", str(root / "exp_result" / "notebooks")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    executed = [Path(line.removeprefix("executed: ")) for line in result.stdout.splitlines()]
    return root, executed, result.stderr
