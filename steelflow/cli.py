"""``steelflow <step>``: the command line, one thin adapter per step.

Each command loads params.yaml (plus ``--set`` overrides) into the typed config, hands its sections to the
step function, and prints a one-line summary. No step logic lives here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from steelflow import config, paths, redact
from steelflow.cli_deploy import after_rollback, deploy
from steelflow.cli_monitor import monitor
from steelflow.cli_pipeline import pipeline_app, repro
from steelflow.cli_shards import shards_app
from steelflow.cli_trainjob import trainjob_app
from steelflow.console import FLAG, SHOWN, ParamsOpt, SetOpt, VerboseOpt, out, quiet, state
from steelflow.console import guard as _step
from steelflow.console import load as _params
from steelflow.console import warn as _warn
from steelflow.errors import SteelflowError


class _Steps(TyperGroup):
    """The commands, with one per step made from its declaration (:mod:`steelflow.step_commands`) when it is
    asked for: ``steelflow split`` imports the split step only, not the others' libraries."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from steelflow import steps

        return [*steps.names(), *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from steelflow import steps

        if name in steps.names():
            from steelflow.step_commands import command

            return command(steps.get(name))
        return super().get_command(ctx, name)


app = typer.Typer(
    cls=_Steps,
    help="steelflow: steel-surface images to a gated, robustness-checked model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", metavar=FLAG, help="show tracebacks")] = False,
    verbose: VerboseOpt = False,
) -> None:
    state["debug"] = debug
    quiet(verbose, debug)  # before any library is imported that warns when imported
    # before anything can print a URL: MLflow's run links, log records, warnings, --debug's tracebacks
    redact.install()
    # MLflow draws tqdm bars for every artifact download (register, promote, predict): noise in a step's
    # output, and control characters in a log. Set MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true to have them.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from steelflow.tracking import bound_mlflow_requests

    bound_mlflow_requests()  # MLflow calls outside steelflow's retry budget wait seconds, not minutes


@app.command()
@_step
def promote(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    version: Annotated[str | None, typer.Option(help="version number or alias (default: challenger)")] = None,
    force: Annotated[
        bool, typer.Option("--force", metavar=FLAG, help="promote even if a gate fails")
    ] = False,
    reason: Annotated[str, typer.Option(help="why (required with --force; recorded)")] = "",
) -> None:
    """Make a version the champion if it passes every gate in registry.gates (or with --force)."""
    from steelflow.registry import gate_table
    from steelflow.registry import promote as run

    result = run(_params(params, set_), version, force=force, reason=reason)
    out.print(gate_table(result.gates), highlight=False, markup=False)
    how = "FORCED past failing gates" if result.forced else "all gates passed"
    out.print(f"promote: version {result.version} is the champion ({how}; was {result.previous or 'none'})")


@app.command()
@_step
def rollback(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
) -> None:
    """Move 'champion' back to the version the current champion replaced."""
    from steelflow.registry import rollback as run

    p = _params(params, set_)
    was, now = run(p, reason=reason)
    out.print(f"rollback: champion {was} → {now}")
    after_rollback(p)  # a manifest written before serves a version that is no longer the champion


app.command()(deploy)
app.command()(monitor)


@app.command("relocate-artifacts")
@_step
def relocate_artifacts(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    old_root: Annotated[
        Path | None, typer.Option("--from", help="the project's old folder (default: found in the store)")
    ] = None,
) -> None:
    """After moving the project folder: point mlflow.db's artifact links at mlruns/ here."""
    from steelflow.tracking import relocate_artifacts as run

    old, new, changed = run(_params(params, set_).mlflow, old_root)
    if not changed:
        out.print(f"relocate-artifacts: artifacts already at {new}")
        return
    out.print(f"relocate-artifacts: {changed} artifact location(s) {old} → {new}")


params_app = typer.Typer(help="The params steps run with.", no_args_is_help=True)
app.add_typer(params_app, name="params")


@params_app.command("show")
@_step
def params_show(
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="print JSON for scripts")] = False,
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
) -> None:
    """The effective, validated params (params file, --set, environment, defaults) and where each value
    came from; passwords and secrets are hidden (steelflow/redact.py)."""
    import json

    rows = {key: (redact.tree(v), src) for key, (v, src) in _params(params, set_).sources().items()}
    if as_json:
        print(json.dumps({k: {"value": v, "source": s} for k, (v, s) in rows.items()}, indent=2, default=str))
        return
    width = max(map(len, rows), default=0)
    for key, (value, source) in rows.items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        out.print(f"{key:<{width}}  {shown}  # {source}", highlight=False, markup=False)


registry_app = typer.Typer(help="The model registry's records.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("history")
@_step
def registry_history(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="print JSON for scripts")] = False,
) -> None:
    """Every promotion, forced promotion and rollback, oldest first."""
    import json

    from rich.table import Column, Table

    from steelflow.registry import HISTORY_COLUMNS, history, history_rows

    records = history(_params(params, set_))
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(*(Column(n, no_wrap=n != "reason") for n in HISTORY_COLUMNS))
    for row in history_rows(records):
        table.add_row(*row)
    out.print(table)


@app.command()
@_step
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="image files or folders (relative to this folder)")],
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    model: Annotated[
        str | None, typer.Option(help="model URI (default: models:/<registry.name>@champion)")
    ] = None,
    out_path: Annotated[Path, typer.Option("--out", help="the rows: .csv, or .parquet")] = Path(
        "predictions.csv"
    ),
) -> None:
    """Classify images with a registered model: one row per file (its error if it has one) in a CSV or
    Parquet file; exit 13 when any file could not be classified."""
    from rich.table import Table

    from steelflow.progress import counter
    from steelflow.serving.predict import predict as run

    p = _params(params, set_)
    with counter("predict") as done:
        result = run(p, inputs, model, out_path, progress=done)
    if result.outside:
        shown = [f"{path} → {os.path.realpath(path)}" for path in result.outside[:SHOWN]]
        more = ", …" if len(result.outside) > SHOWN else ""
        _warn(
            f"predict: left out {len(result.outside)} link(s) pointing outside the folder given: "
            f"{', '.join(shown)}{more}"
        )
    frame = result.frame
    if len(frame) <= 50:
        table = Table("image", "class", "probability", "error")
        for _, row in frame.iterrows():
            prob = f"{row['p_' + row['label']]:.3f}" if row["label"] else ""
            table.add_row(row["path"], row["label"], prob, row["error"])
        out.print(table)
    ok = len(frame) - len(result.failed)
    out.print(f"predict: {ok} of {len(frame)} images classified, {len(result.failed)} failed → {out_path}")
    result.raise_for_failures()


@app.command()
@_step
def serve(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    model: Annotated[
        str | None, typer.Option(help="model URI (default: models:/<registry.name>@champion)")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 5001,
) -> None:
    """Serve a registered model over HTTP (MLflow's scoring server: POST /invocations), refusing request
    bodies over registry.serving.max_request_bytes (413) and never quoting a request in an error."""
    from steelflow.serving.http import serve as run

    run(_params(params, set_), model, host, port, ready=out.print)


@app.command("export-onnx")
@_step
def export_onnx(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    model: Annotated[
        str | None, typer.Option(help="model URI or a model.pt (default: models:/<name>@champion)")
    ] = None,
    out_path: Annotated[Path, typer.Option("--out", help="the ONNX file")] = paths.ONNX_MODEL,
) -> None:
    """Export the network to ONNX, check parity with PyTorch, and time both on the CPU (batch 1 and 32)."""
    from rich.table import Table

    from steelflow.serving.onnx_export import export_onnx as run

    report = run(_params(params, set_), model, out_path)
    table = Table("batch", "PyTorch ms/image", "ONNX Runtime ms/image", "speed-up")
    for batch, t in report["latency_ms_per_image"].items():
        table.add_row(batch, f"{t['pytorch']:.2f}", f"{t['onnxruntime']:.2f}", f"{t['speedup']:.2f}x")
    out.print(table)
    parity = report["parity"]
    out.print(
        f"export-onnx: {out_path}; max |logit diff| {parity['max_abs_logit_diff']:.1e} on "
        f"{parity['images']} test images (< {parity['tolerance']:.0e}) → {paths.ONNX_REPORT}"
    )


@app.command()
@_step
def server(
    backend_store_uri: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: $STEELFLOW_MLFLOW_BACKEND_URI)")
    ] = None,
    artifacts_destination: Annotated[
        str | None, typer.Option(help="s3://bucket/prefix (default: $STEELFLOW_MLFLOW_ARTIFACTS)")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to listen on (0.0.0.0 only behind TLS)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 5000,
    workers: Annotated[int, typer.Option(help="server worker processes")] = 1,
    admin_password_file: Annotated[
        Path | None,
        typer.Option(help="file holding the admin's password (default: $STEELFLOW_MLFLOW_ADMIN_PASSWORD)"),
    ] = None,
    admin_username: Annotated[str, typer.Option(help="the admin created on the first start")] = "admin",
    auth_db_uri: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of users and permissions (default: the backend store's database)"),
    ] = None,
    auth_config: Annotated[
        Path | None, typer.Option(help="where to write the auth settings, mode 0600 (default: a temp dir)")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", metavar=FLAG, help="no authentication: a laptop, loopback only")
    ] = False,
) -> None:
    """Start a team MLflow server: PostgreSQL runs and registry, S3 artifacts served through it, users and
    permissions (MLflow's basic-auth app) required unless --insecure."""
    from steelflow.server import AUTH_DB_ENV, Auth, admin_password, serve

    auth = None
    if not insecure:
        auth = Auth(
            database_uri=auth_db_uri or os.environ.get(AUTH_DB_ENV, ""),
            admin_username=admin_username,
            admin_password=admin_password(admin_password_file),
            config_path=auth_config,
        )
    serve(backend_store_uri, artifacts_destination, host, port, workers, auth, warn=_warn)


app.add_typer(pipeline_app, name="pipeline")
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(repro)
app.add_typer(trainjob_app, name="trainjob")
app.add_typer(shards_app, name="shards")


CheckOpt = Annotated[bool, typer.Option("--check", metavar=FLAG, help="exit 1 if it differs; write nothing")]


@app.command("dvc-yaml")
@_step
def dvc_yaml(check: CheckOpt = False) -> None:
    """Write dvc.yaml from the steps' declarations (STEP in steelflow/steps/<name>.py)."""
    from steelflow import contract

    target = Path("dvc.yaml")  # the project root, where DVC and every steelflow command run
    if check:
        if not target.is_file() or target.read_text() != contract.dvc_yaml():
            raise SteelflowError(f"{target} differs from the steps' declarations: run `steelflow dvc-yaml`")
        out.print(f"dvc-yaml: {target} matches the steps' declarations")
        return
    out.print(f"dvc-yaml: {contract.write_dvc_yaml(target)}")


@app.command()
@_step
def models(
    image_size: Annotated[int, typer.Option(help="input side, pixels")] = 300,
    classes: Annotated[int, typer.Option(help="number of classes")] = 6,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="print JSON for scripts")] = False,
) -> None:
    """List every model variant with its parameter count and FLOPs."""
    import json

    from steelflow.models.summary import describe_all

    try:
        rows = describe_all(image_size, classes)
    except ValueError as e:
        raise config.ConfigError(str(e)) from None
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"CASI-Net variants at {image_size}×{image_size}, {classes} classes")
    table.add_column("variant")
    table.add_column("params", justify="right")
    table.add_column("GFLOPs", justify="right")
    for row in rows:
        table.add_row(row["name"], f"{row['params']:,}", f"{row['flops'] / 1e9:.3f}")
    out.print(table)


@app.command()
@_step
def reproduce(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="folder for the tables and per-variant outputs")
    ] = (Path("reports/reproduce")),
    track: Annotated[
        bool, typer.Option("--track/--no-track", metavar=FLAG, help="one MLflow run per variant and regime")
    ] = True,
    training: Annotated[
        str, typer.Option("--training", help="both | clean (the paper's) | robust (train.robust on)")
    ] = "both",
) -> None:
    """Train and evaluate the four variants of the paper's Table 1, clean- and robust-trained →
    <out>/table1.md (ours vs the paper)."""
    from steelflow import runs
    from steelflow.reproduce import REGIMES
    from steelflow.reproduce import reproduce as run

    if training not in ("both", *REGIMES):
        raise config.ConfigError(f"--training {training!r}: expected both, clean or robust")
    regimes = REGIMES if training == "both" else (training,)
    p = _params(params, set_)
    result = run(p, out_dir, regimes=regimes, tracker_for=lambda name: runs.tracker(p, name, track))
    out.print(result.table)


@app.command()
@_step
def plots(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="folder of the page")] = Path("dvc_plots"),
):
    """`dvc plots show` with Vega inline: <out>/index.html draws with no network."""
    from steelflow.pages import plots_page

    out.print(f"plots: {plots_page(out_dir)}")


def main() -> None:
    app(prog_name="steelflow")


if __name__ == "__main__":
    sys.exit(main())
