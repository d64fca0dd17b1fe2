"""Run a study's units on a Dask cluster: a LocalCluster started here, or a scheduler by address.

A task is a group of seeds of one unit (`cost.seed_groups`, `Unit.for_seeds`): those seeds' ticket
search on a setting, or their tickets trained on another setting; a transfer task waits for the
search tasks that find its tickets. A fully connected unit's seeds are grouped so that a task's
stacks hold up to MAX_STACKED_MODELS models (a model's numbers do not depend on its stack-mates,
training.py, so the grouping changes speed only); other models' seeds run one per task. Each
worker process runs one task at a time with torch's threads capped, so workers never
oversubscribe the cores. Dask reruns the task of a worker that dies on another worker; on
a shared filesystem the rerun resumes from whatever the dead one finished, otherwise it starts
again from the files the client sent.

Where results are written is decided once per `run_units` call:
- workers that see the client's files (a LocalCluster; a cluster on a shared filesystem):
  each task writes its rows and tickets in place, as a local run does; the tasks of one run share
  its results.csv under the run's lock;
- workers that do not: the client sends each task the files it resumes from, the task works in
  a scratch folder and sends back its results and tickets, and the client writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import re
import secrets
import socket
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lthutils import monitor, tracking
from lthutils.config import ConfigError
from lthutils.cost import seed_groups, task_seconds
from lthutils.experiments import SOURCE_FILE, record_run
from lthutils.results import RunStore, read_results, write_atomic

if TYPE_CHECKING:
    from lthutils.jobs import Unit

SCHEDULERS = "'local' (a Dask LocalCluster here), 'none' (no Dask) or a scheduler address such as tcp://HOST:8786"
TORCH_THREADS = "LTHUTILS_TORCH_THREADS"  # set on workers: torch threads per task (Dask's default: 1)
CONNECT_SECONDS = 30

RUN_FILES = ("results.csv", "provenance.json")  # what a task on another filesystem sends back of its run
Files = dict[str, dict[str, bytes]]  # {"exp": {path under exp_root: bytes}, "models": {path under model_root: ...}}


class TasksFailedError(RuntimeError):
    """Some tasks raised; the message names each one with its parameters and traceback."""


def check_scheduler(scheduler: str, workers: int | None = None) -> None:
    if not isinstance(scheduler, str) or not (
        scheduler in ("local", "none") or re.fullmatch(r"(tcp|tls|ws|wss|ucx)://\S+", scheduler)
    ):
        raise ConfigError("scheduler", scheduler, SCHEDULERS)
    if scheduler != "none" and importlib.util.find_spec("distributed") is None:
        raise ConfigError("scheduler", scheduler, "'none', or Dask installed: pip install 'lthutils[dask]'")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError("workers", workers, "a positive number of worker processes")


def quiet_dask(verbose: bool = False) -> None:
    """Dask's own log lines (scheduler, nanny and client start and stop) at WARNING in this
    process, unless `verbose`: progress bars and failures are what a user needs to see."""
    import distributed  # noqa: F401 (importing it sets its loggers up, at INFO: set the level after)

    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.WARNING)


@contextlib.contextmanager
def session(scheduler: str, workers: int | None = None) -> Iterator[str | None]:
    """The scheduler address to submit to: for 'local' a LocalCluster of `workers` processes
    (default: one per core) started here and closed on exit; an address as given; None for 'none'."""
    check_scheduler(scheduler, workers)
    if scheduler != "local":
        yield None if scheduler == "none" else scheduler
        return
    cores = len(os.sched_getaffinity(0))
    workers = workers or cores
    with local_cluster(workers, torch_threads=max(1, cores // workers)) as address:
        yield address


@contextlib.contextmanager
def local_cluster(workers: int, torch_threads: int) -> Iterator[str]:
    """A LocalCluster of `workers` single-threaded processes, each task with `torch_threads`."""
    import dask
    from distributed import LocalCluster

    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which also pins glibc's mmap
    # threshold: every torch buffer over 128 KiB is then mapped and faulted in anew at every
    # step, and training runs markedly slower. None unsets it.
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env={TORCH_THREADS: str(torch_threads)},
        ) as cluster,
    ):
        yield cluster.scheduler_address


def run_units(
    units: list[Unit], address: str, shared_filesystem: bool | None = None, seeds_per_task: int | None = None
) -> None:
    """Run each group of seeds of each unit (cost.seed_groups) as a task on the scheduler at
    `address`, searches before the transfers that need them. `shared_filesystem`: None asks the
    workers whether they see the client's exp_root. After every task has finished, raise
    TasksFailedError naming each failure.

    Tasks are handed to the scheduler only as worker threads free up: submitted all at once,
    Dask places them on workers before knowing how long they take and does not move them to a
    worker that falls idle (seen: one of 2 workers idle for half of a 4-task grid).
    """
    from distributed import Client, as_completed

    quiet_dask()  # in a notebook's kernel: its client's lines would reach the console as stderr
    unreachable = "the address of a running Dask scheduler, or None to run here (an executed notebook keeps "
    unreachable += "the address of the cluster it ran on)"
    host_port = re.fullmatch(r"tcp://\[?([^\]]+?)\]?:(\d+)", address)
    try:
        if host_port:  # refused at once rather than after Client's retries
            socket.create_connection((host_port[1], int(host_port[2])), timeout=CONNECT_SECONDS).close()
        client = Client(address, timeout=CONNECT_SECONDS)
    except OSError as error:
        raise ConfigError("scheduler", address, f"{unreachable}: {error.strerror or error}") from error
    with client:
        shared = _workers_share_files(client, units) if shared_filesystem is None else shared_filesystem
        threads = max(1, sum(client.nthreads().values()))
        groups = seed_groups([u.absolute() for u in units], threads, seeds_per_task)
        pending = [  # (task, the (search, seed)s it needs, the (search, seed)s it finds)
            (
                unit.for_seeds(seeds),
                set() if unit.source is None else {(unit.source.run_id(), seed) for seed in seeds},
                {(unit.config.run_id(), seed) for seed in seeds} if unit.source is None else set(),
            )
            for unit, seeds in groups
        ]
        try:
            projected = task_seconds(groups, threads)
        except (OSError, ValueError):  # a run folder it cannot read: no ETA; the task that needs it says what is wrong
            projected = None
        if projected is not None:
            projected = {task.describe(): seconds for (task, _, _), seconds in zip(pending, projected)}
        total, running, failures = len(pending), {}, []
        settled = {}  # (search, seed) -> whether its task succeeded, once its results are written here
        finished = as_completed()
        where = "in place (workers share this filesystem)" if shared else "by this client (workers send them back)"
        display = monitor.Display(
            total, f"tasks on {address}, results written {where}", threads, projected, monitor.stream()
        )
        client.subscribe_topic(
            monitor.TOPIC, lambda event: display.event(event[1]["name"], event[1]["task"], event[1]["what"])
        )

        def submit_ready() -> None:
            threads = max(1, sum(client.nthreads().values()))
            while pending and len(running) < threads:
                unsettled = {key for _, _, finds in pending + list(running.values()) for key in finds}
                item = next((item for item in pending if not item[1] & unsettled), None)
                if item is None:
                    return
                pending.remove(item)
                task, needs, finds = item
                if not all(settled.get(key, True) for key in needs):
                    failures.append(f"- {task.describe()}: not run, because the search for its tickets failed")
                    display.finished(task.describe(), failed=True)
                    continue
                files = None if shared else _files_for(task)  # a transfer's tickets are written here by now
                key = f"{task.describe()}-{secrets.token_hex(4)}"
                future = client.submit(run_task, task, files, key=key, pure=False)
                running[future] = (task, needs, finds)
                display.started(task.describe())
                finished.add(future)

        try:
            submit_ready()
            for future in finished:
                task, _, finds = running.pop(future)
                if future.status == "error":
                    failures.append(_failure(task, future))
                elif not shared:
                    write_back(task, future.result())
                settled.update(dict.fromkeys(finds, future.status != "error"))
                display.finished(task.describe(), failed=future.status == "error")
                submit_ready()
        finally:
            client.unsubscribe_topic(monitor.TOPIC)
            display.close()
    if failures:
        raise TasksFailedError(
            f"{len(failures)} of {total} tasks failed (the others finished):\n" + "\n".join(failures)
        )


def _workers_share_files(client, units: list[Unit]) -> bool:
    """True when every worker sees a file this client writes under the first unit's exp_root
    (workers that join later are assumed to be like these)."""
    exp_root = Path(units[0].config.exp_root)
    exp_root.mkdir(parents=True, exist_ok=True)
    client.wait_for_workers(1, timeout=CONNECT_SECONDS)  # no answer at all must not read as "shared"
    with tempfile.NamedTemporaryFile(dir=exp_root, prefix=".client-") as probe:
        answers = client.run(os.path.exists, os.path.abspath(probe.name))
    return bool(answers) and all(answers.values())


def _failure(task: Unit, future) -> str:
    error = future.exception()
    trace = "".join(traceback.format_exception(type(error), error, future.traceback()))
    return f"- {task.describe()}\n  config: {task.config.to_dict()}\n  " + trace.replace("\n", "\n  ").rstrip()


def run_task(task: Unit, files: Files | None) -> Files | None:
    """A worker's task: run `task` in place (`files` None), or in a scratch folder seeded with
    `files`, returning its results, provenance and the tickets it made (see write_back)."""
    if TORCH_THREADS in os.environ:
        torch.set_num_threads(int(os.environ[TORCH_THREADS]))
    described = task.describe()
    task = dataclasses.replace(task, config=dataclasses.replace(task.config, quiet=True))  # the client shows progress
    with monitor.forwarded(described):
        return _run_task(task, files)


def _run_task(task: Unit, files: Files | None) -> Files | None:
    if files is None:
        task.run()
        return None
    with tempfile.TemporaryDirectory(prefix="lthutils-task-") as scratch:
        exp_root, model_root = Path(scratch, "exp"), Path(scratch, "models")
        for root, group in ((exp_root, files["exp"]), (model_root, files["models"])):
            for relative, data in group.items():
                write_atomic(root / relative, data)
        local = task.relocated(str(exp_root), str(model_root))
        local.run()
        run_dir = local.results_path.parent
        tickets = {} if task.source else _ticket_files(local.tickets(), task.config.seeds)
        return {
            "exp": {name: (run_dir / name).read_bytes() for name in RUN_FILES},
            "models": {path: data for path, data in tickets.items() if files["models"].get(path) != data},
        }


def _files_for(task: Unit) -> Files:
    """What `task` resumes from, for a worker without this filesystem: its results.csv, and its
    seeds' tickets (its own for a search, its source's for a transfer)."""
    files: Files = {"exp": {}, "models": _ticket_files(task.tickets(), task.config.seeds)}
    if task.results_path.is_file():
        files["exp"][str(task.results_path.relative_to(task.config.exp_root))] = task.results_path.read_bytes()
    return files


def _ticket_files(tickets: Path, seeds: tuple[int, ...]) -> dict[str, bytes]:
    """A ticket folder's source.json and these seeds' tickets, by path under the model root."""
    paths = [tickets / SOURCE_FILE, *(path for seed in seeds for path in sorted(tickets.glob(f"seed{seed}/*.pt")))]
    return {str(path.relative_to(tickets.parent)): path.read_bytes() for path in paths if path.is_file()}


def write_back(task: Unit, wrote: Files) -> None:
    """Write what a task sent back under the client's roots: the tickets it made, its provenance,
    the run's config (seeds merged) and its seeds' rows that pass their checksums and are new here."""
    for relative, data in wrote["models"].items():
        write_atomic(Path(task.config.model_root) / relative, data)
    config = task.config.resolved()
    store = RunStore(config.exp_root, config.name, task.results_path.parent.name, config.model_root)
    with store.locked():
        record_run(store, config, json.loads(wrote["exp"]["provenance.json"]))
    rows = read_results(task.results_path, wrote["exp"]["results.csv"])
    rows = rows[rows["seed"].isin(config.seeds)].to_dict("records")
    done = store.done()
    new = [row for row in rows if (row["seed"], row["round"], row["kind"]) not in done]
    store.append(*new)
    tracking.log_rows(config, store, *new)  # trained on another filesystem: logged where its rows land
    tracking.flush()
