"""Study units on a real Dask cluster (worker processes on loopback) against a sequential run."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster

from lthutils import cluster, study
from lthutils.config import ConfigError
from lthutils.lottery import Ticket

TIMING = ["train_seconds", "eval_seconds", "checksum"]  # may differ between runs (the checksum covers timings)


def q3_units(root: Path, seeds=(0, 1), rounds=1, iterations=30) -> list[study.Unit]:
    """Tickets found with SGD and with Adam on 400 digits, each trained with the other: 2 searches
    and 2 transfers. LeNet-300-100: products big enough to be split across threads, so that
    workers' one thread must give what the client's two give."""
    return study.plan_q3(
        ["sgd", "adam"],
        {"sgd": 0.01, "adam": 0.01},
        0.9,
        "digits5k",
        "lenet300",
        400,
        [1],
        rounds=rounds,
        rate=None,
        seeds=list(seeds),
        eval_every=10,
        val_size=None,
        exp_root=str(root / "exp_result"),
        model_root=str(root / "model_save"),
        quiet=True,
        iterations=iterations,
    )


def contents(root: Path) -> dict[str, pd.DataFrame]:
    """Every results.csv under root, rows sorted, timing columns dropped, by run folder."""
    found = {}
    for path in sorted((root / "exp_result").glob("q3/*/results.csv")):
        frame = pd.read_csv(path).drop(columns=TIMING)
        found[path.parent.name] = frame.sort_values(["seed", "round", "kind"]).reset_index(drop=True)
    return found


def assert_same_results(root: Path, reference: Path) -> None:
    expected, got = contents(reference), contents(root)
    assert sorted(got) == sorted(expected) and len(got) == 4
    for run_id, frame in expected.items():
        pd.testing.assert_frame_equal(got[run_id], frame)
    for path in sorted((reference / "model_save").rglob("*.pt")):
        mine, theirs = Ticket.load(root / path.relative_to(reference)), Ticket.load(path)
        assert all(mine.mask[name].equal(theirs.mask[name]) for name in theirs.mask)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The reference: the same units run one after another in this process."""
    root = tmp_path_factory.mktemp("sequential")
    study.run(q3_units(root))
    return root


@pytest.fixture(scope="module")
def local_cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize(("shared_filesystem", "seeds_per_task"), [(True, 1), (False, None)])
def test_grid_on_a_cluster_equals_the_sequential_run(
    tmp_path, sequential, local_cluster, shared_filesystem, seeds_per_task
):
    """Seeds one per task or grouped (both seeds of a unit in one task's stacks), in place or
    sent back: the rows and tickets of one process that stacks all seeds together."""
    units = q3_units(tmp_path)
    cluster.run_units(units, local_cluster.scheduler_address, shared_filesystem, seeds_per_task)
    assert_same_results(tmp_path, sequential)
    config = pd.read_json(tmp_path / "exp_result" / "q3" / units[0].config.run_id() / "config.json", typ="series")
    assert list(config["seeds"]) == [0, 1]  # the run's config names both seeds, however they were grouped
    assert not list((tmp_path / "exp_result").rglob(".*.tmp"))


@pytest.mark.slow
def test_relative_folders_mean_the_clients_folders(tmp_path, sequential, local_cluster, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)  # the workers started elsewhere: relative folders must not reach them as such
    units = q3_units(Path("."))
    assert units[0].config.exp_root == "exp_result"
    cluster.run_units(units, local_cluster.scheduler_address)
    assert_same_results(tmp_path, sequential)
    shown = capfd.readouterr().err  # not a terminal: one line per event, the workers' own bars off
    assert re.search(r"worker \d+: q3: search \S+ seeds 0,1: round 0, 2 trainings", shown)
    assert re.search(r"worker \d+: q3: tickets of \S+ trained as \S+ seeds 0,1: rounds 0-1, 6 trainings", shown)
    assert "done 4/4" in shown and "(x2)" not in shown


@pytest.mark.slow
def test_study_run_resumes_on_a_cluster_without_recomputing(tmp_path, sequential, local_cluster):
    units = q3_units(tmp_path)
    study.run(units, scheduler=local_cluster.scheduler_address)
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "model_save").rglob("*.pt")}
    assert len(before) == 2 * 2 * 2  # 2 searches x 2 seeds x rounds 0 and 1: the check below has tickets to hold
    frame = study.run(units, scheduler=local_cluster.scheduler_address)
    assert {path: path.stat().st_mtime_ns for path in before} == before  # no ticket rewritten
    assert len(frame) == sum(len(f) for f in contents(sequential).values())


@pytest.mark.slow
def test_a_killed_worker_loses_and_duplicates_no_row(tmp_path, tmp_path_factory):
    reference = tmp_path_factory.mktemp("reference")
    slow_units = q3_units(reference, rounds=3, iterations=150)
    study.run(slow_units)
    units = q3_units(tmp_path, rounds=3, iterations=150)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as running:
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.update(frame=study.run(units, running.scheduler_address)))
        worker.start()
        with Client(running.scheduler_address) as client:
            deadline = time.monotonic() + 120
            while not list((tmp_path / "exp_result").rglob("results.csv")):  # some rows written: mid-run
                assert time.monotonic() < deadline
                time.sleep(0.05)
            busy = [address for address, keys in client.processing().items() if keys]
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
        worker.join(timeout=600)
    assert "frame" in outcome  # study.run finished: the killed worker's task ran again elsewhere
    assert_same_results(tmp_path, reference)


@pytest.mark.slow
def test_a_failing_task_is_reported_and_the_others_finish(tmp_path, local_cluster):
    units = q3_units(tmp_path)
    broken = units[0].results_path  # a folder where a run's results.csv belongs: its tasks raise
    broken.mkdir(parents=True)
    with pytest.raises(cluster.TasksFailedError) as failure:
        cluster.run_units(units, local_cluster.scheduler_address)  # a task per unit: its 2 seeds stack
    message = str(failure.value)
    assert message.startswith("2 of 4 tasks failed")  # the search, and the transfer of its tickets
    assert message.count("IsADirectoryError") == 1
    assert message.count("not run, because the search for its tickets failed") == 1
    assert "'optimizer': 'sgd'" in message and "Traceback" in message
    finished = [unit for unit in units if unit.source is not None and unit.source.optimizer == "adam"]
    assert len(finished) == 1 and len(pd.read_csv(finished[0].results_path)) == 2 * 3  # 2 seeds x 3 rows


@pytest.mark.slow
def test_a_separately_started_scheduler_by_address(tmp_path, sequential):
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m"]
    scheduler = subprocess.Popen(
        [*dask, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        + ["--scheduler-file", str(scheduler_file)]
    )
    worker = subprocess.Popen(
        [*dask, "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file)]
        + ["--nworkers", "2", "--nthreads", "1", "--no-dashboard"]
    )
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        address = pd.read_json(scheduler_file, typ="series")["address"]
        assert address.startswith("tcp://127.0.0.1:")
        study.run(q3_units(tmp_path), scheduler=address)
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(timeout=60)
    assert_same_results(tmp_path, sequential)


@pytest.mark.parametrize(("scheduler", "workers"), [("dask", None), ("127.0.0.1:8786", None), ("local", 0)])
def test_bad_scheduler_settings_are_refused_before_any_work(scheduler, workers):
    with pytest.raises(ConfigError, match="scheduler=|workers="), cluster.session(scheduler, workers):
        pass
