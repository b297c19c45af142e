"""Atomic writes: every output appears whole or not at all.

A step writes into a temporary sibling and renames it into place, so a failure (bad input, Ctrl-C, a
killed worker) leaves the previous output intact and never a half-written one. A folder that cannot be
written (read-only, not ours) or a full disk becomes an :class:`~steelflow.errors.OutputError` naming the
output, not an ``OSError`` traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steelflow.errors import OutputError

# What an unwritable output folder or a full disk raises (EACCES, EPERM only when about the output itself).
_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    Works for files and directories alike: the caller creates whatever it likes at the yielded path.
    On an exception the temporary is removed and ``target`` is left untouched.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
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
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
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
