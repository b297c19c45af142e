"""Kubeflow Pipelines: compile ``steel_defect_pipeline`` (and the drift watch's one-task pipeline, for a
recurring run: :mod:`pipelines.monitor`), run it locally with kfp.local, or submit it.

What ``steelflow pipeline compile | run --local | submit`` call. A run's params are a params file (plus
``dotted.key=value`` overrides), validated here before anything is compiled or sent.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from steelflow import config, paths, redact
from steelflow.config import Params
from steelflow.errors import PipelineError
from steelflow.tracking import run_name
from steelflow.tracking.pipeline import pipeline_run
from steelflow.workspace import params_json


@dataclasses.dataclass
class LocalRun:
    seconds: float
    run_dir: Path  # this run's folder under the local pipeline root: one folder per task
    data_valid: bool  # validate's answer; False skipped every later step
    gates_passed: bool | None  # the gate step's answer (None: not reached); False skipped register
    registered: str | None  # the version it registered (alias challenger)
    gates: str  # the gate table (Markdown), empty when the run stopped before the gate
    log: Path  # everything kfp.local and the tasks printed (run.log in the run's folder)
    mlflow_run_id: str  # the parent run every task's MLflow run nests under


class _TaskFailed(Exception):
    """A task of a local run failed: its message is kept, the parent run ends FAILED."""


def pipeline_for(params: Params, image_tag: str | None = None) -> tuple[Any, str]:
    """The pipeline for ``params``, and those params as the JSON text a run takes (its default argument).
    ``image_tag`` pins both images to a tag; ``git`` means ``<version>-<short git sha>``, the tag
    `make image` gives the images it builds beside the reusable ``<version>``."""
    from pipelines.steel_defect import define_pipeline

    text = params_json(params)
    return define_pipeline(params, text, _version() if image_tag == "git" else image_tag), text


def compile_pipeline(
    out: str | Path = paths.KFP_PACKAGE,
    params_path: str | Path = config.DEFAULT_PARAMS,
    overrides: Iterable[str] = (),
    image_tag: str | None = None,
) -> Path:
    """Write the pipeline's IR YAML to ``out`` (atomically)."""
    return _compile(config.load_params(params_path, list(overrides)), Path(out), image_tag)


def compile_monitor_pipeline(
    out: str | Path = paths.KFP_MONITOR_PACKAGE,
    params_path: str | Path = config.DEFAULT_PARAMS,
    overrides: Iterable[str] = (),
    image_tag: str | None = None,
) -> Path:
    """Write the drift watch's IR YAML to ``out`` (atomically): ``steelflow monitor`` as one task."""
    from kfp import compiler

    from pipelines.monitor import define_monitor_pipeline
    from steelflow import atomic

    params = config.load_params(params_path, list(overrides))
    tag = _version() if image_tag == "git" else image_tag
    pipeline = define_monitor_pipeline(params, params_json(params), tag)
    check_no_secrets(params)
    with atomic.atomic_path(Path(out)) as tmp:
        compiler.Compiler().compile(pipeline, str(tmp))
    return Path(out)


def check_shared_stores(params: Params) -> None:
    """Pods share no disk: tracking and the study must live on servers reached through the secrets, and
    the images in a bucket (or be generated).

    A ``sqlite:///`` store that no ``kubeflow.secrets`` entry replaces would give every pod its own file,
    so each tune worker would run a study of its own and the runs would vanish with the pods.
    """
    from steelflow.errors import ConfigError

    env = {name for secret in params.kubeflow.secrets for name in secret.env}
    stores = [("mlflow.tracking_uri", params.mlflow.tracking_uri, "MLFLOW_TRACKING_URI")]
    if params.tune is not None:
        stores.append(("tune.storage", params.tune.storage, "STEELFLOW_OPTUNA_STORAGE"))
    for key, url, variable in stores:
        if url.startswith("sqlite") and variable not in env:
            raise ConfigError(
                f"{key} is {url}, a file each Kubeflow pod would keep to itself: point it at a server, "
                f"or map {variable} from a secret in kubeflow.secrets"
            )
    source = params.data.source
    if not (params.data.is_synthetic or source.startswith("s3://")):
        raise ConfigError(
            f"data.source is the folder {source!r}, which Kubeflow pods cannot see: upload it to a bucket "
            "and use s3://bucket/prefix (e.g. --set data.source=s3://steelflow/NEU-CLS)"
        )


def check_no_secrets(params: Params) -> None:
    """kfp copies the params into the compiled file, which is uploaded and shared: a password in them (a
    URL's, or the value of a secret in this shell) is refused, naming the key but not the value. The
    environment's URLs never get there (they stay beside the tree); pods have theirs from the secrets."""
    from steelflow.errors import ConfigError

    leaks = [key for key, value in config.flatten_tree(params.raw()).items() if redact.tree(value) != value]
    if leaks:
        raise ConfigError(
            f"{', '.join(leaks)}: holds a password, which the compiled pipeline would carry in clear; "
            "keep it out of the params and map MLFLOW_TRACKING_URI / STEELFLOW_OPTUNA_STORAGE from a "
            "secret in kubeflow.secrets"
        )


def _compile(params: Params, out: Path, image_tag: str | None = None) -> Path:
    from kfp import compiler

    from steelflow import atomic

    pipeline, _ = pipeline_for(params, image_tag)
    check_shared_stores(params)
    check_no_secrets(params)
    with atomic.atomic_path(out) as tmp:
        compiler.Compiler().compile(pipeline, str(tmp))
    return out


def run_local(
    params_path: str | Path = config.DEFAULT_PARAMS,
    overrides: Iterable[str] = (),
    root: str | Path = paths.KFP_LOCAL,
    verbose: bool = False,
) -> LocalRun:
    """The whole pipeline through kfp.local's SubprocessRunner in this Python environment (no venv per task).

    Each task is a subprocess running its component exactly as a pod would; artifacts land under ``root``.
    The console gets one line per task (every line with ``verbose``); ``run.log`` in the run's folder all.
    """
    from kfp import local

    from pipelines.local_log import routed
    from steelflow.registry import Registry

    params = config.load_params(params_path, list(overrides))
    pipeline, text = pipeline_for(params)
    before = _challenger(Registry(params))
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    seen = set(root.iterdir())
    log = root / f".run-{os.getpid()}.log"  # into the run's folder once kfp has made it
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # kfp warns that a non-"python" image may not match this environment, and that GPU settings are
        # ignored locally: both expected here.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        # kfp's local runner swaps builtins.print for an indented one around each task; tasks of a
        # ParallelFor run in threads and put them back out of order, leaving this process's print indented
        own_print = builtins.print
        failure = None
        # one MLflow parent run holding the params; every task's run nests under it (MLFLOW_RUN_ID, which
        # the tasks' subprocesses inherit)
        tree = params.raw()
        parent = pipeline_run(params.mlflow, tree, run_name(tree, "pipeline"), {"kfp.runner": "local"})
        try:
            with parent as parent_id, routed(log, verbose) as stream, loop_inputs_kept():
                try:
                    pipeline(params=text, overrides=[])
                except RuntimeError as e:
                    failure = (_plain(str(e)), *stream.failed(str(e)))
                    raise _TaskFailed from None  # the parent run ends FAILED; reported below
        except _TaskFailed:
            pass
        finally:
            builtins.print = own_print
    seconds = time.perf_counter() - started
    new = sorted((p for p in set(root.iterdir()) - seen if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if new:
        log = log.replace(new[-1] / "run.log")
    if failure is not None:
        raise PipelineError(_failed(*failure, log))
    if not new:
        raise PipelineError(f"the local run wrote nothing under {root}")
    run_dir = new[-1]
    after = _challenger(Registry(params))
    gates = run_dir / "gate" / "gates"
    return LocalRun(
        seconds=seconds,
        run_dir=run_dir,
        data_valid=bool(_answer(run_dir, "validate")),
        gates_passed=_answer(run_dir, "gate"),
        registered=after if after != before else None,
        gates=gates.read_text() if gates.is_file() else "",
        log=log,
        mlflow_run_id=parent_id,
    )


def _failed(message: str, task: str | None, tail: list[str], log: Path) -> str:
    """The error of a failed local run: the failed task's last lines, then one line saying so."""
    if task is None:
        return f"local pipeline run failed: {message}; every task's output is in {log}"
    shown = "".join(f"\n    {line}" for line in tail[-12:] if line)
    return (
        f"task {task!r} failed{':' if shown else ''}{shown}\n"
        f"local pipeline run failed at task {task!r}; every task's output is in {log}"
    )


@contextlib.contextmanager
def loop_inputs_kept() -> Iterator[None]:
    """Work around kfp 2.17's local runner, which hands a ParallelFor the loop item in place of every task
    output parameter the loop reads, not only its items (``create_parameter_loop_iteration_task_spec``):
    ingest's parts, whose loop sits at the top of the graph beside ``settings``, would get a part's key as
    their params. While a local run lasts, the loop's other inputs are put back as the compiled pipeline
    has them (a cluster's driver resolves them right; ``test_kfp_local_runner_still_needs_the_loop_fix``
    says when this can go)."""
    from kfp.local.orchestrator import task_spec_utils

    original = task_spec_utils.create_parameter_loop_iteration_task_spec

    def iteration(task_spec: Any, loop_item: Any, loop_task_name: str) -> Any:
        spec = original(task_spec, loop_item, loop_task_name)
        items = task_spec.parameter_iterator.items.input_parameter
        for key, given in task_spec.inputs.parameters.items():
            if key != items and given.HasField("task_output_parameter"):
                spec.inputs.parameters[key].CopyFrom(given)
        return spec

    task_spec_utils.create_parameter_loop_iteration_task_spec = iteration
    try:
        yield
    finally:
        task_spec_utils.create_parameter_loop_iteration_task_spec = original


def submit(
    host: str,
    params_path: str | Path = config.DEFAULT_PARAMS,
    overrides: Iterable[str] = (),
    experiment: str | None = None,
    run_name: str | None = None,
) -> dict[str, str]:
    """Upload the compiled pipeline to the Kubeflow Pipelines server at ``host`` and start a run of it.

    The pipeline ``steel-defect-pipeline`` is created on the first upload; every later upload adds a version
    named ``<steelflow version>-<git sha>-<time>``, so the UI lists what ran when. Returns the run's id,
    experiment, pipeline version and URL.
    """
    import kfp
    from kfp_server_api.exceptions import ApiException

    from pipelines.steel_defect import NAME

    params = config.load_params(params_path, list(overrides))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="steelflow-kfp-") as tmp:
        package = str(_compile(params, Path(tmp) / "pipeline.yaml"))
        experiment = experiment or params.kubeflow.experiment  # compiling checked the section is there
        version_name = f"{_version()}-{stamp}"
        doing = "the connection"
        try:
            with warnings.catch_warnings():  # "this client only works with KFP v2.0.0-beta.2 and later"
                warnings.simplefilter("ignore", FutureWarning)
                client = kfp.Client(host=host)
            doing = f"the experiment {experiment!r}"
            experiment_id = client.create_experiment(experiment).experiment_id  # found, or created
            doing = "the pipeline upload"
            pipeline_id = client.get_pipeline_id(NAME)
            if pipeline_id is None:  # the first upload makes the pipeline and its first version
                pipeline_id = client.upload_pipeline(package, pipeline_name=NAME).pipeline_id
                first = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
                version_id = first.pipeline_versions[0].pipeline_version_id
            else:
                uploaded = client.upload_pipeline_version(package, version_name, pipeline_id=pipeline_id)
                version_id = uploaded.pipeline_version_id
            doing = "the run"
            run = client.run_pipeline(
                experiment_id,
                run_name or f"steelflow {stamp}",
                pipeline_id=pipeline_id,
                version_id=version_id,
                params={"params": params_json(params), "overrides": []},
            )
        except ApiException as e:
            body = (e.body or "").strip()[:500] if isinstance(e.body, str) else str(e.body)[:500]
            raise PipelineError(
                f"Kubeflow Pipelines at {host} refused {doing}: HTTP {e.status} {e.reason}: {body}"
            ) from None
        except Exception as e:
            if not _unreachable(e):
                raise
            raise PipelineError(
                f"Kubeflow Pipelines at {host} is unreachable ({type(e).__name__}: {str(e)[:300]}); "
                "check --host (e.g. http://localhost:8080 after `kubectl port-forward`)"
            ) from None
    return {
        "run_id": run.run_id,
        "experiment": experiment,
        "pipeline_version": version_id,
        "url": redact.redact(f"{host.rstrip('/')}/#/runs/details/{run.run_id}"),
    }


def _version() -> str:
    """``<steelflow version>-<short git sha>``: what a pipeline version is named after (and the images)."""
    from importlib.metadata import PackageNotFoundError, version

    from steelflow.tracking import git_state

    try:
        release = version("steelflow")
    except PackageNotFoundError:
        release = "dev"
    return f"{release}-{git_state()['git_commit'][:7]}"


def _answer(run_dir: Path, task: str) -> bool | None:
    """The value a task returned (validate and gate return whether to go on), or None if it did not run."""
    import json

    output = run_dir / task / "executor_output.json"
    if not output.is_file():
        return None
    return json.loads(output.read_text()).get("parameterValues", {}).get("Output")


def _challenger(reg) -> str | None:
    from steelflow.registry import CHALLENGER

    version = reg.alias(CHALLENGER)
    return None if version is None else str(version.version)


def _unreachable(e: BaseException) -> bool:
    import requests
    import urllib3

    chain = [e, e.__cause__, e.__context__]
    kinds = (urllib3.exceptions.HTTPError, requests.exceptions.ConnectionError, ConnectionError, TimeoutError)
    return any(isinstance(x, kinds) for x in chain)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
