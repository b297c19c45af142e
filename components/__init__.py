"""The steelflow steps as Kubeflow Pipelines v2 components, made from the steps' declarations.

Every step (:func:`steelflow.steps.registry`) becomes a Python-function component whose inputs and outputs
are typed from its :class:`steelflow.step.Step`: ``params`` (the run's validated params tree, JSON),
``Input[...]`` for each artifact it ``consumes`` (typed as the step that produces it declares), and
``Output[...]`` for each it ``produces``, returning its ``answer`` (``bool`` for a condition of the graph).
A step that fans out (``fan_out``) becomes three: ``<name>_start`` (returns the worker indices),
``<name>_worker`` and ``<name>_finish``. A step cut into parts (``parts``) becomes three too:
``<name>_plan`` (returns the parts' keys), ``<name>_part`` (one part: ``key``, and its files as the
``part`` artifact) and ``<name>_merge`` (the fan-in: every part's artifact as ``parts``, an
``Input[list[Artifact]]`` the pipeline fills with ``dsl.Collected``; the step's outputs). The body of
every component is the same line, a call to :func:`steelflow.workspace.run_component`, so no logic lives
here: kfp copies that source into the container, whose image already holds steelflow and kfp (nothing is
pip-installed when a step starts).

The train step also becomes ``train_trainjob``, the task the pipeline runs instead of ``train`` when
``kubeflow.trainer.enabled``: a CPU launcher (its ``run_component`` phase ``trainjob``) that runs the step
as a Kubeflow Trainer TrainJob on GPU nodes (:mod:`steelflow.trainjob`) and fills the same artifacts.

:mod:`components.settings` is the one hand-written component: it turns the run's typed parameters into
the params tree the steps read.
"""

from __future__ import annotations

import linecache
import types
from typing import Any

from kfp import dsl

from components.settings import settings
from steelflow import steps
from steelflow.step import Step
from steelflow.trainjob import LAUNCHED_STEP


def make_components(
    image: str, gpu_image: str, declared: dict[str, Step] | None = None
) -> types.SimpleNamespace:
    """Every step as a component on ``image`` (a GPU step, or a fan-out's workers, on ``gpu_image``), and
    ``settings``. Attributes: the step's name (``c.split``), or ``c.tune_start``/``_worker``/``_finish``,
    or ``c.ingest_plan``/``_part``/``_merge``."""
    declared = steps.registry() if declared is None else declared
    kinds = {out.name: out.kind for s in declared.values() for out in s.produces}
    made: dict[str, Any] = {"settings": _component(settings, image)}
    for step in declared.values():
        for name, phase, gpu in _phases(step):
            made[name] = _component(_function(step, name, phase, kinds), gpu_image if gpu else image)
    return types.SimpleNamespace(**made)


def task_names(step: Step) -> list[str]:
    """The component (and task) names a step becomes."""
    return [name for name, _, _ in _phases(step)]


def on_gpu(step: Step, task: str) -> bool:
    """Whether the task ``task`` of ``step`` runs on the GPU image and nodes: a GPU step's one task, or
    the workers (or parts) of a GPU step that fans out (or is cut into parts)."""
    return any(gpu for name, _, gpu in _phases(step) if name == task)


def _phases(step: Step) -> list[tuple[str, str, bool]]:
    n = step.name
    if step.parts is not None:
        return [(f"{n}_plan", "plan", False), (f"{n}_part", "part", step.gpu), (f"{n}_merge", "merge", False)]
    if step.fan_out is None:
        return [(step.name, "", step.gpu), *_launcher(step)]
    return [
        (f"{n}_start", "start", False),
        (f"{n}_worker", "worker", step.gpu),
        (f"{n}_finish", "finish", False),
    ]


def _launcher(step: Step) -> list[tuple[str, str, bool]]:
    """``train_trainjob``: the train task when ``kubeflow.trainer.enabled`` (a CPU launcher that runs the
    step as a Kubeflow Trainer TrainJob on GPU nodes and waits, :mod:`steelflow.trainjob`)."""
    return [(f"{step.name}_trainjob", "trainjob", False)] if step.name == LAUNCHED_STEP else []


def _component(fn: Any, image: str) -> Any:
    return dsl.component(fn, base_image=image, install_kfp_package=False)


def _function(step: Step, name: str, phase: str, kinds: dict[str, str]) -> Any:
    """The component function's source, compiled and registered with linecache, so that kfp (which reads
    a component's code with ``inspect.getsource``) finds it like any function written in a file."""
    args = ["params: str"]
    if phase == "worker":
        args.append("worker: int")
    elif phase == "trainjob":  # the run's id names its job; the GPU image (tag pinned at compile) runs it
        args += ["pipeline_run: str", "image: str"]
    elif phase == "part":
        args.append("key: str")
    for artifact in () if phase == "plan" else step.consumes:  # the parts' keys come from the params
        if artifact not in kinds:
            raise ValueError(f"step {step.name!r} consumes {artifact!r}, which no step produces")
        args.append(f"{artifact}: Input[{kinds[artifact]}]")
    if phase == "start":
        args.append("study: Output[Artifact]")
    elif phase in ("worker", "finish"):
        args.append("study: Input[Artifact]")
    elif phase == "part":
        args.append("part: Output[Artifact]")
    elif phase == "merge":
        args.append("parts: Input[list[Artifact]]")
    if phase in ("", "finish", "merge", "trainjob"):
        args += [f"{out.name}: Output[{out.kind}]" for out in step.produces]
    returns = {"start": "list", "worker": "None", "plan": "list", "part": "None"}.get(phase) or (
        step.answer_type.__name__ if step.answer_type else "None"
    )
    doc = (step.run.__doc__ or step.name).strip().split("\n\n")[0].replace('"""', "'''")
    if phase == "trainjob":
        doc = f"{step.name} as a Kubeflow Trainer TrainJob on GPU nodes (kubeflow.trainer); waits for it."
    source = (
        f"def {name}({', '.join(args)}) -> {returns}:\n"
        f'    """{doc}"""\n'
        "    from steelflow.workspace import run_component\n\n"
        f"    return run_component({step.name!r}, locals(), {phase!r})\n"
    )
    filename = f"<steelflow component {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {k: getattr(dsl, k) for k in ("Input", "Output", "Artifact", *{*kinds.values()})}
    # dont_inherit: this module's `from __future__ import annotations` would make kfp's types strings
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 (generated here)
    return namespace[name]
