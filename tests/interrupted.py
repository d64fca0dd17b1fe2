"""Run the lthutils command line and SIGKILL it at a named point of its real code path.

    python tests/interrupted.py POINT N -- imp --dataset digits5k ...

The process kills itself the N-th time it reaches POINT (see POINTS); POINT `none` runs to the
end. Either way, every (seed, round, kind) it trained is printed to stderr as `trained: [...]`
(first `trained: []`, before any work), so a test can tell what a rerun recomputed, nothing
included. Used by tests/test_reliability.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch

from lthutils import __main__ as cli
from lthutils import experiments, lottery, results, training

POINTS = (
    "data split",  # before any training
    "write config.json",  # a complete temporary file, not yet renamed into place
    "write provenance",
    "write source.json",
    "optimizer step",  # in the middle of a training run
    "evaluation",  # validation or test pass
    "pruning",  # a round trained, its next mask being computed
    "write ticket",  # a checkpoint's temporary file written, not yet renamed
    "after renaming a ticket",  # the next round's ticket in place, the round's rows not yet
    "write results.csv",  # a results.csv append written to its temporary file
    "before renaming results.csv",
    "between rounds",  # a round's rows and tickets written, the next round not started
)
POINT, NTH = sys.argv[1], int(sys.argv[2])
ARGS = sys.argv[sys.argv.index("--") + 1 :]
if POINT not in (*POINTS, "none"):
    sys.exit(f"unknown point {POINT!r}; one of: none, " + ", ".join(POINTS))
reached = 0


def reach(point: str) -> None:
    global reached
    if point == POINT:
        reached += 1
        if reached == NTH:
            os.kill(os.getpid(), signal.SIGKILL)


def _written_name(fd: int) -> str:
    """The final name of the file write_atomic is writing through this descriptor ('.NAME.xyz.tmp')."""
    return os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).split(".")[1]


fsync, replace = os.fsync, os.replace


WRITES = {"results": "write results.csv", "config": "write config.json", "provenance": "write provenance"}
WRITES["source"] = "write source.json"


def fsync_then_maybe_die(fd: int) -> None:
    fsync(fd)  # the temporary file is complete on disk, not yet renamed into place
    name = _written_name(fd)
    reach("write ticket" if name.startswith("round") else WRITES.get(name, ""))


def replace_and_maybe_die(source: str, target: str) -> None:
    name = os.path.basename(target)
    reach("before renaming results.csv" if name == "results.csv" else "")
    replace(source, target)
    reach("after renaming a ticket" if name.startswith("round") else "")


def step_then_maybe_die(original):
    def step(self, *args, **kwargs):
        reach("optimizer step")
        return original(self, *args, **kwargs)

    return step


def counted(point: str, original):
    def wrapper(*args, **kwargs):
        reach(point)
        return original(*args, **kwargs)

    return wrapper


trained = []


def recording(original):
    def train_tickets(items, *args, **kwargs):
        for ticket, kind, model, result in original(items, *args, **kwargs):
            trained.append((ticket.seed, ticket.round, kind))
            print("trained: " + json.dumps(trained), file=sys.stderr, flush=True)
            yield ticket, kind, model, result

    return train_tickets


results.os.fsync = fsync_then_maybe_die
results.os.replace = replace_and_maybe_die
torch.optim.Adam.step = step_then_maybe_die(torch.optim.Adam.step)
training.evaluate = counted("evaluation", training.evaluate)
experiments.make_splits = counted("data split", experiments.make_splits)
lottery.next_mask = counted("pruning", lottery.next_mask)
lottery.train_tickets = recording(lottery.train_tickets)
experiments.train_tickets = recording(experiments.train_tickets)
_load = lottery.Ticket.load.__func__
lottery.Ticket.load = classmethod(lambda cls, path: (reach("between rounds"), _load(cls, path))[1])

print("trained: []", file=sys.stderr, flush=True)
sys.exit(cli.main(ARGS))
