"""Run folders, atomic writes, resume and provenance.

A run lives in `exp_result/<name>/<run_id>/` (results.csv, config.json, provenance.json) and its
tickets in `model_save/<run_id>/seed<S>/round<R>.pt`. Every file is written to a temporary file
in the same folder and renamed into place, so a kill never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import logging
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy
import pandas as pd
import torch

from lthutils.config import ConfigError, ExperimentConfig

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
    "converged",
    "steps_per_round",
    "test_acc_at_early_stop",
    "nonzero_weights",
    "train_iterations",
    "train_examples",
    "train_dense_flops",
    "train_seconds",
    "eval_seconds",
    "diverged",
    "checksum",
]
# read as text whatever they look like: a hex checksum such as "1431049365839e58" parses as a number
TEXT_COLUMNS = ["run_id", "kind", "dataset", "optimizer", "model", "checksum", "nonzero_by_layer", "curve"]
LOG = logging.getLogger("lthutils")


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
    """Delete temporary files a killed write_atomic left in these folders (not below them).

    Call it only while holding the locks of every writer of those folders (RunStore.locked and
    RunStore.claim), or it may delete another process's file in the middle of its write.
    """
    for folder in folders:
        for stale in Path(folder).glob(".*.tmp"):
            stale.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def _digest(value: Any) -> str:
    """sha256 of a dict of tensors and plain values: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, dict):
            for key in sorted(item):
                digest.update(repr(key).encode())
                feed(item[key])
        elif isinstance(item, torch.Tensor):
            digest.update(f"{item.dtype}{tuple(item.shape)}".encode())
            digest.update(item.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(item).encode())

    feed(value)
    return digest.hexdigest()


def save_tensors(path: Path, value: dict[str, Any]) -> None:
    """torch.save a dict of tensors and plain values atomically, with its checksum inside."""
    buffer = io.BytesIO()
    torch.save({**value, "sha256": _digest(value)}, buffer)
    write_atomic(path, buffer.getvalue())


def load_tensors(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True (a file that would run code is refused), checksum verified."""
    if not path.is_file():
        raise ConfigError("ticket", str(path), "an existing ticket file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(
            "ticket", str(path), "a ticket file torch can read with weights_only=True (this one is corrupt or unsafe)"
        ) from error
    if not isinstance(content, dict) or content.pop("sha256", None) != _digest(content):
        raise ConfigError("ticket", str(path), "a ticket file that matches its checksum (this one is damaged)")
    return content


def _row_checksum(row: dict[str, Any]) -> str:
    """A digest of a row's values as read back from CSV: numbers as floats, missing values left out."""

    def canonical(value: Any) -> str:
        if isinstance(value, (bool, numpy.bool_)):
            return str(bool(value))
        if isinstance(value, str) or value is None:
            return str(value)
        number = float(value)
        return "" if math.isnan(number) else repr(number)

    values = {key: canonical(value) for key, value in row.items() if key != "checksum"}
    text = json.dumps({key: value for key, value in values.items() if value not in ("", "None")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_results(path: Path, content: bytes | None = None) -> pd.DataFrame:
    """The rows of a results.csv that pass their checksum; each other row is logged, naming the
    file, as to be recomputed (a run leaves it out of what is done). `content`: the file's bytes,
    read from elsewhere (a cluster task's copy of `path`)."""

    def read(**options) -> pd.DataFrame:
        source = path if content is None else io.BytesIO(content)
        return pd.read_csv(source, dtype=dict.fromkeys(TEXT_COLUMNS, str), **options)

    try:
        frame = read()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        LOG.warning("%s is damaged (%s): all its rows will be recomputed", path, str(error).splitlines()[0])
        return pd.DataFrame(columns=RESULT_COLUMNS)
    if frame.empty or "checksum" not in frame:
        if not frame.empty:
            LOG.warning(
                "%s has no checksums (damaged, or written before lthutils had them): all its rows will be recomputed",
                path,
            )
        return pd.DataFrame(columns=RESULT_COLUMNS)
    good = [_row_checksum(row) == row["checksum"] for row in frame.to_dict("records")]
    for row in frame[[not ok for ok in good]].to_dict("records"):
        LOG.warning(
            "%s: the row of seed %s round %s kind %s fails its checksum (damaged): it will be recomputed",
            path,
            row.get("seed"),
            row.get("round"),
            row.get("kind"),
        )
    if all(good):
        return frame
    # read again without the bad rows, so that their debris does not change a column's type
    return read(skiprows=[1 + index for index, ok in enumerate(good) if not ok])


@contextlib.contextmanager
def locked_file(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with its folder), waiting for other processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


class RunStore:
    """The files of one run: results rows, config, provenance and tickets."""

    @classmethod
    def of(cls, config: ExperimentConfig, source_id: str | None = None) -> RunStore:
        """The store of `config`'s run (of its training the tickets of run `source_id`)."""
        return cls(config.exp_root, config.name, config.run_id(source_id), config.model_root)

    def __init__(self, exp_root: str | Path, name: str, run_id: str, model_root: str | Path):
        self.run_id = run_id
        self.dir = Path(exp_root) / name / run_id
        self.ticket_dir = Path(model_root) / run_id
        self.results_path = self.dir / "results.csv"

    def results(self) -> pd.DataFrame:
        """The run's rows that pass their checksums (read_results)."""
        if not self.results_path.exists():
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return read_results(self.results_path)

    def done(self) -> set[tuple[int, int, str]]:
        """(seed, round, kind) of every finished row."""
        frame = self.results()
        return {(int(s), int(r), str(k)) for s, r, k in zip(frame["seed"], frame["round"], frame["kind"])}

    def append(self, *rows: dict[str, Any]) -> None:
        """Add rows; processes working on other seeds of the run may append at the same time."""
        if not rows:
            return
        with self.locked():
            added = [{"run_id": self.run_id, **row} for row in rows]
            added = pd.DataFrame([{**row, "checksum": _row_checksum(row)} for row in added])
            frame = pd.concat([self.results(), added], ignore_index=True)
            write_atomic(self.results_path, frame.to_csv(index=False).encode())

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the run's lock, briefly, for the files every seed shares (results.csv, config.json...)."""
        return locked_file(self.dir / ".lock")

    @contextlib.contextmanager
    def claim(self, seeds: tuple[int, ...]) -> Iterator[None]:
        """Hold these seeds of the run for the whole of the work on them; raise ConfigError at
        once if another process holds one (two runs of one seed would write the same files)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as held:
            for seed in seeds:
                handle = held.enter_context(open(self.dir / f".seed{seed}.lock", "a+"))
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    raise ConfigError(
                        "run",
                        str(self.dir),
                        f"one process per seed: seed {seed} is being trained by process {handle.read().strip()}; "
                        "wait for it or stop it",
                    ) from None
                handle.truncate(0)
                handle.write(f"{os.getpid()} on {platform.node()}")
                handle.flush()
            yield

    def ticket_path(self, seed: int, round_index: int) -> Path:
        return self.ticket_dir / f"seed{seed}" / f"round{round_index}.pt"


@functools.cache
def git_commit() -> str:
    """The commit checked out when this process first asked, which lthutils.results' import
    does: the code a long-lived process (a Dask worker, a notebook's kernel) runs, even if the
    checkout moves on while it works."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


git_commit()  # at import (see its docstring)


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


def divergence_note(frame: pd.DataFrame) -> str:
    """A sentence naming the training runs that diverged (validation loss NaN or infinite), or ''."""
    diverged = frame[frame["diverged"].eq(True)] if "diverged" in frame else frame.iloc[:0]
    if diverged.empty:
        return ""
    runs = ", ".join(f"{r.run_id} seed {r.seed} round {r['round']} {r.kind}" for _, r in diverged.iterrows())
    return (
        f"\n\n{len(diverged)} of {len(frame)} training runs diverged (validation loss not finite); "
        f"figures leave them out of their lines: {runs}."
    )
