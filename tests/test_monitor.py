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
    display.event("0", "search a", "started")
    display.event("0", "search a", "round 1, 15 trainings")
    clock[0] += 40  # the first task took 40 s against 100 projected: the rest will take 0.4 x theirs
    display.finished("search a", failed=False)
    display.finished("search b", failed=True)
    display.close()
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in out.getvalue().splitlines()]
    assert lines == [
        "tasks on here: 2 tasks; about 3:20 left (cost model)",  # 400 s over 2 workers
        "worker 0: search a: started",
        "worker 0: search a: round 1, 15 trainings",
        "done 1/2: search a; about 2:00 left (cost model)",  # 300 x 40 x 2 / 100 / 2
        "failed 2/2: search b",  # nothing left
        "tasks on here: 2 of 2 tasks in 0:40",
    ]
    assert "\r" not in out.getvalue()


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
