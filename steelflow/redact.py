"""The one rule that keeps passwords out of what steelflow prints, logs and records.

:func:`redact` hides, anywhere inside a text (a whole URL, an exception message, a log line, a traceback):

- the password of every URL that has one (``scheme://user:password@host`` → ``scheme://user:***@host``),
  encoded or not, with any characters but white space and quotes;
- the literal values of the secrets this process was given: every environment variable whose name says
  it is one (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``: ``MLFLOW_TRACKING_PASSWORD``,
  ``MLFLOW_TRACKING_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``STEELFLOW_MLFLOW_ADMIN_PASSWORD``…) and the
  password of every URL in the environment (``MLFLOW_TRACKING_URI``, ``STEELFLOW_OPTUNA_STORAGE``…), as
  given, URL-encoded and decoded, when at least :data:`MIN_SECRET` characters long (a shorter one would
  hide ordinary words).

:func:`install` applies it where steelflow does not write the line itself: MLflow's run links, Python
logging, warnings and the tracebacks of uncaught exceptions. The CLI calls it first thing, and so does
every Kubeflow step (:func:`steelflow.workspace.workspace`). Low in the import graph: the standard library
only.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
MIN_SECRET = 8  # a secret value shorter than this is hidden inside URLs only

# scheme://[user]:password@ inside a text. The password may hold anything but white space, quotes,
# brackets and "/" (which ends the host; "http://host:80/@me" has none); an unencoded "@" in it is read
# up to the URL's last "@", as SQLAlchemy and urllib read it.
_STOP = r"\s'\"<>()\[\]{}"
_URL_PASSWORD = re.compile(
    rf"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^{_STOP}:/@]*:)"
    rf"(?P<password>[^{_STOP}/]*?)"
    rf"(?=@[^{_STOP}@]*(?:[{_STOP}]|$))@"
)
# ...and of a whole URL (an environment variable's value), whose password may hold a "/" (SQLAlchemy's
# reading): a secret found here is hidden wherever its value appears.
_WHOLE_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*:(?P<password>.*)@[^@]*$")
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY", re.IGNORECASE)
# variables whose name matches but whose value is no secret
_NOT_SECRET = {"MLFLOW_TRACKING_INSECURE_TLS"}


def redact(text: str) -> str:
    """``text`` with every URL's password and every known secret value replaced by ``***``."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + "@" if m["password"] else m[0], text)
    for secret in secret_values():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def hide_password(value: Any) -> Any:
    """A string through :func:`redact`; anything else as it is (for a params value of any type)."""
    return redact(value) if isinstance(value, str) else value


def tree(value: Any) -> Any:
    """Every string in a tree of dicts, lists and tuples through :func:`redact` (keys too)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {tree(k): tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(tree(v) for v in value)
    return value


def url_password(url: str) -> str | None:
    """The password of a URL, as written in it (``None`` when it has none)."""
    found = _URL_PASSWORD.search(url)
    return found["password"] if found and found["password"] else None


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of the environment, longest first (so a secret inside another goes with it)."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    # by name, then .get: another thread (MLflow's telemetry) may remove a variable while we read them
    for name in list(environ):
        value = environ.get(name)
        if not value:
            continue
        if _SECRET_NAME.search(name) and name not in _NOT_SECRET:
            found.add(value)
        whole = _WHOLE_URL_PASSWORD.match(value.strip())
        if whole and whole["password"]:
            found.add(whole["password"])
        found.update(m["password"] for m in _URL_PASSWORD.finditer(value) if m["password"])
    forms = {form for s in found for form in (s, unquote(s), quote(s, safe=""))}
    return sorted((s for s in forms if len(s) >= MIN_SECRET), key=len, reverse=True)


class RedactFilter(logging.Filter):
    """A logging filter that redacts a record's message, its arguments and its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        self.redact(record)
        return True

    @staticmethod
    def redact(record: logging.LogRecord) -> logging.LogRecord:
        try:
            message = record.getMessage()
        except Exception:  # a bad format: logging reports it when the record is emitted
            return record
        clean = redact(message)
        if clean != message:  # untouched otherwise: formatters such as uvicorn's read record.args
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record


_installed: dict[str, Any] = {}


def install() -> None:
    """Apply :func:`redact` to what others print in this process (idempotent):

    - MLflow's own run and experiment links (printed when a run ends, the tracking URI and its password
      in them) are turned off; :class:`steelflow.tracking.MlflowTracker` prints its link redacted;
    - every log record, through :class:`RedactFilter` at the record factory: a filter on handlers would
      miss those made later (MLflow makes its own when imported), one on a logger its children's records;
    - warnings, and the traceback of an uncaught exception (what ``--debug`` shows), in any thread.
    """
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # inherited by workers and kfp tasks
    # set each time: Typer puts its own hook in place whenever the app is called
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    if _installed:
        return
    make_record = logging.getLogRecordFactory()
    redacting = RedactFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redacting.redact(make_record(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed["format_warning"] = warnings.formatwarning
    warnings.formatwarning = _format_warning


def _format_warning(
    message: Any, category: type[Warning], filename: str, lineno: int, line: Any = None
) -> str:
    return redact(_installed["format_warning"](message, category, filename, lineno, line))


def _excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))
    sys.stderr.flush()


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    sys.stderr.write(f"Exception in thread {name}:\n")
    _excepthook(args.exc_type, args.exc_value, args.exc_traceback)
