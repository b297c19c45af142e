"""A project-shaped folder for running one step away from the project: how a Kubeflow component calls a step.

A DVC stage runs a step in the project root, where every input sits at its path in :mod:`steelflow.paths`.
A Kubeflow component gets artifact folders instead. Every artifact steelflow passes is laid out as a slice of
the project root (the ``splits`` artifact holds ``data/splits/*.csv``, ``reports/split.json`` and the
shard sets ``data/cache/splits/<split>/``), so a component

1. opens a :class:`Workspace` with the run's params and links its input artifacts into it,
2. calls the step function exactly as ``steelflow <step>`` does (the workspace is the working directory),
3. copies the outputs the step wrote into its output artifacts (:meth:`Workspace.keep`).

:func:`run_component` is those three moves for any step, driven by its declaration: every generated
component (:mod:`components`) is one call to it.

The step cannot tell the difference, which is what makes a Kubeflow run and ``dvc repro`` the same
experiment. Relative ``sqlite:///`` URIs (MLflow, Optuna) are made absolute against the folder the
component was started in, so a local run tracks into the project's ``mlflow.db`` as ``dvc repro`` does.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from steelflow import config, paths, redact, steps
from steelflow.config import Params, scalar_metrics
from steelflow.data import shards
from steelflow.errors import DataError
from steelflow.runs import step_run
from steelflow.step import Produces
from steelflow.tracking import git_state, scoped_environ, tracking_uri

_SQLITE = "sqlite:///"


class Workspace:
    """A temporary project root holding links to the input artifacts; the current directory while open."""

    def __init__(self, root: Path, params: Params):
        self.root = root
        self.params = params

    def keep(self, artifact: str | Path, *outputs: str | Path) -> None:
        """Copy ``outputs`` (project-relative paths the step wrote) into the artifact folder ``artifact``."""
        for rel in outputs:
            src, dst = self.root / rel, Path(artifact) / rel
            if not src.exists():
                raise DataError(f"the step wrote no {rel} (expected in the artifact {artifact})")
            _copy(src, dst)

    def log_metrics(self, metrics: Any, output: str | Path) -> None:
        """Every number of a metrics JSON the step wrote onto a KFP ``Metrics`` artifact."""
        for name, value in scalar_metrics(self.root / output).items():
            metrics.log_metric(name, value)

    def produce(self, out: Produces, artifact: Any, outputs: tuple[Path, ...], result: Any) -> None:
        """Fill one output artifact as the step's declaration says (:class:`steelflow.step.Produces`)."""
        if out.kind == "Metrics":
            numbers = (
                scalar_metrics(self.root / out.metrics) if out.metrics else getattr(result, "metrics", {})
            )
            for metric, value in numbers.items():
                artifact.log_metric(metric, value)
        elif out.page is not None and out.page.suffix == ".png":
            png_page(self.root / out.page, artifact.path, out.title or out.page.stem)
        elif out.page is not None:
            self.copy(out.page, artifact.path)
        else:
            self.keep(artifact.path, *(out.keep or outputs))

    def copy(self, output: str | Path, target: str | Path) -> None:
        """Copy one output (a file, or a folder such as the Data Docs site) to be the artifact ``target``."""
        _copy(self.root / output, Path(target))


def _copy(src: Path, dst: Path) -> None:
    """A file or a whole folder, to ``dst`` (its parents are made). A shard set found there already is
    replaced whole: files of two writes of one set never mix."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        for index in src.rglob(shards.INDEX):
            old = dst / index.parent.relative_to(src)
            if shards.exists(index.parent) and old.is_dir():
                shutil.rmtree(old)
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def run_component(name: str, arguments: dict[str, Any], phase: str = "") -> Any:
    """Run step ``name`` as its Kubeflow component: ``arguments`` are the component's (``params``, its
    input and output artifacts by name, a fan-out worker's index, a part's key); ``phase`` is ``start``,
    ``worker`` or ``finish`` for a step that fans out, ``plan``, ``part`` or ``merge`` for a step cut into
    parts. Returns the component's output value (the step's answer, or the list a ParallelFor runs over)."""
    step = steps.get(name)
    inputs = [arguments[a].path for a in step.consumes if a in arguments]
    inputs += [part.path for part in arguments.get("parts", ())]  # the fan-in: every part's files
    options = {o.name: o.kfp for o in step.options if o.kfp is not None}
    label = " ".join(filter(None, (name, phase, str(arguments.get("key", arguments.get("worker", ""))))))
    with (
        workspace(arguments["params"], inputs=inputs) as ws,
        step_run(step, ws.params, options, label) as record,  # under a pipeline's parent run
    ):
        result = _run_phase(step, ws, arguments, phase, options)
        if phase in ("plan", "part", "start", "worker"):
            return result
        for line in step.lines(result) if result is not None else ():
            print(line)
        for out in step.produces:
            ws.produce(out, arguments[out.name], step.outputs, result)
        record(result)
    return step.answer(result) if step.answer else None


def _run_phase(
    step: Any, ws: Workspace, arguments: dict[str, Any], phase: str, options: dict[str, Any]
) -> Any:
    """One phase of a step in its workspace (see :func:`run_component`): a plan's keys, a fan-out's worker
    indices, nothing for a part or a worker, else the step's result."""
    name = step.name
    fan, parts = step.fan_out, step.parts
    if phase == "plan":
        return list(parts.keys(*step.arguments(ws.params)))
    if phase == "part":
        written = parts.part(*step.arguments(ws.params), arguments["key"])
        ws.keep(arguments["part"].path, *written)
        return None
    if phase == "start":
        ref = fan.start(*step.arguments(ws.params))
        ref.save(arguments["study"].path)
        return ref.worker_indices()
    if phase == "worker":
        fan.work(fan.load(arguments["study"].path), arguments["worker"])
        return None
    if phase == "finish":
        result = fan.finish(*step.arguments(ws.params), fan.load(arguments["study"].path))
    elif phase == "merge":
        sections = step.arguments(ws.params)
        result = parts.merge(*sections, parts.keys(*sections))
    elif phase == "trainjob":  # the step runs elsewhere: a Kubeflow Trainer TrainJob (kubeflow.trainer)
        from steelflow.trainjob import launch

        print(*launch(ws.params, arguments["pipeline_run"], arguments["image"]).lines(), sep="\n")
        result = None  # what the step would have written is in the workspace now; the artifacts follow
    else:
        refusal = (step.refusal,) if step.refusal else ()
        try:
            result = step.call(ws.params, **options)
        except refusal as e:  # an answer, not a failure: the graph's condition acts on it
            print(f"{name}: {e}")
            result = None
    return result


def run_monitor(arguments: dict[str, Any]) -> bool:
    """The drift watch as its Kubeflow task (``components/monitor.py``): :func:`steelflow.monitor.check` on
    the folder ``batch`` against the reference file ``reference`` (each a path the pod sees, a mounted
    volume, or ``s3://``: downloaded first), with ``model`` (empty: the champion). Fills ``verdict`` (every
    statistic, threshold and ``drifted`` as metrics) and ``report`` (drift.html); returns whether it drifted.
    A drifted batch with ``fail_on_drift`` raises the CLI's exit-15 error instead, so the task fails (and
    kfp keeps no artifact of a failed task: the MLflow run holds both files)."""
    from steelflow.data import s3
    from steelflow.monitor import check

    with workspace(arguments["params"], arguments.get("overrides") or ()) as ws:
        p, cfg = ws.params, ws.params.monitor
        batch = arguments["batch"]
        if s3.is_s3(batch):
            folder = ws.root / "incoming"
            s3.download(batch, folder, p.data.s3_retries, p.predict.outside_links)
            batch = folder
        reference, target = arguments["reference"], ws.root / cfg.reference
        if s3.is_s3(reference):
            s3.get(reference, target, p.data.s3_retries)
        elif not Path(reference).is_file():
            raise DataError(f"{reference}: no reference file here (write it with --build-reference)")
        else:
            _copy(Path(reference), target)
        outcome = check(p, Path(batch), arguments.get("model") or None, use_model=True, tracked=True)
        print(*outcome.warnings, *outcome.lines(), sep="\n")
        verdict = arguments["verdict"]
        verdict.log_metric("drifted", float(bool(outcome.drifted)))
        for name, m in outcome.result["measures"].items():
            verdict.log_metric(f"{name}.statistic", m["statistic"])
            verdict.log_metric(f"{name}.threshold", m["threshold"])
            verdict.log_metric(f"{name}.drifted", float(m["drifted"]))
        _copy(outcome.html_path, Path(arguments["report"].path))
        if outcome.drifted and arguments["fail_on_drift"]:
            raise outcome.alarm()
        return bool(outcome.drifted)


@contextlib.contextmanager
def workspace(
    params_text: str, overrides: Iterable[str] = (), inputs: Iterable[str] = ()
) -> Iterator[Workspace]:
    """Open a workspace: params from ``params_text`` (+ ``dotted.key=value`` overrides), ``inputs`` linked in.

    Bad params fail here, naming the key, before any input is touched.
    """
    redact.install()  # a Kubeflow step's own process: MLflow's run links, logs and tracebacks redacted
    launch = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="steelflow-step-") as tmp:
        root = Path(tmp)
        params_file = root / config.DEFAULT_PARAMS
        params_file.write_text(params_text)
        params = config.load_params(params_file, list(overrides))
        for artifact in inputs:
            link_tree(Path(artifact), root)
        with scoped_environ(_environment(params, launch)):
            params = config.parse_params(params.raw(), source=str(params_file))  # with the URLs made absolute
            try:
                os.chdir(root)
                yield Workspace(root, params)
            finally:
                os.chdir(launch)


def link_tree(artifact: Path, root: Path) -> int:
    """Hard-link every file under ``artifact`` to the same relative path under ``root``; returns the count.

    Hard links, not symlinks: a step sees plain files (MLflow refuses to log a symlink that points outside
    its folder), and nothing is copied unless the artifact lives on another file system. Steps replace
    their outputs by renaming, so an input is never written through its link. Artifacts merge: two of
    them may both fill ``data/cache/``; a file two artifacts share is linked once. A shard set
    (:mod:`steelflow.data.shards`) is one unit: linked whole from the first artifact that holds it, and two
    artifacts holding different sets at one path stop it, naming the path.
    """
    if not artifact.is_dir():
        raise DataError(f"input artifact {artifact} is not a folder laid out like the project root")
    n = 0
    sets: dict[Path, bool] = {}  # shard set folder in the artifact → link its files (not already there)
    for src in sorted(artifact.rglob("*")):
        if src.is_dir():
            continue
        dst = root / src.relative_to(artifact)
        if src.parent not in sets and shards.exists(src.parent):
            sets[src.parent] = _link_set(src.parent, dst.parent, dst.parent.relative_to(root))
        if not sets.get(src.parent, True):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:  # another file system
                shutil.copy2(src, dst)
            n += 1
    return n


def _link_set(src: Path, dst: Path, rel: Path) -> bool:
    """Whether to link the shard set ``src`` to ``dst``: not when another artifact brought the same set."""
    if not dst.exists():
        return True
    if shards.exists(dst) and shards.digest(dst) == shards.digest(src):
        return False
    raise DataError(f"two input artifacts hold different shard sets at {rel} (one of them {src})")


def params_json(params: Params) -> str:
    """Validated params as the one-line JSON a pipeline run carries.

    JSON is YAML, so a workspace reads it as a params file; one line, because kfp copies a parameter's
    default into a comment at the top of the compiled YAML, and a multi-line default would break it.
    """
    return json.dumps(params.raw())


def absolute_sqlite(url: str, base: Path) -> str:
    """``sqlite:///mlflow.db`` → ``sqlite:////abs/base/mlflow.db``; any other URL is returned as it is."""
    if url.startswith(_SQLITE) and not url.startswith(_SQLITE + "/"):
        return _SQLITE + str((base / url.removeprefix(_SQLITE)).resolve())
    return url


def _environment(params: Params, launch: Path) -> dict[str, str]:
    """Tracking and study URLs that still point at the launch folder once the step runs elsewhere."""
    env = {"MLFLOW_TRACKING_URI": absolute_sqlite(tracking_uri(params.mlflow), launch)}
    if params.tune is not None:
        env[paths.OPTUNA_STORAGE_ENV] = absolute_sqlite(params.tune.effective_storage, launch)
    if not os.environ.get("STEELFLOW_GIT_COMMIT"):  # tags say which commit ran, as under `dvc repro`
        state = git_state(launch)
        env |= {"STEELFLOW_GIT_COMMIT": state["git_commit"], "STEELFLOW_GIT_DIRTY": state["git_dirty"]}
    return env


def png_page(png: str | Path, target: str | Path, title: str) -> None:
    """A one-picture HTML page (the PNG inlined), which the Kubeflow UI renders for an HTML artifact."""
    data = base64.b64encode(Path(png).read_bytes()).decode()
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>\n"
    )
