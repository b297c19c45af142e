"""`steelflow serve`: a registered model over HTTP — MLflow's own scoring server, with two limits it lacks.

The app is the one ``mlflow models serve`` runs (:func:`mlflow.pyfunc.scoring_server.init`: ``/invocations``,
``/ping``, ``/health``, ``/version``, the same request formats and answers), run by uvicorn in this process,
on 127.0.0.1 unless told otherwise. Around it:

- **a request-size limit** (``registry.serving.max_request_bytes``): FastAPI's own ``max_body_size``. A body
  whose ``Content-Length`` is over the limit is answered 413 without being read (a client that sends
  ``Expect: 100-continue``, as curl does for large bodies, never sends it); a body without one
  (``Transfer-Encoding: chunked``) is counted as it streams in and refused once past the limit, so the
  server never holds more than the limit of it.
- **error answers that never quote the request** (:class:`QuietErrors`): MLflow's answer to a body that is
  not JSON quotes the whole body back (a 50 MB request got a 50 MB answer), and its answer to a failed
  prediction quotes the data. An error answer is passed on only when its message is one short line; any
  other is replaced by a short message of our own, and a ``stack_trace`` is always dropped.

Reads ``registry.serving`` (the limit), ``registry.name`` (the default model) and ``mlflow`` (the registry).
The model's own checks (image size, pixels) stay in the pyfunc, which applies them wherever it is loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from steelflow.config import Params, ServingConfig
from steelflow.errors import ConfigError

Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

MAX_MESSAGE = 300  # characters of an error message passed on as it is
HELD = 64 * 1024  # bytes of an error answer read to judge it; a longer one is replaced unread
REQUEST = '{"dataframe_split": {"columns": ["image"], "data": [["<base64 of an image file>"]]}}'
_REPLACED_HEADERS = (b"content-length", b"content-type")
# uvicorn's own formatters read a record's arguments, which the redacting record factory
# (steelflow.redact) has already folded into the message: plain ones instead
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
# MLflow's "not JSON" message, JSON-encoded: JSONDecodeError('Expecting value: line 1 column 1 (char 0)')
_JSON_ERROR = re.compile(r"""JSONDecodeError\((?:'([^'\\]{1,160})'|\\?"([^"\\]{1,160})\\?")\)""")
_ERROR_CODE = re.compile(r'"error_code": ?"([A-Z_]{1,40})"')
_CODES = {404: "ENDPOINT_NOT_FOUND", 504: "DEADLINE_EXCEEDED"}  # (MLflow's names) for answers without one


def build_app(model: Any, max_request_bytes: int) -> Any:
    """MLflow's scoring app for the loaded pyfunc ``model``, refusing bodies over ``max_request_bytes``
    (413) and answering errors without quoting the request."""
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(model)
    # FastAPI's own request-body limit (FastAPI(max_body_size=...)); init() builds the app without one, and
    # the middleware stack that applies it is built on the first request, after this.
    if not hasattr(app, "max_body_size"):
        raise ConfigError(
            "this FastAPI has no request-body limit (max_body_size): install the locked versions "
            "(requirements.lock)"
        )
    app.max_body_size = max_request_bytes
    return QuietErrors(app, max_request_bytes)


def serve(
    params: Params,
    model_uri: str | None,
    host: str = "127.0.0.1",
    port: int = 5001,
    ready: Callable[[str], None] = print,
) -> None:
    """Load the model (a missing one is exit 7, as for ``predict``) and serve it until interrupted;
    ``ready`` gets one line saying where, before uvicorn starts."""
    import uvicorn

    from steelflow.serving.predict import default_model_uri, load_model

    uri = model_uri or default_model_uri(params)
    limit = (params.registry.serving if params.registry else ServingConfig()).max_request_bytes
    app = build_app(load_model(params, uri), limit)
    ready(f"serve: {uri} on http://{host}:{port}/invocations (request bodies up to {limit:,} bytes)")
    uvicorn.run(app, host=host, port=port, log_config=LOG_CONFIG)


class QuietErrors:
    """ASGI middleware: an error answer (status ≥ 400) goes out only as one short line, never quoting the
    request. At most :data:`HELD` bytes of an error answer are held; successful answers pass untouched."""

    def __init__(self, app: Any, max_request_bytes: int):
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        held: list[bytes] = []
        size = 0

        async def send_quietly(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            if size < HELD:
                held.append(body[: HELD - size])
            size += len(body)
            if message.get("more_body", False):
                return
            answer = quiet_answer(start["status"], b"".join(held), size <= HELD, self.max_request_bytes)
            kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in _REPLACED_HEADERS]
            length = str(len(answer)).encode()
            headers = [*kept, (b"content-type", b"application/json"), (b"content-length", length)]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": answer})

        await self.app(scope, receive, send_quietly)


def quiet_answer(status: int, head: bytes, whole: bool, max_request_bytes: int) -> bytes:
    """The JSON error answer to send instead of one that begins with ``head`` (``whole``: and ends there)."""
    text = head.decode("utf-8", "replace").strip()
    code, message = _error_of(text) if whole else (None, None)
    if status == 413:
        code = "REQUEST_TOO_LARGE"
        message = (
            f"the request body is larger than the {max_request_bytes:,} bytes this server accepts "
            "(registry.serving.max_request_bytes): send fewer images per request"
        )
    elif message is None or "\n" in message or len(message) > MAX_MESSAGE:
        message = _instead_of(text)
    if code is None:
        found = _ERROR_CODE.search(text[:200])
        code = found[1] if found else _CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return json.dumps({"error_code": code, "message": message}).encode()


def _error_of(text: str) -> tuple[str | None, str | None]:
    """(error_code, message) of a whole error answer: MLflow's JSON, FastAPI's ``detail``, or plain text."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None, text
    if not isinstance(answer, dict):
        return None, text
    message = answer.get("message", answer.get("detail"))
    code = answer.get("error_code")
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else text)


def _instead_of(text: str) -> str:
    """A short message for an error answer (beginning with ``text``) whose message may quote the request."""
    opening = text[:400]
    if "Ensure that input is a valid JSON" in opening:
        if "UnicodeDecodeError" in opening:
            return f"the request body is not UTF-8 text; send {REQUEST}"
        reason = _JSON_ERROR.search(opening)
        why = f" ({reason[1] or reason[2]})" if reason else ""
        return f"the request body is not valid JSON{why}; send {REQUEST}"
    withheld = "the full error is withheld: it may quote the request"
    return f"the request could not be used ({withheld}); send {REQUEST}"
