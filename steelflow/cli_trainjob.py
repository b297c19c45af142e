"""``steelflow trainjob``: the train task as a Kubeflow Trainer TrainJob (:mod:`steelflow.trainjob`).

``run`` is what each of the job's pods runs; ``manifest`` prints the job the launcher would submit, to read
or to check against a cluster (``| kubectl apply --dry-run=server -f -``).
"""

from __future__ import annotations

from typing import Annotated

import typer
import yaml

from steelflow import config
from steelflow.console import ParamsOpt, SetOpt, out
from steelflow.console import guard as _step
from steelflow.console import load as _params

trainjob_app = typer.Typer(
    help="The train task as a Kubeflow Trainer TrainJob on GPU nodes (kubeflow.trainer in params).",
    no_args_is_help=True,
)


@trainjob_app.command("run")
@_step
def trainjob_run(
    url: Annotated[str, typer.Argument(help="the job's s3://.../<job> folder (inputs/, outputs/ below it)")],
    command: Annotated[list[str], typer.Argument(help="after --: the torchrun line to run")],
    attempts: Annotated[int, typer.Option(help="attempts per S3 request")] = 5,
) -> None:
    """In a TrainJob pod: pull the inputs, run the torchrun line there, push rank 0's outputs."""
    from steelflow.trainjob.exchange import run_in_pod

    code = run_in_pod(url, command, attempts)
    if code:
        raise typer.Exit(code)


@trainjob_app.command("manifest")
@_step
def trainjob_manifest(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    run_id: Annotated[str, typer.Option("--run-id", help="the pipeline run it belongs to")] = "",
) -> None:
    """Print the TrainJob the launcher would submit for these params (YAML)."""
    from steelflow.trainjob import manifest

    p = _params(params, set_)
    job = manifest.build(p, manifest.job_name(run_id), pipeline_run=run_id)
    out.print(yaml.safe_dump(job, sort_keys=False), markup=False, highlight=False, end="")
