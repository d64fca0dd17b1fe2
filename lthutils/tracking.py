"""Experiment trackers: each training run (a results row) to TensorBoard, MLflow or Weights &
Biases, and a study's report as artifacts. Offline by default; none is imported unless asked.

Per training run, as its row lands (so a run's whole validation curve arrives when it finishes):
its resolved config, tags (question = the config's name, kind, seed, round, weights remaining,
dataset, optimizer, model, run id, and the source's for a transfer), the validation curve by
step, the final and early-stop test accuracies, the early-stopping step, and the mask's alive
weights per layer.
- tensorboard: event files in <run folder>/tensorboard/seed<s>-round<r>-<kind>/;
- mlflow: $MLFLOW_TRACKING_URI, else a SQLite store <exp_root>/mlflow.db; one experiment per config
  name, one MLflow run per training run;
- wandb: offline unless $WANDB_MODE says otherwise, files under <exp_root>/wandb/; one W&B project
  per config name, grouped by run id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import queue
import threading
from pathlib import Path
from typing import Any

from lthutils.config import ExperimentConfig, check_tracker
from lthutils.results import RunStore, locked_file

TAG_COLUMNS = ("kind", "seed", "round", "weights_remaining", "dataset", "optimizer", "model", "num_train", "run_id")


def tags(config: ExperimentConfig, row: dict[str, Any]) -> dict[str, str]:
    """What identifies a training run, as strings: the question (the config's name), its row's
    identifying columns, and the source's columns of a transferred ticket."""
    found = {"question": config.name} | {column: row[column] for column in TAG_COLUMNS if column in row}
    found |= {column: row[column] for column in row if column.startswith("source_")}
    return {key: str(value) for key, value in found.items()}


@functools.lru_cache(maxsize=64)  # one config serves every row of its run
def config_values(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as JSON-safe values (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config.resolved())))


def run_name(row: dict[str, Any]) -> str:
    return f"seed{row['seed']}-round{row['round']}-{row['kind']}"


def finals(row: dict[str, Any]) -> dict[str, float]:
    """The run's final metrics and its mask's alive weights per layer (mask/<parameter>)."""
    alive = json.loads(row["nonzero_by_layer"])
    values = {
        "test/accuracy": row["test_acc"],
        "test/accuracy_at_early_stop": row["test_acc_at_early_stop"],
        "early_stop_iter": row["early_stop_iter"],
        "weights_remaining": row["weights_remaining"],
    }
    return {key: float(value) for key, value in values.items()} | {f"mask/{k}": float(v) for k, v in alive.items()}


_QUEUE: queue.Queue = queue.Queue()
_FAILURES: list[BaseException] = []
_WORKER: list[threading.Thread] = []  # started on first use


def log_rows(config: ExperimentConfig, store: RunStore, *rows: dict[str, Any]) -> None:
    """Hand each row just appended to `store` to the config's tracker (nothing for 'none'). A
    background thread logs them while training goes on (the trackers' writes and database
    commits wait on disk); flush() waits for it."""
    if config.tracker == "none":
        return
    if not _WORKER:
        _WORKER.append(threading.Thread(target=_log_queued, name="lthutils-tracker", daemon=True))
        _WORKER[0].start()
    for row in rows:
        _QUEUE.put((config, store.dir, {"run_id": store.run_id, **row}))


def _log_queued() -> None:
    log = {"tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb}
    while True:
        config, run_dir, row = _QUEUE.get()
        try:
            log[config.tracker](config, Path(run_dir), row)
        except BaseException as error:  # raised again by flush(), in the thread that trains
            _FAILURES.append(error)
        finally:
            _QUEUE.task_done()


def flush() -> None:
    """Wait until every row handed to a tracker is logged; raise the first failure, if any."""
    _QUEUE.join()
    if _FAILURES:
        failure = _FAILURES[0]
        _FAILURES.clear()
        raise failure


def _curve(row: dict[str, Any]) -> list[tuple[int, float, float]]:
    return [(int(step), float(loss), float(accuracy)) for step, loss, accuracy in json.loads(row["curve"])]


def _tensorboard(config: ExperimentConfig, run_dir: Path, row: dict[str, Any]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    last = int(row["train_iterations"])
    with contextlib.closing(SummaryWriter(str(run_dir / "tensorboard" / run_name(row)))) as writer:
        writer.add_text("config", json.dumps(config_values(config), indent=1), 0)
        writer.add_text("tags", json.dumps(tags(config, row), indent=1), 0)
        for step, loss, accuracy in _curve(row):
            writer.add_scalar("validation/loss", loss, step)
            writer.add_scalar("validation/accuracy", accuracy, step)
        for key, value in finals(row).items():
            writer.add_scalar(key, value, last)


def mlflow_uri(exp_root: str | Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(exp_root).absolute() / 'mlflow.db'}"


_LOCAL_STORES: set[str] = set()  # the real paths of the kit's own SQLite stores on local filesystems
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "9p"})


def filesystem_type(path: str | Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem `path` lies on, from a mount table (Linux's /proc/mounts unless
    given); None where there is none to read."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    path = os.path.realpath(path)
    found, longest = None, -1
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > longest:
            found, longest = fields[2], len(point)
    return found


def _local_store_pragmas(connection: Any, _record: Any) -> None:
    """Our own SQLite store in write-ahead-log mode with normal syncing: a commit appends to the
    log instead of syncing the database twice (a third less time per logged run: docs/PERFORMANCE.md), and a crash can
    lose the last commits but not corrupt the store. Connections to any other database are left
    as they are."""
    import sqlite3

    if isinstance(connection, sqlite3.Connection):
        path = connection.execute("PRAGMA database_list").fetchone()[2]
        if path and os.path.realpath(path) in _LOCAL_STORES:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")


@functools.lru_cache(maxsize=8)
def _mlflow_client(uri: str) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline by default: no usage reports
    from mlflow import MlflowClient
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    path = os.path.realpath(uri.removeprefix("sqlite:///"))
    kind = filesystem_type(Path(path).parent)
    # WAL needs every writer on one host: only our own store, on a filesystem of this machine
    if "MLFLOW_TRACKING_URI" not in os.environ and kind is not None and kind not in NETWORK_FILESYSTEMS:
        _LOCAL_STORES.add(path)
        if not event.contains(Engine, "connect", _local_store_pragmas):
            event.listen(Engine, "connect", _local_store_pragmas)
    return MlflowClient(tracking_uri=uri)


@functools.lru_cache(maxsize=64)
def _mlflow_experiment(client: Any, name: str, exp_root: str | Path) -> str:
    """The experiment's id, created if new: with the local store, its artifacts under
    <exp_root>/mlflow-artifacts (MLflow's default is ./mlruns in the working directory)."""
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    local = "MLFLOW_TRACKING_URI" not in os.environ
    artifacts = (Path(exp_root).absolute() / "mlflow-artifacts").as_uri() if local else None
    return client.create_experiment(name, artifact_location=artifacts)


def _mlflow(config: ExperimentConfig, run_dir: Path, row: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param

    with locked_file(Path(config.exp_root) / ".mlflow.lock"):
        client = _mlflow_client(mlflow_uri(config.exp_root))
        experiment_id = _mlflow_experiment(client, config.name, config.exp_root)
        run = client.create_run(experiment_id, run_name=f"{row['run_id']} {run_name(row)}", tags=tags(config, row))
        metrics = [
            Metric(name, value, 0, step)
            for step, loss, accuracy in _curve(row)
            for name, value in (("validation/loss", loss), ("validation/accuracy", accuracy))
        ]
        metrics += [Metric(key, value, 0, int(row["train_iterations"])) for key, value in finals(row).items()]
        params = [Param(key, json.dumps(value)[:6000]) for key, value in config_values(config).items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id)


def _wandb_mode() -> str:
    return os.environ.get("WANDB_MODE", "offline")


def _wandb_settings() -> Any:
    """W&B without its per-run extras (system metrics, code, git and requirements snapshots,
    console capture): they cost ten times the logging itself, and the run's provenance.json
    already records the environment."""
    import wandb

    return wandb.Settings(
        silent=True,
        console="off",
        x_disable_stats=True,
        x_disable_meta=True,
        disable_code=True,
        disable_git=True,
        x_save_requirements=False,
    )


def _wandb(config: ExperimentConfig, run_dir: Path, row: dict[str, Any]) -> None:
    import wandb

    run = wandb.init(
        project=config.name,
        group=str(row["run_id"]),
        name=run_name(row),
        config=config_values(config) | {"tags": tags(config, row)},
        tags=[str(row["kind"]), str(row["dataset"]), str(row["model"])],
        dir=str(Path(config.exp_root).absolute()),
        mode=_wandb_mode(),
        reinit="create_new",
        settings=_wandb_settings(),
    )
    for step, loss, accuracy in _curve(row):
        run.log({"validation/loss": loss, "validation/accuracy": accuracy}, step=step)
    run.summary.update(finals(row))
    run.finish()


def log_report(tracker: str, exp_root: str | Path, report_dir: Path) -> None:
    """A built report (index.html, verdicts, levels, conclusions, figures) as one tracker run's
    artifacts: TensorBoard gets the conclusions and verdicts as text (it keeps no files)."""
    check_tracker(tracker)
    files = sorted(p for p in report_dir.rglob("*") if p.is_file())
    if tracker == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        with contextlib.closing(SummaryWriter(str(report_dir / "tensorboard"))) as writer:
            for path in files:
                if path.suffix in (".md", ".csv"):
                    writer.add_text(path.name, path.read_text(), 0)
    elif tracker == "mlflow":
        with locked_file(Path(exp_root) / ".mlflow.lock"):
            client = _mlflow_client(mlflow_uri(exp_root))
            run = client.create_run(_mlflow_experiment(client, "report", exp_root), run_name="report")
            client.log_artifacts(run.info.run_id, str(report_dir))
            client.set_terminated(run.info.run_id)
    elif tracker == "wandb":
        import wandb

        run = wandb.init(
            project="report",
            name="report",
            job_type="report",
            dir=str(Path(exp_root).absolute()),
            mode=_wandb_mode(),
            reinit="create_new",
            settings=_wandb_settings(),
        )
        artifact = wandb.Artifact("report", type="report")
        artifact.add_dir(str(report_dir))
        run.log_artifact(artifact)
        run.finish()
