"""A step, declared once beside its function: what it runs, reads, writes and needs.

Each ``steelflow/steps/<name>.py`` ends its entry function with ``STEP = Step(...)``. Everything that used
to repeat a step is generated from, or driven by, that one declaration (:func:`steelflow.steps.registry`
finds them):

- the CLI command ``steelflow <name>`` (:mod:`steelflow.cli`): ``--params``/``--set`` plus the step's
  :class:`Option` s, then the step's summary lines;
- its ``dvc.yaml`` stage (:mod:`steelflow.contract`): command, code deps, data inputs, params keys, outs,
  metrics, plots;
- its Kubeflow component (:mod:`components`): typed ``Input``/``Output`` artifacts from ``consumes`` and
  ``produces``, the function's answer as the task's output, and the task's runtime needs (GPU image and
  nodes, caching, retries, the fan-out of a study's workers, a data step's parts and their fan-in);
- the tests' parametrisation over steps.

The pipeline's graph (which artifact feeds which task, the conditions) stays hand-written in
``pipelines/steel_defect.py``: it is the pipeline's table of contents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

KINDS = ("Artifact", "Dataset", "Model", "Metrics", "HTML", "Markdown")  # kfp.dsl artifact types


@dataclasses.dataclass(frozen=True)
class Option:
    """A command-line option of one step beyond ``--params``/``--set``, passed to its function by name.

    ``flag`` is the option's spelling (default ``--<name>``; ``--x/--no-x`` for a switch). Under Kubeflow
    the function gets ``kfp`` instead (``None``: the function's own default).
    """

    name: str
    type: Any
    default: Any
    help: str
    flag: str = ""
    short: str = ""
    kfp: Any = None


@dataclasses.dataclass(frozen=True)
class Produces:
    """A Kubeflow output artifact of a step.

    ``keep`` are the project paths it carries (default: every output of the step); a ``Metrics`` artifact
    logs the scalars of the JSON file ``metrics``; an ``HTML``/``Markdown`` artifact is a copy of ``page``
    (a PNG becomes an HTML page titled ``title``).
    """

    name: str
    kind: str = "Artifact"
    keep: tuple[Path, ...] | None = None
    metrics: Path | None = None
    page: Path | None = None
    title: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"artifact {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")


@dataclasses.dataclass(frozen=True)
class FanOut:
    """A step run by many workers under Kubeflow: ``start`` (params → a reference saved as the ``study``
    artifact; its ``worker_indices()`` feed a ParallelFor), ``work(reference, index)`` in each worker pod,
    ``finish(params, reference)`` → the step's result."""

    start: Callable[..., Any]
    work: Callable[..., Any]
    finish: Callable[..., Any]
    load: Callable[[Path], Any]  # reads the reference back from its artifact


@dataclasses.dataclass(frozen=True)
class Parts:
    """A step whose work cuts into independent parts: under Kubeflow one pod per part, then one fan-in.

    ``keys(*sections)`` names the parts from the run's params (a ParallelFor runs one part per key);
    ``part(*sections, key)`` does one of them and returns the project paths it wrote (its pod keeps them in
    its ``part`` artifact); ``merge(*sections, keys)`` runs where every part's files are linked in (their
    artifacts gathered by ``dsl.Collected``), writes the step's outputs and returns its result. ``run``,
    what the DVC stage and the CLI call in one process, writes the same outputs as every ``part`` and then
    ``merge``: the tests hold the two to it, byte for byte.
    """

    keys: Callable[..., list[str]]
    part: Callable[..., Iterable[Path]]
    merge: Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the pipeline (paths are project-relative)."""

    name: str
    run: Callable[..., Any]  # the entry function
    help: str  # one line: what the command does and writes (`steelflow --help`)
    # params sections passed to ``run`` positionally, in this order; "params": the whole tree (a step
    # that records the whole tree in MLflow, or trains variants of it)
    sections: tuple[str, ...]
    inputs: tuple[Path, ...] = ()  # data the step reads (its code deps come from its import chain)
    params: tuple[str, ...] = ()  # dotted keys or whole sections it reads (dvc.yaml's params)
    outs: tuple[Path, ...] = ()  # cached outputs
    # outputs DVC records but does not cache (`cache: false`): many small files that a later step packs
    # into shards (DVC stores the shards; this is rebuilt from the source by rerunning the step)
    uncached: tuple[Path, ...] = ()
    metrics: tuple[Path, ...] = ()  # cached outputs DVC shows as metrics
    plots: tuple[Path, ...] = ()  # those of ``outs`` that are pictures for `dvc plots`
    notes: Mapping[str, str] = dataclasses.field(default_factory=dict)  # why an item is there (dvc.yaml)
    options: tuple[Option, ...] = ()
    dvc_args: str = ""  # appended to `steelflow <name>` in dvc.yaml
    entry: tuple[str, ...] = ()  # more "module[:function]" where the import chain starts (code deps)
    summary: Callable[[Any], Iterable[str]] | None = None  # one-line results; "warning: …" lines → stderr
    # Kubeflow
    consumes: tuple[str, ...] = ()  # input artifacts, by the name another step produces them under
    produces: tuple[Produces, ...] = ()
    answer: Callable[[Any], Any] | None = None  # the task's output value (a condition of the graph)
    answer_type: Any = None  # bool, str, …
    refusal: type[Exception] | None = None  # raised by ``run``: the answer is False, the task succeeds
    # opens its own MLflow run (train, tune), which nests under MLFLOW_RUN_ID by itself; any other step gets
    # a small run of its own under a parent run (:func:`steelflow.runs.step_run`)
    tracks: bool = False
    gpu: bool = False  # runs on the GPU image, on GPU nodes
    cache: bool = True  # False: its result depends on more than its inputs (a server's state, a study)
    retries: bool = False  # talks to servers (MLflow, the study's database, S3): retried
    fan_out: FanOut | None = None
    parts: Parts | None = None  # its work cut into parts, one pod each (a data step: ingest, corrupt)

    def __post_init__(self) -> None:
        if self.fan_out is not None and self.parts is not None:
            raise ValueError(f"step {self.name!r}: fan_out (workers on one study) or parts, not both")

    @property
    def command(self) -> str:
        return f"steelflow {self.name}" + (f" {self.dvc_args}" if self.dvc_args else "")

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Every file or folder the step writes: what a Kubeflow component keeps in its artifact."""
        return self.uncached + self.outs + self.metrics

    @property
    def numbers(self) -> tuple[Path, ...]:
        """The JSON files whose numbers are the step's results: its DVC metrics and its Metrics artifacts."""
        found = (*self.metrics, *(p.metrics for p in self.produces if p.metrics is not None))
        return tuple(dict.fromkeys(found))

    @property
    def modules(self) -> tuple[str, ...]:
        """Where the step's import chain starts: its function's module, then ``entry``."""
        return (self.run.__module__, *self.entry)

    def arguments(self, params: Any) -> list[Any]:
        """The sections ``run`` takes, from a loaded params tree."""
        return [params if s == "params" else section(params, s) for s in self.sections]

    def call(self, params: Any, **options: Any) -> Any:
        """Run the step on ``params`` (its sections), with options by name."""
        return self.run(*self.arguments(params), **options)

    def lines(self, result: Any) -> list[str]:
        return list(self.summary(result)) if self.summary else []


def section(params: Any, name: str) -> Any:
    """``params.<name>`` (``validate`` is ``validate_``: pydantic keeps the name for itself)."""
    return getattr(params, name + "_" if name == "validate" else name)


def shown(items: list[str], most: int = 5) -> str:
    """The first few names of a list, for a one-line warning."""
    return ", ".join(items[:most]) + (", …" if len(items) > most else "")
