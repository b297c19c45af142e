"""A picture of the compiled pipeline: its tasks, what feeds what, the conditions and the fan-out.

Drawn from the IR YAML itself (not from a hand-kept list), so the picture in the README is the pipeline
that runs: ``steelflow pipeline diagram`` writes ``docs/pipeline.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: drawn in CI and by the CLI
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import yaml  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from steelflow import atomic  # noqa: E402

GROUP_LABELS = {"condition": "if {}", "for-loop": "for each of {}"}


def graph(ir_path: str | Path) -> tuple[dict[str, set[str]], dict[str, str], dict[str, str]]:
    """(task → upstream tasks, task → its enclosing groups as "outer/inner", group → condition) from IR."""
    spec = _pipeline_spec(ir_path)
    upstream: dict[str, set[str]] = {}
    group_of: dict[str, str] = {}
    conditions: dict[str, str] = {}

    def walk(dag: dict, group: str, inherited: set[str]) -> None:
        for name, task in dag.get("tasks", {}).items():
            ref = task["componentRef"]["name"]
            inputs = task.get("inputs", {})
            channels = [
                v.get("taskOutputArtifact", {}).get("producerTask")
                or v.get("taskOutputParameter", {}).get("producerTask")
                or v.get("componentInputArtifact")
                or v.get("componentInputParameter")
                for kind in ("artifacts", "parameters")
                for v in inputs.get(kind, {}).values()
            ]
            deps = set(task.get("dependentTasks", [])) | {c for c in channels if c}
            if "dag" in spec["components"][ref]:  # a condition or a loop: its own DAG
                condition = task.get("triggerPolicy", {}).get("condition", "")
                producer = re.search(r"pipelinechannel--([\w-]+)-Output", condition)
                if producer:
                    conditions[name] = f"{producer[1]} passed"
                walk(
                    spec["components"][ref]["dag"],
                    f"{group}/{name}".strip("/"),
                    deps | set(producer.groups() if producer else ()),
                )
                continue
            upstream[name] = deps | inherited
            group_of[name] = group

    walk(spec["root"]["dag"], "", set())
    names = sorted(upstream, key=len, reverse=True)
    members = _members(group_of)
    for name, deps in upstream.items():
        resolved = set()
        for dep in deps:
            dep = dep.removeprefix("pipelinechannel--")  # "pipelinechannel--ingest-dataset" → "ingest"
            hits = members.get(dep) or [next((n for n in names if dep == n or dep.startswith(n + "-")), "")]
            resolved |= {h for h in hits if h and h != name}
        upstream[name] = resolved
    return _reduced(upstream), group_of, conditions


def loop_names(ir_path: str | Path) -> dict[str, str]:
    """Each ParallelFor (its task name, ``for-loop-2``) → the name the pipeline gave it (``tune-workers``)."""
    spec = _pipeline_spec(ir_path)
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    return {
        name: task["taskInfo"]["name"]
        for dag in dags
        for name, task in dag.get("tasks", {}).items()
        if "parameterIterator" in task
    }


def gpu_tasks(ir_path: str | Path) -> set[str]:
    """The tasks whose container asks for an accelerator: GPU placement as the compiled pipeline has it."""
    spec = _pipeline_spec(ir_path)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    return {
        name
        for dag in dags
        for name, task in dag.get("tasks", {}).items()
        if executors.get(spec["components"][task["componentRef"]["name"]].get("executorLabel"), {})
        .get("container", {})
        .get("resources", {})
        .get("accelerator")
    }


def _pipeline_spec(ir_path: str | Path) -> dict:
    return next(yaml.safe_load_all(Path(ir_path).read_text()))  # the platform spec follows; not needed


def _members(group_of: dict[str, str]) -> dict[str, list[str]]:
    """Each group (condition or loop) → the tasks inside it, at any depth."""
    groups = {g for path in group_of.values() if path for g in path.split("/")}
    return {g: [n for n, path in group_of.items() if g in path.split("/")] for g in groups}


def _reduced(upstream: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop an edge a → b when b is reached from a another way (the transitive reduction): the picture
    shows order, not every input."""
    reduced = nx.transitive_reduction(_dag(upstream))
    return {n: set(reduced.predecessors(n)) for n in upstream}


def _dag(upstream: dict[str, set[str]]) -> nx.DiGraph:
    """Task → upstream tasks as a graph whose edges run downstream (what feeds what)."""
    dag = nx.DiGraph()
    dag.add_nodes_from(upstream)
    dag.add_edges_from((dep, name) for name, deps in upstream.items() for dep in deps)
    return dag


def draw(ir_path: str | Path, out: str | Path) -> Path:
    """Render the pipeline graph, top to bottom, to a PNG (the GPU steps in their own colour)."""
    gpu = gpu_tasks(ir_path)
    upstream, group_of, conditions = graph(ir_path)
    loops = loop_names(ir_path)
    # a task's row: one below the lowest of its upstream tasks (the longest path from the top)
    rows = dict(enumerate(sorted(row) for row in nx.topological_generations(_dag(upstream))))
    layer = {name: level for level, row in rows.items() for name in row}
    pos = {
        name: ((i - (len(row) - 1) / 2) * 3.2, -level * 1.3)
        for level, row in rows.items()
        for i, name in enumerate(row)
    }

    fig, ax = plt.subplots(figsize=(7.5, 1.05 * len(rows) + 0.8))
    for group, members in _members(group_of).items():
        level = group_of[members[0]].split("/").index(group)  # 0 = outermost
        xs, ys = [pos[n][0] for n in members], [pos[n][1] for n in members]
        pad = 1.55 - 0.2 * level
        kind = "for-loop" if group.startswith("for-loop") else "condition"
        label = GROUP_LABELS[kind].format(loops.get(group) or conditions.get(group, ""))
        ax.add_patch(
            FancyBboxPatch(
                (min(xs) - pad, min(ys) - pad + 1.05),
                max(xs) - min(xs) + 2 * pad,
                max(ys) - min(ys) + 2 * pad - 2.1,
                boxstyle="round,pad=0.05",
                fill=False,
                linestyle="--",
                edgecolor="#7a7a7a",
            )
        )
        ax.text(min(xs) - pad + 0.1, max(ys) + pad - 1.0, label, fontsize=8, color="#555555", va="bottom")
    for name, deps in upstream.items():
        for dep in deps:
            (x0, y0), (x1, y1) = pos[dep], pos[name]
            arrow = {"arrowstyle": "->", "color": "#444444"}
            if layer[name] - layer[dep] > 1 and x0 != x1:  # a long edge: down beside the column, then across
                side = 1.1 if x0 > x1 else -1.1
                arrow["connectionstyle"] = "angle,angleA=-90,angleB=0,rad=0"
                ax.annotate("", xy=(x1 + side, y1), xytext=(x0, y0 - 0.25), arrowprops=arrow)
            else:
                ax.annotate("", xy=(x1, y1 + 0.25), xytext=(x0, y0 - 0.25), arrowprops=arrow)
    for name, (x, y) in pos.items():
        on_gpu = name in gpu
        ax.add_patch(
            FancyBboxPatch(
                (x - 1.1, y - 0.25),
                2.2,
                0.5,
                boxstyle="round,pad=0.04",
                facecolor="#ffd9a8" if on_gpu else "#cfe3f7",
                edgecolor="#333333",
            )
        )
        ax.text(x, y, name + ("  (GPU)" if on_gpu else ""), ha="center", va="center", fontsize=9)
    xs = [x for x, _ in pos.values()]
    ax.set_xlim(min(xs) - 2.2, max(xs) + 2.2)
    ax.set_ylim(min(y for _, y in pos.values()) - 0.8, 0.9)
    ax.axis("off")
    ax.set_title("steel-defect-pipeline (Kubeflow Pipelines v2)", fontsize=11)
    out = Path(out)
    with atomic.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return out
