"""``steelflow pipeline``: compile, draw, run locally or submit the Kubeflow pipeline; ``steelflow repro``:
``dvc repro`` under one MLflow parent run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steelflow import config, paths
from steelflow.console import FLAG, ParamsOpt, SetOpt, VerboseOpt, load, out, state
from steelflow.console import guard as _step
from steelflow.console import warn as _warn
from steelflow.errors import ValidationFailed

pipeline_app = typer.Typer(
    help="The Kubeflow pipeline: compile it, run it locally (kfp.local), or submit it to a cluster.",
    no_args_is_help=True,
)


@pipeline_app.command("compile")
@_step
def pipeline_compile(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="IR YAML to write")] = paths.KFP_PACKAGE,
    monitor_output: Annotated[
        Path, typer.Option("--monitor-output", help="IR YAML of the drift watch (`steelflow monitor`)")
    ] = paths.KFP_MONITOR_PACKAGE,
    image_tag: Annotated[
        str | None,
        typer.Option(
            "--image-tag",
            help="pin both images to this tag; 'git' = <version>-<short git sha>, as `make image` tags them",
        ),
    ] = None,
) -> None:
    """Write the pipeline's IR YAML (upload it in the Kubeflow UI, or use `pipeline submit`), and the drift
    watch's (a one-task pipeline for a recurring run)."""
    from pipelines import compile_monitor_pipeline, compile_pipeline

    out.print(f"pipeline compile: {compile_pipeline(output, params, set_ or [], image_tag)}")
    watch = compile_monitor_pipeline(monitor_output, params, set_ or [], image_tag)
    out.print(f"pipeline compile: drift watch → {watch}")


@pipeline_app.command("diagram")
@_step
def pipeline_diagram(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write")] = paths.PIPELINE_DIAGRAM,
) -> None:
    """Draw the compiled pipeline's graph (tasks, conditions, the tuning fan-out, GPU steps) as a PNG."""
    import tempfile

    from pipelines import compile_pipeline
    from pipelines.diagram import draw

    with tempfile.TemporaryDirectory() as tmp:
        ir = compile_pipeline(Path(tmp) / "pipeline.yaml", params, set_ or [])
        out.print(f"pipeline diagram: {draw(ir, output)}")


@pipeline_app.command("run")
@_step
def pipeline_run(
    local: Annotated[
        bool, typer.Option("--local", metavar=FLAG, help="run with kfp.local in this environment")
    ] = False,
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    root: Annotated[Path, typer.Option(help="where kfp.local writes the artifacts")] = paths.KFP_LOCAL,
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole pipeline locally, each step a subprocess, ending with a registered challenger.
    One line per task (name, kfp's state, seconds); all they printed goes to run.log in the run's folder."""
    from pipelines import run_local

    if not local:
        raise config.ConfigError("`pipeline run` runs locally only: add --local, or use `pipeline submit`")
    result = run_local(params, set_ or [], root, verbose=verbose or state["verbose"])
    where = (
        f"in {result.seconds:.0f} s; artifacts in {result.run_dir}, every task's output in {result.log.name}"
        f", every task's MLflow run under run {result.mlflow_run_id}"
    )
    if not result.data_valid:
        docs = result.run_dir / "validate" / "data_docs" / "index.html"
        raise ValidationFailed(
            f"pipeline run: the data failed validation (see {docs}); nothing ran after it, {where}"
        )
    out.print(result.gates, markup=False, highlight=False)
    if not result.gates_passed:
        # a verdict, not a failure (registry.fail_on_gate=true fails the gate task instead)
        _warn(f"pipeline run: a gate failed, nothing registered, {where}")
        return
    out.print(f"pipeline run: registered version {result.registered} (@challenger) {where}")


@pipeline_app.command("submit")
@_step
def pipeline_submit(
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines API, e.g. http://localhost:8080")],
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    experiment: Annotated[
        str | None, typer.Option(help="Kubeflow experiment (default: kubeflow.experiment)")
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="name of the run")] = None,
) -> None:
    """Upload the compiled pipeline (as a new version) to a Kubeflow Pipelines server and start a run."""
    from pipelines import submit

    result = submit(host, params, set_ or [], experiment, run_name)
    run, where, version = result["run_id"], result["experiment"], result["pipeline_version"]
    out.print(
        f"pipeline submit: run {run} of pipeline version {version} in experiment {where}: {result['url']}"
    )


@_step
def repro(ctx: typer.Context) -> None:
    """`dvc repro` under one MLflow parent run (params.yaml's params): each stage's run nests under it.
    Arguments go to `dvc repro` (e.g. `steelflow repro -f train`)."""
    import subprocess
    import sys

    from steelflow.errors import PipelineError
    from steelflow.tracking import run_name
    from steelflow.tracking.pipeline import pipeline_run

    p = load(config.DEFAULT_PARAMS, None)
    tree = p.raw()
    with pipeline_run(p.mlflow, tree, run_name(tree, "repro"), {"dvc.command": "repro"}) as parent:
        out.print(f"repro: MLflow parent run {parent}; `{' '.join(['dvc', 'repro', *ctx.args])}`")
        code = subprocess.call([sys.executable, "-m", "dvc", "repro", *ctx.args])
        if code != 0:
            raise PipelineError(f"repro: `dvc repro` failed (exit {code}); the parent run {parent} is FAILED")
    out.print(f"repro: done; every stage that ran is a child of MLflow run {parent}")
