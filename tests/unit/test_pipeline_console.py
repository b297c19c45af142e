"""What `steelflow pipeline run --local` shows: one line per task, all of kfp.local's output in run.log.

kfp.local's own lines are written here as it writes them (its log format and colour codes, tasks of a
ParallelFor in threads at once); the whole run is tests/integration/test_kfp_local.py.
"""

from __future__ import annotations

import builtins
import io
import logging
import sys
import threading

from pipelines import _failed
from pipelines.local_log import TaskLog, routed

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def kfp_task(name: str, lines: list[str], state: str = "SUCCESS") -> None:
    """What kfp.local prints for one task: its log records, then the subprocess's lines written in two
    writes each (its indenting print), then the end, with its outputs. Written to ``sys.stdout`` directly,
    not through ``print``, which a kfp run earlier in the process may have left indented."""
    colour = GREEN if state == "SUCCESS" else RED
    out = sys.stdout
    out.write(f"05:20:50.523 - INFO - Executing task {CYAN}'{name}'{RESET}\n")
    out.write("05:20:50.523 - INFO - Streamed logs:\n\n")
    for line in lines:
        out.write("    ")
        out.write(line + "\n")
    if state == "SUCCESS":
        out.write(
            f"05:20:52.858 - INFO - Task {CYAN}'{name}'{RESET} finished with status {colour}{state}{RESET}\n"
        )
        out.write(
            f"05:20:52.859 - INFO - Task {CYAN}'{name}'{RESET} outputs:\n    Output: '{{\"big\": 1}}'\n"
        )


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_each_task_is_one_line_and_the_log_holds_every_line_without_colour(tmp_path, monkeypatch):
    console = io.StringIO()
    monkeypatch.setattr(sys, "stdout", console)
    log = tmp_path / "run.log"
    with routed(log) as stream:
        kfp_task("settings", ["settings: params checked"])
        workers = [
            threading.Thread(
                target=kfp_task, args=("tune-worker", [f"trial {i} of worker {w}" for i in range(50)])
            )
            for w in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        logging.getLogger().info("Skipping conditional task condition-3 (condition evaluated to False)")
    lines = console.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["settings", "SUCCESS"]] + [
        ["tune-worker", "SUCCESS"]
    ] * 4
    assert all(line.split()[-1] == "s" for line in lines)
    text = log.read_text()
    assert "\x1b" not in text and "'settings' finished with status SUCCESS" in text
    for w in range(4):  # every line of every thread whole, though they ran at once
        assert all(f"    trial {i} of worker {w}\n" in text for i in range(50))
    assert "Skipping conditional task condition-3" in text
    assert [t.name for t in stream.tasks] == ["settings", *["tune-worker"] * 4]
    assert sys.stdout is console  # stdout is the console's again


def test_verbose_shows_every_line_coloured_only_on_a_terminal(tmp_path):
    for console, coloured in ((io.StringIO(), False), (FakeTerminal(), True)):
        stream = TaskLog(io.StringIO(), console, verbose=True)
        stream.write(f"Task {CYAN}'split'{RESET} finished with status {GREEN}SUCCESS{RESET}\n")
        assert ("\x1b[" in console.getvalue()) is coloured
        assert "finished with status" in console.getvalue()


def test_a_failed_task_ends_the_console_with_its_last_lines_and_the_failure(tmp_path, monkeypatch):
    console = io.StringIO()
    monkeypatch.setattr(sys, "stdout", console)
    log = tmp_path / "run.log"
    with routed(log) as stream:
        kfp_task("split", ["split: start"])
        kfp_task("train", ["epoch 1/2", "Traceback (most recent call last):", "ValueError: bad"], "FAILURE")
        error = f"Task {CYAN}'train'{RESET} finished with status {RED}FAILURE{RESET}"
        task, tail = stream.failed(error)
    assert task == "train" and tail[-1] == "ValueError: bad"
    assert [line.split()[:2] for line in console.getvalue().splitlines()] == [
        ["split", "SUCCESS"],
        ["train", "FAILURE"],
    ]
    message = _failed(error, task, tail, log)
    assert "ValueError: bad" in message and message.splitlines()[-1].startswith("local pipeline run failed")
    assert str(log) in message.splitlines()[-1]


def test_a_failure_inside_a_parallel_for_names_the_inner_task(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with routed(tmp_path / "run.log") as stream:
        kfp_task("tune-worker", ["optuna.exceptions.StorageInternalError: locked"], "FAILURE")
        task, tail = stream.failed(
            "Pipeline 'steel-defect-pipeline' finished with status FAILURE. "
            "Inner task failed: 'tune-worker' inside 'for-loop-2'."
        )
    assert task == "tune-worker" and "StorageInternalError" in tail[-1]
    assert "tune-worker" in sys.stdout.getvalue() and "FAILURE" in sys.stdout.getvalue()


def test_the_root_logger_is_put_back(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    with routed(tmp_path / "run.log"):
        root.handlers = [logging.StreamHandler(sys.stdout)]  # what a kfp task leaves when out of order
    assert (root.handlers, root.level) == before


def test_print_is_put_back_though_kfps_threads_restore_it_out_of_order(tmp_path, monkeypatch):
    """Two ParallelFor tasks enter kfp's indenting print in one order and leave in the other: without
    the routing's own restore, every later print in the process is indented."""
    from kfp.local import logging_utils

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    first_in, second_in, first_left = threading.Event(), threading.Event(), threading.Event()

    def task(first: bool) -> None:
        if not first:
            first_in.wait()  # enters second: keeps the first task's indenting print as "original"
        with logging_utils.indented_print():
            if first:
                first_in.set()
                second_in.wait()
            else:
                second_in.set()
                first_left.wait()  # leaves last: puts back the first task's indenting print
        if first:
            first_left.set()

    original = builtins.print
    with routed(tmp_path / "run.log"):
        threads = [threading.Thread(target=task, args=(first,)) for first in (True, False)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert builtins.print is not original  # what kfp alone leaves behind
    assert builtins.print is original
