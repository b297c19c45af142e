"""Atomic writes: an output appears whole or not at all, and a killed writer's leftovers do not pile up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from steelflow import atomic

# A writer that stages a 2 MB file for TARGET and then waits in the middle of its write, as a training
# saving its checkpoint does when it is killed.
WRITER = """
import sys, time
from pathlib import Path
from steelflow import atomic
with atomic.atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"x" * 2_000_000)
    print("staged", flush=True)
    time.sleep(60)
"""


def _start_writer(target: Path) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "staged"
    return writer


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def test_a_killed_writers_temporary_is_removed_by_the_next_write_and_a_live_ones_is_not(tmp_path):
    target = tmp_path / "checkpoint.pt"
    killed = _start_writer(target)
    left = _temporaries(tmp_path)
    assert len(left) == 1 and str(killed.pid) in left[0].name, left
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _temporaries(tmp_path) == left, "SIGKILL leaves the temporary behind (the bug this guards)"

    # a dead writer's temporary of another output, and a hidden file of the user's: neither is ours to remove
    other = tmp_path / f".checkpoint.pt.old.{atomic._host()}-{killed.pid}-abcd_123.tmp"
    other.mkdir()
    hidden = tmp_path / ".checkpoint.pt.notes"
    hidden.write_text("not steelflow's")

    live = _start_writer(target)
    try:
        (live_tmp,) = (p for p in _temporaries(tmp_path) if str(live.pid) in p.name)
        atomic.write_text(target, "the next run's checkpoint")

        assert target.read_text() == "the next run's checkpoint"
        assert not left[0].exists(), "the killed writer's temporary is still there"
        assert live_tmp.exists() and (live_tmp / target.name).stat().st_size == 2_000_000, "live one removed"
        assert other.exists() and hidden.exists()
    finally:
        live.kill()
        live.wait()


def test_a_temporary_whose_writer_cannot_be_checked_is_removed_only_once_it_is_a_day_old(tmp_path):
    target = tmp_path / "checkpoint.pt"
    no_such_pid = 2**22 + 7
    unknown = {  # named before writers were recorded; written on another host (its pid means nothing here)
        "legacy": tmp_path / ".checkpoint.pt.k3j_x9a2.tmp",
        "other host": tmp_path / f".checkpoint.pt.someotherhost-{no_such_pid}-abcd_123.tmp",
    }
    for folder in unknown.values():
        folder.mkdir()
        (folder / target.name).write_bytes(b"x" * 1000)

    atomic.write_text(target, "new")
    assert all(folder.exists() for folder in unknown.values()), "removed while it may still be written"

    two_days_ago = time.time() - 2 * 24 * 3600
    for folder in unknown.values():
        os.utime(folder, (two_days_ago, two_days_ago))
    atomic.write_text(target, "newer")
    assert not any(folder.exists() for folder in unknown.values()), "a day-old leftover is still there"
