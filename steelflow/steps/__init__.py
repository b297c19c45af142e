"""One module per pipeline step; each declares itself once (``STEP``, a :class:`steelflow.step.Step`).

:func:`registry` finds every declaration in this package and orders the steps as data flows between
them: a step comes after every step whose outputs it reads. A new step is a new module here (plus its
place in the Kubeflow graph); the CLI command, the ``dvc.yaml`` stage and the Kubeflow component follow.
No step imports another step: they share the data and model layers only.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path

import networkx as nx

from steelflow.step import Step


@functools.cache
def registry() -> dict[str, Step]:
    """Every step declared in this package, in data-flow order (ties by name)."""
    found = {name: get(name) for name in names()}
    return {name: found[name] for name in data_flow(found.values())}


def data_flow(steps: list[Step] | object) -> list[str]:
    """Step names in topological order of their files: B after A when B reads what A writes."""
    steps = list(steps)  # type: ignore[arg-type]
    graph = nx.DiGraph()
    graph.add_nodes_from(s.name for s in steps)
    for a in steps:
        for b in steps:
            if a is not b and any(_within(i, o) for i in _reads(b) for o in a.outputs):
                graph.add_edge(a.name, b.name)
    return list(nx.lexicographical_topological_sort(graph))


def get(name: str) -> Step:
    """One step's declaration, importing its module only (the command line runs one step)."""
    if name not in names():
        raise KeyError(f"no step {name!r}: the steps are {', '.join(names())}")
    step = getattr(importlib.import_module(f"{__name__}.{name}"), "STEP", None)
    if not isinstance(step, Step) or step.name != name:
        raise ValueError(f"{__name__}.{name} declares no STEP named {name!r}")
    return step


def names() -> list[str]:
    """The steps' names, without importing them: a step is the module of its name."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def _reads(step: Step) -> list[Path]:
    # dvc.yaml's `- file:` params form (tune's values as train's params) is a read too
    files = [Path(p.split(":", 1)[0]) for p in step.params if p.endswith(":")]
    return [*step.inputs, *files]


def _within(path: Path, output: Path) -> bool:
    return path == output or output in path.parents
