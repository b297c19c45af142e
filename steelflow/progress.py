"""Progress for long loops: Rich bars on a terminal; under DVC, CI or a pipe no bars (their control
characters leave blank lines in a log), only plain lines that stay, such as one per training epoch.

Every bar draws on one console, so an inner bar (a training epoch's) nests under an outer one (the tuning
study's trials) instead of fighting it for the same lines."""

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
_consoles: list[Console] = []


def _console() -> Console:
    """The one console the bars share (made on first use: after the CLI has set up stderr)."""
    if not _consoles:
        _consoles.append(Console(stderr=True))
    return _consoles[0]


def set_bars(enabled: bool) -> None:
    """Turn progress bars off where several processes share one terminal (parallel tuning workers)."""
    _enabled["bars"] = enabled


def bars() -> bool:
    """Bars only where someone watches a terminal (stderr, where they draw), and not when turned off."""
    return _enabled["bars"] and sys.stderr.isatty()


def track(items: Sequence[T] | Iterable[T], description: str) -> Iterator[T]:
    if not bars():
        yield from items
        return
    yield from _rich_track(items, description=description, transient=True, console=_console())


def echo(line: str) -> None:
    """A line that stays on screen and in logs (an epoch's loss and accuracy), on stderr beside the bars.
    Quiet too when bars are turned off: parallel tuning workers print one line per trial instead."""
    if _enabled["bars"]:
        print(line, file=sys.stderr, flush=True)


def say(line: str) -> None:
    """A line that stays, on stderr, always: one per tuning trial, also from parallel workers (whose
    epoch lines :func:`echo` keeps quiet)."""
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def overall(description: str, total: int) -> Iterator[Callable[[int, str], None]]:
    """A ``done(n, description)`` callback for the whole of a long job (a study's trials): a Rich bar on a
    terminal, above the bars of each part; elsewhere nothing, as the parts' own lines (:func:`say`) say
    how far it is."""
    if not bars():
        yield lambda n, text: None
        return
    with Progress(transient=True, console=_console()) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n, text: bar.update(task, completed=n, description=text)


@contextlib.contextmanager
def counter(description: str, every: float = 0.1) -> Iterator[Callable[[int, int], None]]:
    """A ``done(n, total)`` callback: a Rich bar on a terminal; plain lines (each ``every`` of the way)
    under DVC, CI or a pipe, where a bar's control characters would clutter the log."""
    if bars():
        with Progress(transient=True, console=_console()) as bar:
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
