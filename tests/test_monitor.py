"""The client's display of a cluster's tasks: plain lines when not a terminal, lines redrawn in place in one."""

import io
import re

import pytest

from lthutils import monitor


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """monitor's clock, set by hand."""
    now = [1000.0]
    monkeypatch.setattr(monitor.time, "monotonic", lambda: now[0])
    return now


def test_plain_lines_one_per_event_with_an_eta_from_the_cost_model(clock):
    out = io.StringIO()
    display = monitor.Display(2, "tasks on here", 2, {"search a": 100.0, "search b": 300.0}, out)
    display.started("search a")
    display.started("search b")
    display.event("0", "search a", "started")
    display.event("0", "search a", "round 1, 15 trainings")
    clock[0] += 40  # the first task took 40 s against 100 projected: the rest will take 0.4 x theirs
    display.finished("search a", failed=False)
    display.finished("search b", failed=True)
    display.close()
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in out.getvalue().splitlines()]
    assert lines == [
        "tasks on here: 2 tasks; about 5:00 left (cost model)",  # a on one worker, b on the other
        "worker 0: search a: started",
        "worker 0: search a: round 1, 15 trainings",
        "done 1/2: search a; about 1:20 left (cost model)",  # b: 300 x 0.4, less the 40 s it has run
        "failed 2/2: search b",  # nothing left
        "tasks on here: 2 of 2 tasks in 0:40",
    ]
    assert "\r" not in out.getvalue()


def test_the_eta_schedules_tasks_on_the_workers(clock):
    """Tasks wait for a free worker thread, and one task is not shared out: the ETA is the
    schedule's end, not the projected seconds over the workers."""
    display = monitor.Display(4, "tasks", 2, {"a": 60.0, "b": 600.0, "c": 300.0, "d": 300.0}, io.StringIO())
    assert display.eta() == "about 11:00 left (cost model)"  # a, c and d on one thread (660 s), b on the other
    display.started("a")
    display.started("b")
    clock[0] += 120  # a took 120 s against 60: everything takes twice its projection
    display.finished("a", failed=False)
    display.started("c")
    assert display.eta() == "about 20:00 left (cost model)"  # b: 1,200 - 120 = 1,080; c then d: 600 + 600
    clock[0] += 600
    display.finished("c", failed=False)
    display.started("d")
    assert display.eta() == "about 10:00 left (cost model)"  # b: 1,200 - 720 = 480; d: 600 (a and c: 720 for 360)
    clock[0] += 600
    display.finished("d", failed=False)
    assert display.eta() == "about 0:00 left (cost model)"  # b ran past its projection: no time left to show
    display.finished("b", failed=False)
    assert display.eta() == ""


def test_a_task_never_started_does_not_move_the_scale(clock):
    display = monitor.Display(3, "tasks", 1, {"search": 100.0, "transfer": 50.0, "other": 100.0}, io.StringIO())
    display.started("search")
    clock[0] += 300
    display.finished("search", failed=True)
    display.finished("transfer", failed=True)  # not run: the search it needs failed
    assert display.eta() == "about 5:00 left (cost model)"  # 100 x 3


def test_without_a_projection_no_eta():
    out = io.StringIO()
    display = monitor.Display(1, "tasks", 1, None, out)
    display.finished("a", failed=False)
    assert "left" not in out.getvalue() and "done 1/1: a\n" in out.getvalue()


def test_a_terminal_redraws_a_task_bar_and_a_line_per_worker(clock):
    out = Terminal()
    display = monitor.Display(2, "tasks on here", 2, {"a": 10.0, "b": 10.0}, out)
    display.event("0", "a", "round 3, 15 trainings")
    display.event("1", "b", "started")
    display.event("0", "a", "round 4, 15 trainings")
    display.finished("a", failed=False)
    display.close()
    text = out.getvalue()
    assert "worker 0: a: round 4, 15 trainings" in text and "worker 1: b: started" in text
    assert "1/2" in text and "left (cost model)" in text
    assert "\r" in text and not re.search(r"^\[\d\d:\d\d:\d\d\]", text, re.MULTILINE)  # redrawn, not logged
