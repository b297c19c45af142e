"""`steelflow server`: a team MLflow tracking server — PostgreSQL for runs and the registry, S3 for artifacts,
MLflow's basic-auth app in front.

It is `mlflow server` with the settings a small machine wants: artifacts served through the server
(``--artifacts-destination``; clients need only ``MLFLOW_TRACKING_URI``, never S3 credentials), background
job execution off, one worker unless told otherwise. The server itself reads S3 credentials and endpoint from
its environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_S3_ENDPOINT_URL``), never from
files in this repository.

Authentication is on unless ``--insecure``: a registered model is models-from-code, so whoever can register a
version can make every loader of ``@champion`` run their Python. MLflow's ``basic-auth`` app runs with
``default_permission = READ`` (a new user can look, not register or promote); its users and grants live in
the backend store's database unless ``--auth-db-uri`` says otherwise (its tables, ``users``, ``roles``, ...
and ``alembic_version_auth``, are apart from the tracking store's). The admin's password comes from
``$STEELFLOW_MLFLOW_ADMIN_PASSWORD`` or a file (``--admin-password-file``,
``$STEELFLOW_MLFLOW_ADMIN_PASSWORD_FILE``) and reaches MLflow in its environment, never on a command line
(``/proc/*/cmdline`` is world-readable), in a file or in output; MLflow uses it only to create the admin on
the first start. The store URIs travel in the environment too, as they may hold a database password; the
generated auth settings file, which holds the auth database's URI, is mode 0600 in a private folder.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from steelflow.errors import ConfigError, OutputError

BACKEND_ENV = "STEELFLOW_MLFLOW_BACKEND_URI"  # e.g. postgresql+psycopg://mlflow@db:5432/mlflow
ARTIFACTS_ENV = "STEELFLOW_MLFLOW_ARTIFACTS"  # e.g. s3://steelflow/mlflow
ADMIN_PASSWORD_ENV = "STEELFLOW_MLFLOW_ADMIN_PASSWORD"
ADMIN_PASSWORD_FILE_ENV = "STEELFLOW_MLFLOW_ADMIN_PASSWORD_FILE"  # e.g. /run/secrets/mlflow-admin
AUTH_DB_ENV = "STEELFLOW_MLFLOW_AUTH_DB_URI"  # default: the backend store's database
DEFAULT_PERMISSION = "READ"  # what a user holds on what nobody granted them: look, never register or promote
MIN_PASSWORD = 12  # MLflow refuses shorter ones, after the server has started
SQL_DIALECTS = ("postgresql", "mysql", "sqlite", "mssql")

INSECURE_WARNING = (
    "--insecure: this MLflow server has NO AUTHENTICATION. Anyone who reaches {url} can read, create and "
    "delete experiments and register or promote models, and a registered model is Python that every "
    "loader of @champion runs. Use it on your own laptop only; a team server runs without --insecure."
)


@dataclass(frozen=True)
class Auth:
    """The basic-auth app's settings: where its users live and who the first admin is."""

    database_uri: str
    admin_username: str
    admin_password: str = field(repr=False)
    config_path: Path | None = None  # where to write the settings file; None: a fresh private folder


@dataclass(frozen=True)
class Launch:
    """The `mlflow server` process to become: its arguments (no secret among them) and environment."""

    args: list[str]
    env: dict[str, str] = field(repr=False)


def admin_password(password_file: Path | None = None) -> str:
    """The admin's password from ``password_file``, ``$STEELFLOW_MLFLOW_ADMIN_PASSWORD_FILE`` or
    ``$STEELFLOW_MLFLOW_ADMIN_PASSWORD``, in that order; a trailing newline of a file is not part of it."""
    named = str(password_file) if password_file else os.environ.get(ADMIN_PASSWORD_FILE_ENV)
    if named:
        source = f"the file {named}"
        try:
            password = Path(named).read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"cannot read the MLflow admin password from {named}: {e.strerror}") from None
    else:
        source = f"${ADMIN_PASSWORD_ENV}"
        password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not password:
        raise ConfigError(
            f"no MLflow admin password: set {ADMIN_PASSWORD_ENV} (or {ADMIN_PASSWORD_FILE_ENV} or "
            f"--admin-password-file, naming a file that holds it); only a laptop server may run --insecure"
        )
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the MLflow admin password in {source} is shorter than {MIN_PASSWORD} characters")
    return password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_database(uri: str) -> bool:
    scheme = uri.partition("://")[0]
    return bool(uri.partition("://")[2]) and scheme.partition("+")[0] in SQL_DIALECTS


def plan(
    backend_uri: str | None,
    artifacts: str | None,
    host: str,
    port: int,
    workers: int,
    auth: Auth | None,
) -> Launch:
    """Check the settings and say what to run; with ``auth``, also write its settings file (mode 0600).

    ``auth`` None is ``--insecure``: refused unless ``host`` is a loopback address.
    """
    backend_uri = backend_uri or os.environ.get(BACKEND_ENV)
    artifacts = artifacts or os.environ.get(ARTIFACTS_ENV)
    if not backend_uri:
        raise ConfigError(f"no backend store: pass --backend-store-uri or set {BACKEND_ENV}")
    if not artifacts:
        raise ConfigError(f"no artifact store: pass --artifacts-destination or set {ARTIFACTS_ENV}")
    if auth is None and not is_loopback(host):
        raise ConfigError(
            f"--insecure serves without authentication, so only on a loopback host (127.0.0.1, ::1, "
            f"localhost), not {host}: leave out --insecure and set {ADMIN_PASSWORD_ENV}"
        )
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    args = [mlflow, "server", "--host", host, "--port", str(port), "--workers", str(workers)]
    env = dict(os.environ)
    for secret in (ADMIN_PASSWORD_ENV, "MLFLOW_AUTH_ADMIN_PASSWORD"):
        env.pop(secret, None)
    # read by `mlflow server` itself (its options' environment variables): off the command line
    env["MLFLOW_BACKEND_STORE_URI"] = backend_uri
    env["MLFLOW_ARTIFACTS_DESTINATION"] = artifacts
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # ~0.5 GB instead of a job runner
    if auth is not None:
        database_uri = auth.database_uri or backend_uri
        if not _is_database(database_uri):
            raise ConfigError(
                f"the backend store {backend_uri} is not a database, so it cannot hold the server's users: "
                f"pass --auth-db-uri (or set {AUTH_DB_ENV}), e.g. sqlite:///mlflow-auth.db"
            )
        args += ["--app-name", "basic-auth"]
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(write_auth_config(auth, database_uri))
        env["MLFLOW_AUTH_ADMIN_USERNAME"] = auth.admin_username
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = auth.admin_password  # read once: creates the admin if absent
        # Signs the sign-up page's CSRF token; one per start is enough, as every worker inherits it.
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    return Launch(args, env)


def write_auth_config(auth: Auth, database_uri: str) -> Path:
    """The basic-auth app's settings file (MLFLOW_AUTH_CONFIG_PATH), readable by its owner only; it holds the
    auth database's URI, which may carry that database's password, and never the admin's password."""
    if any(c in database_uri for c in "\r\n"):
        raise ConfigError("the auth database URI holds a line break")
    path = auth.config_path or Path(tempfile.mkdtemp(prefix="steelflow-mlflow-auth-")) / "basic_auth.ini"
    text = (
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = {database_uri.replace('%', '%%')}\n"  # configparser's interpolation
        f"admin_username = {auth.admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as out:
            out.write(text)
    except OSError as e:
        raise OutputError(f"cannot write the MLflow auth settings to {path}: {e.strerror}") from None
    return path


def serve(
    backend_uri: str | None,
    artifacts: str | None,
    host: str,
    port: int,
    workers: int,
    auth: Auth | None,
    warn: Callable[[str], None],
) -> None:
    """Replace this process with the MLflow server (so signals reach it directly); without ``auth``, ``warn``
    first that it is open to anyone who reaches it."""
    launch = plan(backend_uri, artifacts, host, port, workers, auth)
    if auth is None:
        warn(INSECURE_WARNING.format(url=f"http://{host}:{port}"))
    os.execve(launch.args[0], launch.args, launch.env)
