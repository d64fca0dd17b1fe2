"""Experiment trackers against their real libraries, offline: what each training run logs is read
back with the tracker's own reader (TensorBoard's event accumulator, MLflow's client, W&B's record
definitions) and equals the run's results row."""

import glob
import importlib.util
import json
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from lthutils import tracking
from lthutils.config import ConfigError, ExperimentConfig
from lthutils.experiments import find_tickets
from lthutils.report import build_report
from lthutils.results import read_results


def tiny(tmp_path, tracker: str) -> ExperimentConfig:
    return ExperimentConfig(
        name="tracked",
        dataset="fashionmnist",
        num_train=300,
        val_size=200,
        iterations=30,
        eval_every=10,
        rounds=1,
        controls=("reinit",),
        tracker=tracker,
        quiet=True,
        exp_root=str(tmp_path / "exp"),
        model_root=str(tmp_path / "models"),
    )


def rows_of(config):
    (path,) = (Path(config.exp_root) / "tracked").glob("*/results.csv")
    return read_results(path)


def by_name(rows):
    return {tracking.run_name(row): row for row in rows.to_dict("records")}


def test_tensorboard_event_files_hold_each_runs_curve_metrics_and_mask(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny(tmp_path, "tensorboard")
    find_tickets(config)
    rows = rows_of(config)
    folders = sorted((tmp_path / "exp" / "tracked").glob("*/tensorboard/*"))
    assert sorted(f.name for f in folders) == sorted(by_name(rows))
    for folder in folders:
        row = by_name(rows)[folder.name]
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0}).Reload()
        curve = json.loads(row["curve"])
        accuracy = events.Scalars("validation/accuracy")
        assert [e.step for e in accuracy] == [step for step, _, _ in curve]
        assert [e.value for e in accuracy] == pytest.approx([acc for _, _, acc in curve])
        assert events.Scalars("test/accuracy")[-1].value == pytest.approx(row["test_acc"])
        for layer, alive in json.loads(row["nonzero_by_layer"]).items():
            assert events.Scalars(f"mask/{layer}")[-1].value == alive
        assert "tensorboard" in events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()


def test_mlflow_runs_are_queried_back_through_its_client(tmp_path):
    from mlflow import MlflowClient

    config = tiny(tmp_path, "mlflow")
    find_tickets(config)
    rows = rows_of(config)
    client = MlflowClient(tracking_uri=tracking.mlflow_uri(config.exp_root))
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(rows) == 3
    for run in runs:
        tags = run.data.tags
        row = rows[(rows["kind"] == tags["kind"]) & (rows["round"] == int(tags["round"]))].iloc[0]
        assert tags["question"] == "tracked" and tags["run_id"] == row["run_id"] and tags["seed"] == "0"
        history = client.get_metric_history(run.info.run_id, "validation/loss")
        assert [(m.step, m.value) for m in history] == [
            (s, pytest.approx(loss)) for s, loss, _ in json.loads(row["curve"])
        ]
        assert run.data.metrics["test/accuracy_at_early_stop"] == pytest.approx(row["test_acc_at_early_stop"])
        assert json.loads(run.data.params["prune_rate"]) == 0.2 and json.loads(run.data.params["iterations"]) == 30
    store = sqlite3.connect(tmp_path / "exp" / "mlflow.db")
    assert store.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # our own store commits to a log


def test_the_filesystem_a_store_lies_on_is_read_from_the_mount_table():
    """The kit's store takes write-ahead logging only on a filesystem of this machine: on NFS or
    Lustre, workers on other hosts may write it too."""
    mounts = (
        "overlay / overlay rw 0 0\nserver:/export /mnt/shared nfs4 rw 0 0\nfs@tcp:/lus /mnt/shared/lus lustre rw 0 0\n"
    )
    assert tracking.filesystem_type("/work/exp/mlflow.db", mounts) == "overlay"
    assert tracking.filesystem_type("/mnt/shared/exp/mlflow.db", mounts) == "nfs4"
    assert tracking.filesystem_type("/mnt/shared/lus/exp", mounts) == "lustre"
    assert tracking.filesystem_type("/mnt/sharedx/exp", mounts) == "overlay"  # a prefix, not a parent
    assert "nfs4" in tracking.NETWORK_FILESYSTEMS and "lustre" in tracking.NETWORK_FILESYSTEMS


def test_a_store_of_the_users_keeps_its_journal_mode(tmp_path, monkeypatch):
    """Only the SQLite store the kit chose is switched to write-ahead logging, never one named by
    $MLFLOW_TRACKING_URI (WAL needs every writer on one host)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'lab.db'}")
    monkeypatch.chdir(tmp_path)  # where MLflow puts a named store's artifacts
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "conclusions.md").write_text("none yet")
    tracking.log_report("mlflow", tmp_path / "exp", tmp_path / "report")
    assert sqlite3.connect(tmp_path / "lab.db").execute("PRAGMA journal_mode").fetchone() == ("delete",)


def wandb_records(path):
    """The records of an offline W&B run file, decoded with W&B's own protobuf definitions (its
    file is a leveldb-style log of 32 KiB blocks after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as handle:
        data, position, pending = handle.read(), 7, b""
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or its last piece
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_files_hold_each_runs_config_curve_and_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline by default
    config = tiny(tmp_path, "wandb")
    find_tickets(config)
    rows = rows_of(config)
    files = sorted(glob.glob(str(tmp_path / "exp" / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == len(rows) == 3
    seen = set()
    for path in files:
        records = list(wandb_records(path))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        row = by_name(rows)[run.display_name]
        seen.add(run.display_name)
        assert run.project == "tracked" and run.run_group == row["run_id"]
        config_items = {item.key: json.loads(item.value_json) for item in run.config.update}
        assert config_items["tags"]["kind"] == row["kind"] and config_items["iterations"] == 30
        history = [
            {item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
            for r in records
            if r.WhichOneof("record_type") == "history"
        ]
        logged = [(int(h["_step"]), float(h["validation/accuracy"])) for h in history]
        assert logged == [(s, pytest.approx(acc)) for s, _, acc in json.loads(row["curve"])]
        summary = {}
        for r in records:
            if r.WhichOneof("record_type") == "summary":
                summary |= {item.key or "/".join(item.nested_key): item.value_json for item in r.summary.update}
        assert float(summary["test/accuracy"]) == pytest.approx(row["test_acc"])
    assert seen == set(by_name(rows))


def test_the_report_goes_to_mlflow_as_artifacts(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory (MLflow's default ./mlruns)
    config = tiny(tmp_path, "none")
    find_tickets(config)
    page = build_report(config.exp_root)
    tracking.log_report("mlflow", config.exp_root, page.parent)
    client = MlflowClient(tracking_uri=tracking.mlflow_uri(config.exp_root))
    (run,) = client.search_runs([client.get_experiment_by_name("report").experiment_id])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {p.name for p in page.parent.iterdir()}
    assert "index.html" in artifacts and "all_results.csv" in artifacts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "models"]
    assert (tmp_path / "exp" / "mlflow-artifacts").is_dir()


def test_a_tracker_that_fails_stops_the_run_with_its_error_after_the_rows_are_written(tmp_path, monkeypatch):
    """Logging runs beside training, in a thread: its failure is raised where the run ends, not lost."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    config = tiny(tmp_path, "mlflow")
    with pytest.raises(Exception, match="nosuchscheme"):
        find_tickets(config)
    assert len(rows_of(config)) == 3  # the results themselves are all there


def test_a_missing_tracker_library_is_a_one_line_error_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(
        ConfigError,
        match=r"tracker='wandb' is not allowed: expected wandb installed: pip install 'lthutils\[trackers\]'",
    ):
        ExperimentConfig(tracker="wandb")
    with pytest.raises(ConfigError, match="tracker='neptune' is not allowed: expected one of none, tensorboard"):
        ExperimentConfig(tracker="neptune")


def test_no_tracker_library_is_imported_unless_asked():
    code = (
        "import sys; import lthutils.experiments, lthutils.study, lthutils.report, lthutils.tracking; "
        "print(sorted(m for m in ('tensorboard', 'mlflow', 'wandb') if m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


def test_the_tracker_does_not_change_a_runs_identity(tmp_path):
    assert tiny(tmp_path, "mlflow").run_id() == tiny(tmp_path, "none").run_id()
