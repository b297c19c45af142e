"""How long steelflow waits on a tracking server that does not answer: the one retry scheme of its MLflow
clients (a step's run, :class:`steelflow.registry.Registry`, tune's study run), built on tenacity.

A call is tried, and while the server is unreachable (:func:`unreachable`: told by the error's type, not
its words) tried again after ``backoff_seconds``, doubling, ``retries`` times; every request inside waits
``timeout_seconds`` at most for an answer, so a server that hangs is bounded as one that is gone. MLflow's
own HTTP retries are off inside (:meth:`RetryBudget.requests`), so this is the whole wait.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import requests
import tenacity

from steelflow.config import MlflowConfig
from steelflow.errors import ServerUnreachable

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RetryBudget:
    """``retries`` tries more while the server is unreachable, ``backoff_seconds`` apart and doubling, each
    request bounded by ``timeout_seconds``: :attr:`worst_case_seconds` in all, 47 s with the defaults of
    ``mlflow.*`` (a refused connection fails at once: 7 s). MLflow's own retries (7 by default, about four
    minutes) are off inside."""

    retries: int
    backoff_seconds: float
    timeout_seconds: int

    @classmethod
    def of(cls, cfg: MlflowConfig, retries: int | None = None, backoff: float | None = None) -> RetryBudget:
        """``mlflow.*``'s budget (the registry passes its own ``retries`` and ``backoff_seconds``)."""
        return cls(
            retries=cfg.retries if retries is None else retries,
            backoff_seconds=cfg.backoff_factor if backoff is None else backoff,
            timeout_seconds=cfg.timeout_seconds,
        )

    @property
    def worst_case_seconds(self) -> float:
        return (self.retries + 1) * self.timeout_seconds + self.backoff_seconds * (2**self.retries - 1)

    def requests(self) -> contextlib.AbstractContextManager[None]:
        """MLflow's HTTP settings for the calls inside: no retries of its own, ``timeout_seconds`` per
        request."""
        return mlflow_http(retries=0, backoff_factor=0, timeout=self.timeout_seconds)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)``, retried while the server is unreachable; an answer from the server (no such
        version, a refused request) passes through at once. :class:`ServerUnreachable` when it stays away."""
        started = time.monotonic()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(unreachable),
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds),  # backoff × 1, 2, 4…
        )
        try:
            with self.requests():
                return retrying(fn, *args, **kwargs)
        except tenacity.RetryError as e:
            error = e.last_attempt.exception()
            raise ServerUnreachable(
                f"gave up after {self.retries} retries in {time.monotonic() - started:.0f} s "
                f"({_reason(error, self.timeout_seconds)})"
            ) from None


def mlflow_http(retries: int, backoff_factor: float, timeout: int) -> contextlib.AbstractContextManager[None]:
    """MLflow's own HTTP settings (retries, backoff, request timeout) for the calls inside, restored after.

    MLflow reads them from the environment at every request and takes them from nowhere else, so they are
    set there, but scoped rather than process-wide: :class:`RetryBudget` turns MLflow's retries off only
    around the calls it retries itself."""
    return scoped_environ(
        {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(int(backoff_factor)),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
        }
    )


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Environment variables set for the code inside, and each put back as it was after (unset if it was):
    steelflow's one way to change the environment for a while."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def bound_mlflow_requests() -> None:
    """Bound MLflow's own HTTP retries and request time-out process-wide to the defaults of ``mlflow.*``
    (unless the environment sets them): for the calls no :class:`RetryBudget` wraps, such as loading a
    model in ``predict``. MLflow's defaults (7 retries, 120 s a request) wait for minutes."""
    fields = MlflowConfig.model_fields
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(fields["retries"].default))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(int(fields["backoff_factor"].default)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(fields["timeout_seconds"].default))


_CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable(e: BaseException) -> bool:
    """A connection failure or time-out anywhere in the error's chain. MLflow wraps requests' errors in
    an ``MlflowException`` (``raise ... from`` or implicitly while handling), so the cause is what tells
    "the server is not there" from "the server said no"."""
    return any(isinstance(c, _CONNECTION_ERRORS) for c in _chain(e))


def _reason(e: BaseException | None, timeout: int) -> str:
    """Why the last try failed, in a few words: the socket's own error, or the time-out."""
    for c in _chain(e) if e is not None else ():
        if isinstance(c, requests.exceptions.Timeout | TimeoutError):
            return f"no answer within {timeout} s"
        if isinstance(c, OSError) and c.strerror:
            return c.strerror
    return type(e).__name__
