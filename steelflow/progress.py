"""Progress bars for long loops (Rich), quiet when output is not a terminal unless asked."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import Progress
from rich.progress import track as _rich_track

T = TypeVar("T")


_enabled = {"bars": True}


def set_bars(enabled: bool) -> None:
    """Turn progress bars off where several processes share one terminal (parallel tuning workers)."""
    _enabled["bars"] = enabled


def track(items: Sequence[T] | Iterable[T], description: str) -> Iterator[T]:
    if not _enabled["bars"]:
        yield from items
        return
    yield from _rich_track(items, description=description, transient=True)


@contextlib.contextmanager
def counter(description: str, every: float = 0.1) -> Iterator[Callable[[int, int], None]]:
    """A ``done(n, total)`` callback: a Rich bar on a terminal; plain lines (each ``every`` of the way)
    under DVC, CI or a pipe, where a bar's control characters would clutter the log."""
    if sys.stderr.isatty() and _enabled["bars"]:
        with Progress(transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task(description, total=None)
            yield lambda n, total: bar.update(task, completed=n, total=total)
        return
    printed = {"next": 0}

    def done(n: int, total: int) -> None:
        if n >= printed["next"] or n == total:
            print(f"{description}: {n}/{total} files", file=sys.stderr, flush=True)
            step = max(1, int(total * every))
            printed["next"] = (n // step + 1) * step

    yield done
