"""What each step is, declared once: its params keys, its inputs, its outputs (which are metrics and plots).

Both orchestrators read this table. ``dvc.yaml`` is generated from it (``steelflow dvc-yaml``; a test keeps
the committed file equal to the generated one), and each Kubeflow component keeps the outputs of its step
from it (``ws.keep(artifact, *outputs("split"))``; a test fails when a component keeps other files). The
paths themselves live in :mod:`steelflow.paths`.

A stage's code deps are not listed by hand: they are the step's import chain inside the package
(:func:`code_deps`), every module its entry function can import, lazily or not. Left out are the modules
that hold no step logic (:data:`FOUNDATION`: the config types, the path table, the error types, atomic
writes, progress lines, this table), so that editing a docstring there does not rerun every stage.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from steelflow import paths

PACKAGE = "steelflow"
ROOT = Path(__file__).resolve().parents[1]  # the project root, where dvc.yaml lives
FOUNDATION = frozenset(
    {
        "steelflow",
        "steelflow.config",
        "steelflow.contract",
        "steelflow.errors",
        "steelflow.atomic",
        "steelflow.paths",
        "steelflow.progress",
    }
)
FOLDERS = ("steelflow/models",)  # listed as one dep: the networks and their registry change together
TUNED = f"{paths.BEST_PARAMS}:"  # tune's values as params of their own file (dvc.yaml's `- file:` form)


@dataclasses.dataclass(frozen=True)
class Step:
    """One step: how it runs, what it reads and what it writes (all project-relative)."""

    name: str
    entry: tuple[str, ...]  # "module" or "module:function": where its import chain starts
    inputs: tuple[Path, ...] = ()  # data the step reads (code deps come from ``entry``)
    params: tuple[str, ...] = ()  # dotted keys or whole sections it reads; TUNED for tune's values
    outs: tuple[Path, ...] = ()  # cached outputs
    metrics: tuple[Path, ...] = ()  # cached outputs DVC shows as metrics
    plots: tuple[Path, ...] = ()  # those of ``outs`` that are pictures for `dvc plots`
    cmd: str = ""  # default: steelflow <name>
    notes: Mapping[str, str] = dataclasses.field(default_factory=dict)  # why an item is there

    @property
    def command(self) -> str:
        return self.cmd or f"steelflow {self.name}"

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Every file or folder the step writes: what a Kubeflow component keeps in its artifact."""
        return self.outs + self.metrics


_CACHE_SPLITS = paths.CACHE / "splits"
_CACHE_CORRUPTED = paths.CACHE / "corrupted"
_TEST_CACHE = _CACHE_SPLITS / "test.npz"

STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step(
            "ingest",
            entry=("steelflow.steps.ingest",),
            params=(
                "data.source",
                "data.synthetic",
                "data.max_pixels",
                "data.white_level",
                "data.reencode",
                "data.outside_links",
                "data.multi_frame",
            ),
            outs=(paths.IMAGES, paths.MANIFEST),
        ),
        Step(
            "validate",
            entry=("steelflow.steps.validate",),
            inputs=(paths.MANIFEST, paths.IMAGES),
            params=("data.classes", "validate"),
            outs=(paths.VALIDATION_DOCS,),
            metrics=(paths.VALIDATION_JSON,),
            notes={str(paths.IMAGES): "thumbnails of near-duplicate groups in the Data Docs"},
        ),
        Step(
            "split",
            entry=("steelflow.steps.split",),
            inputs=(paths.MANIFEST, paths.IMAGES, paths.VALIDATION_JSON),
            params=("data.classes", "data.cache_size", "data.white_level", "split"),
            outs=(paths.SPLITS, _CACHE_SPLITS),
            metrics=(paths.SPLIT_JSON,),
        ),
        Step(
            "corrupt",
            entry=("steelflow.steps.corrupt",),
            inputs=(paths.SPLITS / "test.csv", paths.IMAGES),
            params=("data.classes", "data.cache_size", "data.white_level", "corrupt"),
            outs=(paths.CORRUPTED, _CACHE_CORRUPTED, paths.CORRUPTIONS_PNG),
            plots=(paths.CORRUPTIONS_PNG,),
        ),
        Step(
            "tune",
            entry=("steelflow.steps.tune",),
            inputs=(_CACHE_SPLITS,),
            params=("model", "train", "tune"),
            outs=(paths.BEST_PARAMS, paths.TRIALS_CSV, paths.TUNING_PLOTS),
            plots=(paths.TUNING_PLOTS,),
        ),
        Step(
            "train",
            entry=("steelflow.runs:train", "steelflow.training.loop"),
            inputs=(_CACHE_SPLITS,),
            params=("model", "train", TUNED),
            outs=(paths.MODEL, paths.MLFLOW_RUN, paths.TRAIN_HISTORY),
            metrics=(paths.TRAIN_METRICS,),
            notes={
                TUNED: "tune's values as params, not a plain dependency: `dvc exp show` and `dvc params "
                "diff` then show what training used (applied when train.use_tuned is true)",
                str(paths.MLFLOW_RUN): "cached, so an experiment's commit leads to its MLflow run",
            },
        ),
        Step(
            "evaluate",
            entry=("steelflow.runs:evaluate", "steelflow.steps.evaluate"),
            inputs=(paths.MODEL, paths.MLFLOW_RUN, _TEST_CACHE, _CACHE_CORRUPTED),
            params=("evaluate", "corrupt.conditions", "corrupt.holdout"),
            outs=(paths.ROBUSTNESS_MD, paths.EVALUATION_DETAILS, paths.PLOTS, paths.PREDICTIONS),
            metrics=(paths.EVALUATE_METRICS,),
            plots=(paths.PLOTS,),
        ),
        Step(
            "gate",
            entry=("steelflow.steps.gate",),
            inputs=(paths.EVALUATE_METRICS, paths.MLFLOW_RUN, _TEST_CACHE, _CACHE_CORRUPTED),
            params=(
                "registry.name",
                "registry.gates",
                "registry.challenger",
                "corrupt.conditions",
                "corrupt.holdout",
                "evaluate.batch_size",
            ),
            outs=(paths.GATES_JSON, paths.GATES_MD),
            notes={
                str(_TEST_CACHE): "a champion scored on other data is re-scored on these",
            },
        ),
        Step(
            "register",
            entry=("steelflow.registry",),
            cmd=f"steelflow register --gates {paths.GATES_JSON}",
            inputs=(
                paths.MODEL,
                paths.MLFLOW_RUN,
                paths.EVALUATE_METRICS,
                paths.GATES_JSON,
                _CACHE_SPLITS,
                _CACHE_CORRUPTED,
            ),
            params=(
                "data.source",
                "data.cache_size",
                "data.white_level",
                "split",
                "train",
                "corrupt.conditions",
                "corrupt.holdout",
                TUNED,
                "registry.name",
                "registry.serving",
                "registry.max_parity_diff",
                "registry.min_label_agreement",
                "registry.quantize",
                "registry.max_quantized_drop",
                "registry.calibration_images",
            ),
            outs=(paths.REGISTRATION, paths.MODEL_CARD),
            notes={
                str(paths.GATES_JSON): "the gate step's verdict: register only what it allows",
                "train": "train.use_tuned, and the training values the model card lists",
                TUNED: "the params hash and model card use tune's values",
                str(paths.REGISTRATION): "cached, so an experiment's commit leads to its model version",
            },
        ),
    )
}

# `dvc plots` views over the steps' tables (the pictures in each step's ``plots`` are listed after them).
PLOT_VIEWS: tuple[tuple[str, dict[str, object]], ...] = (
    (
        "learning curves",
        {
            "template": "linear",
            "x": "epoch",
            "y": {str(paths.TRAIN_HISTORY): ["train_accuracy", "val_accuracy"]},
        },
    ),
    (
        "loss",
        {"template": "linear", "x": "epoch", "y": {str(paths.TRAIN_HISTORY): ["train_loss", "val_loss"]}},
    ),
    (
        "confusion (clean test set)",
        {"template": "confusion", "x": "actual", "y": {str(paths.PREDICTIONS): "predicted"}},
    ),
)


def outputs(step: str) -> tuple[Path, ...]:
    """What ``step`` writes (outs and metrics): what its Kubeflow component keeps."""
    return STEPS[step].outputs


# --- code deps: the import chain ----------------------------------------------------------------------


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The source file of a module of the package (relative to ``root``), or None."""
    base = Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return candidate
    return None


def _imported(nodes: Iterable[ast.AST], root: Path) -> set[str]:
    """Package modules imported anywhere under ``nodes`` (function-level imports too)."""
    found: set[str] = set()
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Import):
                found |= {a.name for a in n.names if a.name.split(".")[0] == PACKAGE}
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                if n.module.split(".")[0] != PACKAGE:
                    continue
                found.add(n.module)
                found |= {
                    f"{n.module}.{a.name}" for a in n.names if module_file(f"{n.module}.{a.name}", root)
                }
    return found


def _entry_imports(entry: str, root: Path) -> tuple[str, set[str]]:
    """``module`` → everything it imports; ``module:function`` → its module-level imports, the function's
    own and those of the module's functions and classes it uses (so one function of a module that serves
    two steps pulls in only its part)."""
    module, _, function = entry.partition(":")
    tree = ast.parse((root / module_file(module, root)).read_text())
    if not function:
        return module, _imported([tree], root)
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    if function not in defs:
        raise ValueError(f"{module} has no function {function!r}")
    used, todo = set(), [function]
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return module, _imported(top + [defs[name] for name in used], root)


def import_chain(entries: Iterable[str], root: Path = ROOT) -> set[str]:
    """Every package module the entries can import, transitively."""
    seen: set[str] = set()
    todo: list[str] = []
    for entry in entries:
        module, direct = _entry_imports(entry, root)
        seen.add(module)
        todo += direct
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, root)
        if path is not None:
            todo += _imported([ast.parse((root / path).read_text())], root)
    return {m for m in seen if module_file(m, root) is not None}


def code_deps(step: str, root: Path = ROOT) -> list[str]:
    """The stage's code deps: its import chain but :data:`FOUNDATION`, as files (a :data:`FOLDERS` folder
    once), the step's own modules first."""
    s = STEPS[step]
    own = [entry.partition(":")[0] for entry in s.entry]
    chain = import_chain(s.entry, root) - FOUNDATION
    ordered = [m for m in own if m in chain] + sorted(chain - set(own))
    deps: list[str] = []
    for module in ordered:
        rel = module_file(module, root).as_posix()
        dep = next((f for f in FOLDERS if rel.startswith(f + "/")), rel)
        if dep not in deps:
            deps.append(dep)
    return deps


# --- dvc.yaml -----------------------------------------------------------------------------------------

HEADER = """\
# The pipeline's table of contents, generated from steelflow/contract.py by `steelflow dvc-yaml`: edit
# that table, not this file (a test fails when they differ). Each stage: its command, its code deps (the
# step's import chain inside the package) and data inputs, the params keys it reads (so a change reruns
# exactly the stages that read it), its outputs, metrics and plots.
"""


def dvc_yaml(root: Path = ROOT) -> str:
    """dvc.yaml's text, from :data:`STEPS` and :data:`PLOT_VIEWS`."""
    lines = [HEADER.rstrip("\n"), "stages:"]
    for name, s in STEPS.items():
        lines += [f"  {name}:", f"    cmd: {s.command}"]
        lines += _block("deps", [*code_deps(name, root), *map(str, s.inputs)], s.notes)
        lines += _block("params", list(s.params), s.notes)
        lines += _block("outs", [str(p) for p in s.outs], s.notes)
        lines += _block("metrics", [str(p) for p in s.metrics], s.notes)
        lines.append("")
    lines.append("plots:")
    for title, view in PLOT_VIEWS:
        lines.append(f"  - {title}:")
        lines += ["      " + line for line in _yaml(view).splitlines()]
    for s in STEPS.values():
        lines += [f"  - {p}" for p in s.plots]
    return "\n".join(lines) + "\n"


def _block(key: str, items: list[str], notes: Mapping[str, str]) -> list[str]:
    if not items:
        return []
    out = [f"    {key}:"]
    for item in items:
        note, line = notes.get(item), f"      - {item}"
        if note and len(line) + len(note) > 100:  # a long note goes above its item
            out += [f"      # {part}" for part in _wrap(note)]
        elif note:
            line = f"{line}  # {note}"
        out.append(line)
    return out


def _wrap(text: str, width: int = 100) -> list[str]:
    words, lines, current = text.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*lines, current] if current else lines


def _yaml(tree: object) -> str:
    import yaml

    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=1000)


def write_dvc_yaml(target: Path | None = None) -> Path:
    """Write the generated dvc.yaml (default: the project's)."""
    from steelflow import atomic

    target = ROOT / "dvc.yaml" if target is None else Path(target)
    atomic.write_text(target, dvc_yaml())
    return target
