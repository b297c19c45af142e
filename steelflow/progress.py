"""Progress bars for long loops (Rich), quiet when output is not a terminal unless asked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

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
