import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.experiments import evaluate_tickets, find_tickets, prepare
from lthutils.lottery import Ticket


def replace(config, **changes):
    return ExperimentConfig(**{**config.__dict__, **changes})


def test_transfer_to_another_dataset_with_controls(tiny):
    tickets = find_tickets(tiny)
    target = replace(tiny, name="transfer", dataset="digits5k", num_train=400, controls=("reinit",))
    folder = evaluate_tickets(tickets, target)
    frame = pd.read_csv(folder / "results.csv")
    assert list(zip(frame["round"], frame["kind"])) == [
        (0, "ticket"),
        (1, "ticket"),
        (1, "reinit"),
        (2, "ticket"),
        (2, "reinit"),
    ]
    assert set(frame["dataset"]) == {"digits5k"} and set(frame["num_train"]) == {400}
    assert set(frame["source_dataset"]) == {"fashionmnist"} and set(frame["source_num_train"]) == {300}
    assert set(frame["source_run_id"]) == {tiny.run_id()}
    assert (frame["test_acc"] > 0.2).all()
    source = pd.read_csv(f"{tiny.exp_root}/tiny/{tiny.run_id()}/results.csv")
    merged = frame.merge(source, on=["round", "kind"], suffixes=("", "_source"))
    assert (merged["weights_remaining"] == merged["weights_remaining_source"]).all()  # same sparsities
    setting = prepare(target)  # and the same tickets: each one's accuracy before training on the target
    validation = setting.splits(0)
    for row in frame[frame["kind"] == "ticket"].itertuples():
        model = Ticket.load(tickets / "seed0" / f"round{row.round}.pt").model(setting.template).eval()
        with torch.no_grad():
            accuracy = (model(validation.val_images).argmax(1) == validation.val_labels).float().mean().item()
        step, _, before = json.loads(row.curve)[0]
        assert step == 0 and before == pytest.approx(accuracy, abs=1e-6)
    assert folder.name.startswith("lenet300-digits5k-adam-eval-")


def test_transfer_to_another_optimizer_resumes(tiny):
    tickets = find_tickets(tiny)
    target = replace(tiny, name="sgd", optimizer="sgd", lr=0.05, rounds=1, controls=())
    folder = evaluate_tickets(tickets, target)
    first = pd.read_csv(folder / "results.csv")
    assert list(first["kind"]) == ["ticket", "ticket"] and set(first["source_optimizer"]) == {"adam"}
    assert evaluate_tickets(tickets, replace(target, rounds=2)) == folder  # same folder, extended
    extended = pd.read_csv(folder / "results.csv")
    assert len(extended) == 3
    pd.testing.assert_frame_equal(extended.iloc[:2], first)


def test_transfer_refuses_tickets_that_do_not_fit(tiny, tmp_path):
    tickets = find_tickets(replace(tiny, rounds=1, controls=()))
    with pytest.raises(ConfigError, match=r"^ticket='1.weight of shape \(300, 784\)'"):
        evaluate_tickets(tickets, replace(tiny, model="lenet5", name="conv", rounds=1))
    with pytest.raises(ConfigError, match="rounds=2 .*round 2 of seed 0 is missing"):
        evaluate_tickets(tickets, tiny)
    with pytest.raises(ConfigError, match="seeds=7"):
        evaluate_tickets(tickets, replace(tiny, seeds=(7,), rounds=1))
    with pytest.raises(ConfigError, match="tickets=.*made by find_tickets"):
        evaluate_tickets(tmp_path, tiny)
    assert not (tmp_path / "exp_result" / "conv").exists()


def test_a_corrupt_ticket_is_named_before_any_training(tiny):
    tickets = find_tickets(replace(tiny, rounds=2, controls=()))
    broken = tickets / "seed0" / "round2.pt"
    broken.write_bytes(broken.read_bytes()[:500])  # truncated
    target = replace(tiny, name="after", controls=())
    with pytest.raises(ConfigError, match=f"^ticket='{broken}' is not allowed: .* corrupt or unsafe\\)$"):
        evaluate_tickets(tickets, target)
    assert not (Path(tiny.exp_root) / "after").exists()


def test_bad_inputs_fail_before_anything_is_written(tiny, tmp_path):
    for bad in (
        replace(tiny, num_train=60000),
        replace(tiny, reset="rewind", rewind_iteration=10_000),
        replace(tiny, val_size=60000),
    ):
        with pytest.raises(ConfigError):
            find_tickets(bad)
    assert not (tmp_path / "exp_result").exists() and not (tmp_path / "model_save").exists()


@pytest.mark.slow
def test_resume_after_a_kill_equals_an_uninterrupted_run(tiny, tmp_path):
    config = replace(tiny, rounds=6, num_train=1000, eval_every=10, controls=("reinit",))
    script = (
        "import json, sys; from lthutils.config import ExperimentConfig; from lthutils.experiments import find_tickets;"
        "find_tickets(ExperimentConfig.from_dict(json.loads(sys.argv[1])))"
    )
    process = subprocess.Popen([sys.executable, "-c", script, json.dumps(config.to_dict())])
    results = tmp_path / "exp_result" / "tiny" / config.run_id() / "results.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and len(pd.read_csv(results)) >= 4):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    before = pd.read_csv(results)
    assert 4 <= len(before) < 13
    tickets = tmp_path / "model_save" / config.run_id() / "seed0"
    saved = {p.name: p.stat().st_mtime_ns for p in tickets.iterdir()}
    done_rounds = set(before[before.kind == "ticket"]["round"])
    find_tickets(config)
    after = pd.read_csv(results)
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)  # finished rows kept as they were
    for name, mtime in saved.items():
        if int(name[5:-3]) - 1 in done_rounds:
            assert (tickets / name).stat().st_mtime_ns == mtime, f"{name} was recomputed"
    straight = replace(config, exp_root=str(tmp_path / "straight"), model_root=str(tmp_path / "straight_models"))
    find_tickets(straight)
    reference = pd.read_csv(tmp_path / "straight" / "tiny" / config.run_id() / "results.csv")
    cols = ["seed", "round", "kind", "weights_remaining", "test_acc", "val_loss", "early_stop_iter", "nonzero_weights"]
    key = ["round", "kind"]
    pd.testing.assert_frame_equal(
        after[cols].sort_values(key).reset_index(drop=True), reference[cols].sort_values(key).reset_index(drop=True)
    )
    assert not list(tmp_path.rglob("*.tmp"))


def test_rows_carried_without_tickets_finish_a_search_and_a_cut_one_ends_as_if_straight(tiny):
    """A search's rows without its tickets (scripts/carry_rows.py): all of them, nothing is
    trained or written again (its provenance still names the machine that made them); those of
    rounds 0-1 only, the trunk is retrained from theta_0 and round 2's rows come out as in the
    uninterrupted run."""
    find_tickets(tiny)
    results = Path(tiny.exp_root) / "tiny" / tiny.run_id() / "results.csv"
    straight = results.read_text()
    shutil.rmtree(tiny.model_root)
    provenance = results.parent / "provenance.json"
    provenance.write_text(json.dumps({**json.loads(provenance.read_text()), "platform": "the machine before"}))
    made_by = provenance.read_text()
    find_tickets(tiny)
    assert results.read_text() == straight and provenance.read_text() == made_by
    assert not list(Path(tiny.model_root).rglob("*.pt"))
    lines, rounds = straight.splitlines(keepends=True), pd.read_csv(results)["round"]
    results.write_text(lines[0] + "".join(line for line, r in zip(lines[1:], rounds) if r <= 1))
    find_tickets(tiny)
    cols = ["seed", "round", "kind", "weights_remaining", "test_acc", "val_loss", "early_stop_iter", "nonzero_weights"]
    after, before = (pd.read_csv(results)[cols], pd.read_csv(io.StringIO(straight))[cols])
    assert len(after) == len(before) == 7 and set(after["round"]) == {0, 1, 2}
    key = ["round", "kind"]
    pd.testing.assert_frame_equal(
        after.sort_values(key).reset_index(drop=True), before.sort_values(key).reset_index(drop=True)
    )
