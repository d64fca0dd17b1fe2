import itertools
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

import lthutils
from lthutils.config import ConfigError
from lthutils.results import RunStore, _row_checksum, load_tensors, provenance, write_atomic, write_json


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_store_appends_rows_with_run_id_and_knows_what_is_done(tmp_path):
    store = RunStore(tmp_path / "exp", "name", "run-1", tmp_path / "models")
    assert store.done() == set()
    store.append({"seed": 0, "round": 0, "kind": "ticket", "test_acc": 0.5})
    store.append({"seed": 0, "round": 1, "kind": "reinit", "test_acc": 0.25})
    assert store.done() == {(0, 0, "ticket"), (0, 1, "reinit")}
    frame = pd.read_csv(tmp_path / "exp" / "name" / "run-1" / "results.csv")
    assert list(frame["run_id"]) == ["run-1", "run-1"] and list(frame["test_acc"]) == [0.5, 0.25]
    assert store.ticket_path(2, 3) == tmp_path / "models" / "run-1" / "seed2" / "round3.pt"


def test_provenance_names_versions_source_and_commit(tmp_path):
    record = provenance("debian:dataset-fashion-mnist", "cpu")
    assert record["packages"]["torch"] == torch.__version__.split("+")[0]  # the wheel's version, without +cu
    assert record["dataset_source"].startswith("debian:")
    assert record["device"] == "cpu"
    checkout = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(lthutils.__file__).parent, capture_output=True)
    assert record["git_commit"] == checkout.stdout.decode().strip() and len(record["git_commit"]) == 40
    write_json(tmp_path / "p.json", record)
    assert json.loads((tmp_path / "p.json").read_text()) == record


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"mask": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="corrupt or unsafe"):
        load_tensors(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_checksum_that_looks_like_a_number_is_read_as_text(tmp_path):
    """A hex checksum of digits and at most one "e" (about 1 in 780) in a file's first row was once
    read as a number: the row failed its checksum and the next append dropped it."""
    rows = ({"seed": 0, "round": 0, "kind": "ticket", "train_seconds": i / 1000} for i in itertools.count())
    numeric = next(row for row in rows if _numeric(_row_checksum({"run_id": "run-1", **row})))
    store = RunStore(tmp_path, "name", "run-1", tmp_path)
    store.append(numeric)
    store.append({"seed": 0, "round": 1, "kind": "ticket", "train_seconds": 1.0})
    assert store.done() == {(0, 0, "ticket"), (0, 1, "ticket")}
    assert store.results()["train_seconds"].iloc[0] == numeric["train_seconds"]


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
