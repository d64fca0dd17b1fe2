"""Faults: SIGKILL at many points, corrupt files, two processes on one run, divergence."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lthutils import plots, study
from lthutils.config import ExperimentConfig
from lthutils.lottery import Ticket, kinds_at
from lthutils.results import RunStore, read_results

HELPER = Path(__file__).parent / "interrupted.py"
TIMING = ["train_seconds", "eval_seconds", "checksum"]  # the checksum covers the timings
ROUNDS, SEEDS = 2, 2
SETTING = ["--num-train", "200", "--val-size", "100", "--rounds", str(ROUNDS), "--iterations", "20"]
SETTING += ["--eval-every", "5", "--controls", "reinit", "--seeds", str(SEEDS), "--quiet"]
MODEL = ["--model", "fc", "--n-layers", "1", "--n-neurons", "20"]
IMP = ["imp", "--name", "search", "--dataset", "digits5k", *MODEL, *SETTING]
RUN_ID = ExperimentConfig(dataset="digits5k", model="fc", n_layers=1, n_neurons=20, num_train=200, val_size=100,
                          rounds=ROUNDS, iterations=20, eval_every=5).run_id()  # fmt: skip
TRANSFER = ["evaluate", f"model_save/{RUN_ID}", "--name", "transfer", "--dataset", "fashionmnist", *MODEL, *SETTING]


def run(root: Path, args: list[str], point: str = "none", nth: int = 1) -> subprocess.CompletedProcess:
    """The CLI in `root`, killed the nth time it reaches `point` (tests/interrupted.py)."""
    command = [sys.executable, str(HELPER), point, str(nth), "--", *args]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    lines = result.stderr.splitlines(keepends=True)  # the helper's `trained:` lines apart from the CLI's own
    result.trained = [line for line in lines if line.startswith("trained: ")]
    result.stderr = "".join(line for line in lines if not line.startswith("trained: "))
    return result


def trained(result: subprocess.CompletedProcess) -> set:
    assert result.trained, f"tests/interrupted.py printed no `trained:` line:\n{result.stderr[-2000:]}"
    return {tuple(item) for item in json.loads(result.trained[-1][len("trained: ") :])}


def rows(root: Path, name: str) -> pd.DataFrame:
    paths = list((root / "exp_result" / name).glob("*/results.csv"))
    if not paths:
        return pd.DataFrame(columns=["seed", "round", "kind"])
    frame = read_results(paths[0])
    assert len(frame) == len(pd.read_csv(paths[0]))  # every row passes its checksum
    return frame.sort_values(["seed", "round", "kind"]).reset_index(drop=True)


def tickets(root: Path) -> dict[Path, int]:
    """Every ticket file (each must load and pass its checksum) and its modification time."""
    found = {}
    for path in sorted((root / "model_save").rglob("*.pt")):
        Ticket.load(path)
        found[path.relative_to(root)] = path.stat().st_mtime_ns
    return found


def still_to_train(root: Path, frame: pd.DataFrame) -> set:
    """What a rerun must train: rows not written, and each ticket whose next round's ticket is missing."""
    done = set(zip(frame["seed"], frame["round"], frame["kind"]))
    todo = set()
    for seed in range(SEEDS):
        for round_index in range(ROUNDS + 1):
            for kind in kinds_at(round_index, ("reinit",)):
                next_ticket = root / "model_save" / RUN_ID / f"seed{seed}" / f"round{round_index + 1}.pt"
                if (seed, round_index, kind) not in done or (
                    kind == "ticket" and round_index < ROUNDS and not next_ticket.exists()
                ):
                    todo.add((seed, round_index, kind))
    return todo


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs: the search, then its tickets trained on Fashion-MNIST."""
    root = tmp_path_factory.mktemp("reference")
    for args in (IMP, TRANSFER):
        assert run(root, args).returncode == 0
    return root


def assert_equals_reference(root: Path, reference: Path, names=("search",)) -> None:
    """The same rows (timings aside) and bitwise the same tickets as the uninterrupted runs."""
    for name in names:
        got, expected = rows(root, name), rows(reference, name)
        pd.testing.assert_frame_equal(got.drop(columns=TIMING), expected.drop(columns=TIMING))
    for path in tickets(reference):
        mine, theirs = Ticket.load(root / path), Ticket.load(reference / path)
        assert all(torch.equal(mine.weights[k], theirs.weights[k]) for k in theirs.weights)
        assert all(torch.equal(mine.mask[k], theirs.mask[k]) for k in theirs.mask)


KILLS = [  # (command, point, nth): 12 points of the search, 2 of a transfer run
    ("imp", "data split", 2),
    ("imp", "write config.json", 1),
    ("imp", "write provenance", 1),
    ("imp", "write source.json", 1),
    ("imp", "optimizer step", 30),
    ("imp", "evaluation", 7),
    ("imp", "pruning", 2),
    ("imp", "write ticket", 4),
    ("imp", "after renaming a ticket", 3),
    ("imp", "write results.csv", 3),
    ("imp", "before renaming results.csv", 5),
    ("imp", "between rounds", 2),
    ("evaluate", "write results.csv", 2),
    ("evaluate", "optimizer step", 10),
]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "point", "nth"), KILLS)
def test_a_kill_loses_nothing_and_the_rerun_recomputes_only_what_was_unfinished(
    tmp_path, reference, command, point, nth
):
    if command == "evaluate":  # the transfer run needs the search's tickets
        _search(tmp_path, reference)
    name, args = ("search", IMP) if command == "imp" else ("transfer", TRANSFER)
    killed = run(tmp_path, args, point, nth)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # it reached the point and died there
    after_kill, tickets_after_kill = rows(tmp_path, name), tickets(tmp_path)  # whole, verified files only
    assert not after_kill.duplicated(["seed", "round", "kind"]).any()
    expected = still_to_train(tmp_path, after_kill) if command == "imp" else None
    rerun = run(tmp_path, args)
    assert rerun.returncode == 0, rerun.stderr
    if command == "imp":
        assert trained(rerun) == expected  # no finished round trained again, every unfinished one trained
    else:
        done = set(zip(after_kill["seed"], after_kill["round"], after_kill["kind"]))
        every = rows(reference, "transfer")
        assert trained(rerun) == set(zip(every["seed"], every["round"], every["kind"])) - done
    final = rows(tmp_path, name)
    kept = final.merge(after_kill, how="inner")  # rows from before the kill: unchanged, timings included
    assert len(kept) == len(after_kill)
    assert {
        path: mtime for path, mtime in tickets(tmp_path).items() if path in tickets_after_kill
    } == tickets_after_kill
    assert not list(tmp_path.rglob(".*.tmp"))
    assert_equals_reference(tmp_path, reference, names=("search", name))


def _search(tmp_path: Path, reference: Path) -> Path:
    shutil.copytree(reference / "exp_result" / "search", tmp_path / "exp_result" / "search")
    shutil.copytree(reference / "model_save", tmp_path / "model_save")
    return tmp_path / "exp_result" / "search" / RUN_ID / "results.csv"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "round_index", "retrained"),
    [("garble", 2, {(1, 1, "ticket")}), ("truncate", 2, {(1, 1, "ticket")}), ("garble", 0, set())],
)  # round 2's ticket is made by training round 1's again; theta_0 (round 0) is drawn again, untrained
def test_a_damaged_ticket_is_reported_and_its_round_recomputed(tmp_path, reference, damage, round_index, retrained):
    _search(tmp_path, reference)
    broken = tmp_path / "model_save" / RUN_ID / "seed1" / f"round{round_index}.pt"
    data = bytearray(broken.read_bytes())
    if damage == "garble":
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(8 - i for i in range(8))
    broken.write_bytes(bytes(data if damage == "garble" else data[: len(data) // 2]))
    rerun = run(tmp_path, IMP)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{broken.relative_to(tmp_path)} is damaged" in rerun.stderr and "recomputed" in rerun.stderr
    assert trained(rerun) == retrained
    assert_equals_reference(tmp_path, reference)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garble", "truncate"])
def test_a_damaged_results_row_is_reported_and_recomputed(tmp_path, reference, damage):
    results = _search(tmp_path, reference)
    lines = results.read_text().splitlines(keepends=True)
    if damage == "garble":  # one digit of one accuracy changed: the file still parses
        header = lines[0].split(",")
        fields = lines[3].split(",")
        column = header.index("test_acc")
        fields[column] = fields[column][:-1] + ("1" if fields[column][-1] != "1" else "2")
        lines[3] = ",".join(fields)
        damaged = {tuple(pd.read_csv(results).iloc[2][["seed", "round", "kind"]])}
    else:  # cut in the middle of the last row
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
        damaged = {tuple(pd.read_csv(results).iloc[-1][["seed", "round", "kind"]])}
    results.write_text("".join(lines))
    rerun = run(tmp_path, IMP)
    assert rerun.returncode == 0, rerun.stderr
    assert str(results.relative_to(tmp_path)) in rerun.stderr and "recomputed" in rerun.stderr
    assert trained(rerun) == damaged
    assert_equals_reference(tmp_path, reference)


def test_a_damaged_source_ticket_stops_a_transfer_with_its_path(tmp_path, reference):
    _search(tmp_path, reference)
    broken = tmp_path / "model_save" / RUN_ID / "seed0" / "round1.pt"
    data = bytearray(broken.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    result = run(tmp_path, TRANSFER)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: ticket='{broken.relative_to(tmp_path)}' is not allowed")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "exp_result" / "transfer").exists()


def test_a_second_process_on_the_same_seeds_exits_with_a_clear_message(tmp_path, reference):
    store = RunStore(tmp_path / "exp_result", "search", RUN_ID, tmp_path / "model_save")
    with store.claim((1,)):
        result = run(tmp_path, IMP)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: run='exp_result/search/{RUN_ID}' is not allowed: expected one process")
    assert f"seed 1 is being trained by process {os.getpid()}" in result.stderr
    assert not store.results_path.exists()  # it wrote no rows


@pytest.mark.slow
def test_two_processes_on_one_run_do_not_interleave(tmp_path, reference):
    first = subprocess.Popen([sys.executable, str(HELPER), "none", "1", "--", *IMP], cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    lock = tmp_path / "exp_result" / "search" / RUN_ID / ".seed0.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().startswith(str(first.pid))):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGSTOP)  # the first holds its seeds, paused mid-run
    try:
        second = run(tmp_path, IMP)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=120) == 0
    assert second.returncode == 2 and f"being trained by process {first.pid}" in second.stderr
    assert_equals_reference(tmp_path, reference)


@pytest.mark.slow
def test_a_diverging_run_is_recorded_and_the_study_goes_on(tmp_path):
    args = ["imp", "--dataset", "digits5k", "--model", "fc", "--n-layers", "1", "--n-neurons", "20", "--quiet"]
    args += ["--num-train", "200", "--val-size", "100", "--rounds", "2", "--iterations", "20", "--eval-every", "5"]
    result = run(tmp_path, [*args, "--name", "hot", "--optimizer", "sgd", "--lr", "1e6", "--controls", "reinit"])
    assert result.returncode == 0, result.stderr
    frame = rows(tmp_path, "hot")
    assert len(frame) == 5 and frame["diverged"].sum() >= 2  # every round and control ran, the diverged marked
    assert frame.loc[frame["diverged"], "test_acc"].isna().all()  # no accuracy to average in
    assert frame.loc[~frame["diverged"], "test_acc"].notna().all()
    assert "training runs diverged (validation loss not finite)" in result.stdout
    tidy = study.collect(list((tmp_path / "exp_result" / "hot").glob("*/results.csv")))
    assert "diverged (validation loss not finite)" in study.QUESTIONS["q1"].conclude(tidy)  # report and notebook
    figure = plots.accuracy_vs_sparsity(tidy)
    assert any("diverged training run(s)" in text.get_text() for text in figure.texts)
    calm = run(tmp_path, [*args, "--name", "calm", "--optimizer", "sgd", "--lr", "0.05"])
    assert calm.returncode == 0 and not rows(tmp_path, "calm")["diverged"].any()
