"""What kfp's local runner prints, routed: every line into the run's log file, one line per task to the user.

kfp.local writes to this process's stdout: its own log records (a handler it puts on the root logger for each
task, with colour codes), and every line of each task's subprocess (through ``print``). Tasks of a
ParallelFor run in threads at once, so their lines interleave; each thread's lines are taken whole and a
task is followed by the thread that runs it, from kfp's ``Executing task 'x'`` to its ``Task 'x' finished
with status S``.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import dataclasses
import io
import logging
import re
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
INNER = re.compile(r"Inner task failed: '([^']+)'")  # the pipeline's error: the innermost failed task first
TAIL = 40  # lines of a failed task's output kept for the error


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    state: str  # kfp's: SUCCESS or FAILURE
    seconds: float

    def line(self) -> str:
        return f"  {self.name:<16} {self.state:<8} {self.seconds:6.0f} s"


class TaskLog(io.TextIOBase):
    """A text stream for kfp.local's output: each whole line, colour codes removed, to ``log``; to
    ``console``, one line per task as it ends, or (``verbose``) every line, coloured only on a terminal."""

    def __init__(self, log: TextIO, console: TextIO, verbose: bool = False) -> None:
        self._log, self._console, self._verbose = log, console, verbose
        self._colour = verbose and console.isatty()
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}
        self._running: dict[int, tuple[str, float]] = {}  # thread → (task, start)
        self._tails: dict[str, collections.deque[str]] = {}  # task → its last lines
        self.tasks: list[Task] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            *lines, self._partial[thread] = (self._partial.get(thread, "") + text).split("\n")
            for line in lines:
                self._line(thread, line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._log.flush()
            self._console.flush()

    def close_lines(self) -> None:
        """Write out what each thread left without a newline."""
        with self._lock:
            for thread, rest in list(self._partial.items()):
                if rest:
                    self._line(thread, rest)
            self._partial.clear()
            self._log.flush()

    def failed(self, message: str) -> tuple[str | None, list[str]]:
        """The task kfp's error ``message`` names, ended as FAILURE, and its last lines of output."""
        plain = ANSI.sub("", message)
        match = FINISHED.search(plain) or INNER.search(plain)
        if match is None:
            return None, []
        with self._lock:
            self._end(match[1], "FAILURE")
        tail = textwrap.dedent("\n".join(self._tails.get(match[1], ()))).strip("\n")  # kfp's indent
        return match[1], tail.splitlines()

    def _line(self, thread: int, line: str) -> None:
        plain = ANSI.sub("", line)
        self._log.write(plain + "\n")
        if self._verbose:
            self._console.write((line if self._colour else plain) + "\n")
        if started := STARTED.search(plain):
            self._running[thread] = (started[1], time.monotonic())
            self._tails[started[1]] = collections.deque(maxlen=TAIL)
        elif finished := FINISHED.search(plain):
            self._end(finished[1], finished[2], thread)
        elif thread in self._running and plain.startswith(" "):  # the task's own lines: kfp indents them
            self._tails[self._running[thread][0]].append(plain.rstrip())

    def _end(self, name: str, state: str, thread: int | None = None) -> None:
        """Task ``name`` ended: the one this thread runs, or else (a failure reported elsewhere) the first
        running under that name."""
        if self._running.get(thread, ("",))[0] != name:
            thread = next((t for t, (n, _) in self._running.items() if n == name), None)
        if thread is None:
            return
        _, start = self._running.pop(thread)
        task = Task(name, state, time.monotonic() - start)
        self.tasks.append(task)
        if not self._verbose:
            self._console.write(task.line() + "\n")
            self._console.flush()


@contextlib.contextmanager
def routed(path: Path, verbose: bool = False) -> Iterator[TaskLog]:
    """While it lasts, this process's stdout and the root logger's records (kfp's INFO lines, the skipped
    tasks among them) go through a :class:`TaskLog` writing ``path``; the console (stdout as it was) gets
    one line per task, or all of them when ``verbose``. The root logger and ``print`` are put back as they
    were: kfp's tasks in threads restore both out of order (its indenting ``print`` would outlive the run)."""
    root = logging.getLogger()
    handlers, level, printer = root.handlers[:], root.level, builtins.print
    with path.open("w", encoding="utf-8") as log:
        stream = TaskLog(log, sys.stdout, verbose)
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(stream):
                yield stream
        finally:
            stream.close_lines()
            root.handlers, root.level, builtins.print = handlers, level, printer
