"""Atomic writes: every output appears whole or not at all.

A step writes into a temporary sibling and renames it into place, so a failure (bad input, Ctrl-C, a
killed worker) leaves the previous output intact and never a half-written one. A folder that cannot be
written (read-only, not ours) or a full disk becomes an :class:`~steelflow.errors.OutputError` naming the
output, not an ``OSError`` traceback.

A process killed outright (SIGKILL, the OOM killer, an evicted pod) cannot remove its temporary sibling:
the next write of the same output does. The sibling's name carries its writer,
``.NAME.HOST-PID-XXXXXXXX.tmp``, so only a dead writer's temporary is removed, never that of a writer still
at work beside us (one on another host, or named before writers were recorded, only once it is older than
:data:`STALE_AFTER_S`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steelflow.errors import OutputError

# What an unwritable output folder or a full disk raises (EACCES, EPERM only when about the output itself).
_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}

# A temporary whose writer cannot be checked (another host; a name from before writers were recorded) is
# left alone for this long: no step writes one output for a day.
STALE_AFTER_S = 24 * 3600
_RANDOM = r"[a-z0-9_]{8}"  # what tempfile.mkdtemp puts between prefix and suffix


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    Works for files and directories alike: the caller creates whatever it likes at the yielded path. The
    folder around it is this write's own and goes with it, so scratch files may be put beside it. On an
    exception the temporary is removed and ``target`` is left untouched. What killed writers of ``target``
    left behind is removed first (:func:`remove_stale`).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_writer()}-", suffix=".tmp", dir=target.parent))
    except OSError as e:
        _raise_if_output(e, target)
        raise
    staged = tmp / target.name
    try:
        yield staged
        if not staged.exists():
            raise FileNotFoundError(f"nothing was written to {staged} for {target}")
        _replace(staged, target)
    except OSError as e:
        _raise_if_output(e, target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale(target: str | Path) -> list[Path]:
    """Remove what killed writers of ``target`` left beside it (temporaries, a previous output moved aside);
    returns what was removed. A live writer's files are never touched."""
    target = Path(target)
    writer = r"(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)"
    legacy = rf"{_RANDOM}\.tmp|old-\d+"  # named before writers were recorded: judged by age
    left = re.compile(rf"^\.{re.escape(target.name)}\.(?:{writer}(?:-{_RANDOM}\.tmp|\.old)|{legacy})$")
    removed = []
    try:
        siblings = sorted(target.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        match = left.match(path.name)
        if match is None or not _abandoned(path, match["host"], match["pid"]):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


def _abandoned(path: Path, host: str | None, pid: str | None) -> bool:
    """Whether the writer that made ``path`` is gone: a dead process on this host, or (writer unknown or
    elsewhere) a file untouched for :data:`STALE_AFTER_S`."""
    if host == _host() and pid is not None:
        return int(pid) != os.getpid() and not _alive(int(pid))
    try:
        return time.time() - path.lstat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process, alive
        return True
    return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _writer() -> str:
    return f"{_host()}-{os.getpid()}"


def _raise_if_output(e: OSError, target: Path) -> None:
    """An OutputError when ``e`` means ``target`` cannot be written; nothing when it is about something else
    (a source file that cannot be read, say)."""
    if e.errno in _FULL:
        raise OutputError(f"cannot write {target}: {_FULL[e.errno]}") from None
    where = target.parent.resolve()
    involved = [Path(f).resolve() for f in (e.filename, e.filename2) if f]
    if e.errno in _DENIED and (not involved or any(where in (f, *f.parents) for f in involved)):
        folder = next((p for p in (target.parent, *target.parent.parents) if p.exists()), target.parent)
        raise OutputError(
            f"cannot write {target}: {folder} is not writable ({e.strerror}); make it writable or run "
            f"from a folder you can write to"
        ) from None


def _replace(src: Path, dst: Path) -> None:
    if dst.is_dir() and not dst.is_symlink():
        # A directory cannot be renamed over a non-empty one: move the old aside first, then drop it.
        old = dst.with_name(f".{dst.name}.{_writer()}.old")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")
