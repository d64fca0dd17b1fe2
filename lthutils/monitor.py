"""What a cluster's tasks are doing, shown as one display on the client.

Training code says what it starts through Python logging (the logger `LOG`: a stack of
trainings of one round); nothing is shown in a plain process. On a Dask worker, `forwarded` sends
those records, and the task's start, to the client as Dask events (topic TOPIC), and the
worker's own progress bars are off. The client's `Display` is the one view: in a terminal, a
bar over the tasks with an ETA from the cost model and one line per worker with its task and
current round, redrawn in place; elsewhere (a log file, a notebook's captured output) one plain
line per event. A notebook that `run-all` runs from a terminal draws in place too: run-all
relays its output there and says so through the environment (LIVE).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from tqdm import tqdm

TOPIC = "lthutils-progress"
LOG = logging.getLogger("lthutils.progress")
LIVE = "LTHUTILS_LIVE_DISPLAY"  # "1": draw in place although the stream is no terminal (a notebook run-all shows)


class _Forward(logging.Handler):
    def __init__(self, worker, task: str):
        super().__init__(logging.INFO)
        self.worker, self.task = worker, task

    def emit(self, record: logging.LogRecord) -> None:  # (Dask sets a message's "worker" to the worker's address)
        self.worker.log_event(TOPIC, {"name": str(self.worker.name), "task": self.task, "what": record.getMessage()})


@contextlib.contextmanager
def forwarded(task: str) -> Iterator[None]:
    """Inside a Dask task: LOG's records go to the client as events naming this worker and
    `task`, beginning with 'started'. Elsewhere: nothing changes."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not on a worker
        yield
        return
    handler, level = _Forward(worker, task), LOG.level
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    handler.emit(logging.makeLogRecord({"msg": "started"}))
    try:
        yield
    finally:
        LOG.removeHandler(handler)
        LOG.setLevel(level)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Display:
    """Tasks' progress for a person: `started` for a task handed to a worker, `event` for what a
    worker reports, `finished` for a task done. `projected`: each task's projected seconds by its
    description (cost.task_seconds), in the order they will be handed out, or None. The ETA
    schedules what is left on the workers as the client hands it out (a task holds one worker
    thread from start to end; the next waits for the first thread free): each running task for
    its projection less the time it has run, then the tasks not started, every projection scaled
    by how long the finished tasks took against theirs."""

    def __init__(self, total: int, title: str, workers: int, projected: dict[str, float] | None, stream: TextIO):
        self.total, self.title, self.workers, self.projected, self.stream = total, title, workers, projected, stream
        self.tty = stream.isatty() or os.environ.get(LIVE) == "1"
        self.done, self.began = 0, time.monotonic()
        self.running: dict[str, float] = {}  # task -> when it started
        self.took, self.finished_projected = 0.0, 0.0  # the finished tasks' seconds, and their projection's
        self.lines: dict[str, tqdm] = {}
        self.bar = tqdm(total=total, desc=title, file=stream, mininterval=1.0, disable=not self.tty, position=0)
        if self.tty and projected:
            self.bar.set_postfix_str(self.eta())
        if not self.tty:
            self._print(f"{title}: {total} tasks" + (f"; {self.eta()}" if projected else ""))

    def eta(self) -> str:
        """'about H:MM:SS left (cost model)', or '' without a projection or with nothing left."""
        if not self.projected:
            return ""
        scale = self.took / self.finished_projected if self.finished_projected > 0 else 1.0
        now = time.monotonic()
        running = [
            max(0.0, seconds * scale - (now - self.running[task]))
            for task, seconds in self.projected.items()
            if task in self.running
        ]
        free = sorted(running + [0.0] * max(0, self.workers - len(running)))  # when each worker thread frees up
        for task, seconds in self.projected.items():
            if task not in self.running:
                heapq.heapreplace(free, free[0] + seconds * scale)
        return f"about {_clock(max(free))} left (cost model)"

    def _print(self, line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=self.stream, flush=True)

    def started(self, task: str) -> None:
        """`task` (its description) is handed to a worker thread."""
        self.running[task] = time.monotonic()

    def event(self, worker: str, task: str, what: str) -> None:
        """`worker` (its name) reports `what` of `task`."""
        if not self.tty:
            self._print(f"worker {worker}: {task}: {what}")
            return
        if worker not in self.lines:
            self.lines[worker] = tqdm(
                total=0, file=self.stream, position=len(self.lines) + 1, bar_format="{desc}", leave=False
            )
        self.lines[worker].set_description_str(f"  worker {worker}: {task}: {what}")

    def finished(self, task: str, failed: bool) -> None:
        """`task` (its description) is over, run or not."""
        self.done += 1
        projected = self.projected.pop(task, 0.0) if self.projected else 0.0
        if task in self.running:  # a task never started (its search failed) says nothing of the projection
            self.took += time.monotonic() - self.running.pop(task)
            self.finished_projected += projected
        eta = self.eta()
        if not self.tty:
            self._print(
                f"{'failed' if failed else 'done'} {self.done}/{self.total}: {task}" + (f"; {eta}" if eta else "")
            )
            return
        self.bar.set_postfix_str(eta, refresh=False)
        self.bar.update()

    def close(self) -> None:
        for line in self.lines.values():
            line.close()
        self.bar.close()
        if not self.tty:
            self._print(f"{self.title}: {self.done} of {self.total} tasks in {_clock(time.monotonic() - self.began)}")


def stream() -> TextIO:
    """Where the display goes: stdout in a notebook's kernel (its stderr shows as an error box), else stderr."""
    in_kernel = type(sys.stdout).__module__.startswith("ipykernel")
    return sys.stdout if in_kernel else sys.stderr
