"""Run folders, atomic writes, resume and provenance.

A run lives in `exp_result/<name>/<run_id>/` (results.csv, config.json, provenance.json) and its
tickets in `model_save/<run_id>/seed<S>/round<R>.pt`. Every file is written to a temporary file
in the same folder and renamed into place, so a kill never leaves half a file behind.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lthutils.config import ConfigError

RESULT_COLUMNS = [
    "run_id",
    "seed",
    "round",
    "weights_remaining",
    "kind",
    "dataset",
    "optimizer",
    "model",
    "num_train",
    "test_acc",
    "val_loss",
    "early_stop_iter",
    "test_acc_at_early_stop",
    "nonzero_weights",
    "train_iterations",
    "train_examples",
    "train_seconds",
    "eval_seconds",
]


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, fsync and a rename (mode as umask allows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(f.name, 0o666 & ~_umask())
        except BaseException:
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(*folders: Path) -> None:
    """Delete temporary files a killed write_atomic left behind (they were never renamed into place)."""
    for folder in folders:
        for stale in Path(folder).rglob(".*.tmp"):
            stale.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def save_tensors(path: Path, value: dict[str, Any]) -> None:
    """torch.save a dict of tensors and plain values atomically."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    write_atomic(path, buffer.getvalue())


def load_tensors(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True: a file that would run code is refused."""
    if not path.is_file():
        raise ConfigError("ticket", str(path), "an existing ticket file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(
            "ticket", str(path), "a ticket file torch can read with weights_only=True (this one is corrupt or unsafe)"
        ) from error


class RunStore:
    """The files of one run: results rows, config, provenance and tickets."""

    def __init__(self, exp_root: str | Path, name: str, run_id: str, model_root: str | Path):
        self.run_id = run_id
        self.dir = Path(exp_root) / name / run_id
        self.ticket_dir = Path(model_root) / run_id
        self.results_path = self.dir / "results.csv"

    def results(self) -> pd.DataFrame:
        if not self.results_path.exists():
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return pd.read_csv(self.results_path)

    def done(self) -> set[tuple[int, int, str]]:
        """(seed, round, kind) of every finished row."""
        frame = self.results()
        return {(int(s), int(r), str(k)) for s, r, k in zip(frame["seed"], frame["round"], frame["kind"])}

    def append(self, row: dict[str, Any]) -> None:
        frame = pd.concat([self.results(), pd.DataFrame([{"run_id": self.run_id, **row}])], ignore_index=True)
        write_atomic(self.results_path, frame.to_csv(index=False).encode())

    def ticket_path(self, seed: int, round_index: int) -> Path:
        return self.ticket_dir / f"seed{seed}" / f"round{round_index}.pt"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance(dataset_source: str, device: str) -> dict[str, Any]:
    """What produced a run: package versions, data source, code version and device."""
    packages = {}
    for name in ("torch", "torchvision", "numpy", "pandas"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "dataset_source": dataset_source,
        "git_commit": git_commit(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }


def summarize(path: Path) -> str:
    """A markdown table of a results.csv: per round, mean ± std over seeds of each kind's
    test accuracy (percent) at the early-stopping iteration and at the end of training."""
    if not Path(path).is_file():
        raise ConfigError("results", str(path), "an existing results.csv")
    frame = pd.read_csv(path)
    kinds = [k for k in ("ticket", "reinit", "random_mask") if k in set(frame["kind"])]
    table = frame.groupby("round").agg(weights_remaining=("weights_remaining", "first"))
    table["weights remaining (%)"] = (100 * table.pop("weights_remaining")).map("{:.1f}".format)
    for metric, label in (("test_acc_at_early_stop", "acc at early stop (%)"), ("test_acc", "final acc (%)")):
        for kind in kinds:
            stats = frame[frame["kind"] == kind].groupby("round")[metric].agg(["mean", "std", "count"])
            text = (
                (100 * stats["mean"]).map("{:.2f}".format) + " ± " + (100 * stats["std"].fillna(0)).map("{:.2f}".format)
            )
            table[f"{kind} {label}"] = text
    table["seeds"] = frame.groupby("round")["seed"].nunique()
    markdown = table.fillna("").reset_index().to_markdown(index=False, disable_numparse=True)
    return markdown + _margins(frame)


def _margins(frame: pd.DataFrame) -> str:
    """A sentence on the sparsest round: the ticket's mean margin over each control and round 0."""
    means = 100 * frame.groupby(["round", "kind"])[["test_acc_at_early_stop", "test_acc"]].mean()
    last = int(frame["round"].max())
    if last == 0 or (last, "ticket") not in means.index:
        return ""
    ticket = means.loc[(last, "ticket")]
    others = [(kind, means.loc[(last, kind)]) for kind in ("reinit", "random_mask") if (last, kind) in means.index]
    if (0, "ticket") in means.index:
        others.append(("the dense network (round 0)", means.loc[(0, "ticket")]))
    remaining = 100 * frame.loc[frame["round"] == last, "weights_remaining"].iloc[0]
    early, end = ticket.iloc[0], ticket.iloc[1]
    parts = [
        f"{name}: {early - other.iloc[0]:+.2f} points at early stop, {end - other.iloc[1]:+.2f} at the end"
        for name, other in others
    ]
    return f"\n\nTickets at round {last} ({remaining:.1f}% of weights remaining) against " + "; ".join(parts) + "."
