"""``dvc.yaml``, generated from the steps' own declarations (:class:`steelflow.step.Step`).

``steelflow dvc-yaml`` writes it; a test keeps the committed file equal to the generated one. Each stage is
one step's declaration: its command, code deps, data inputs, the params keys it reads, outs, metrics and
plots.

A stage's code deps are not listed by hand: they are the step's import chain inside the package
(:func:`code_deps`), every module its entry function can import, lazily or not. Left out are the modules
that hold no step logic (:data:`FOUNDATION`: the config types, the path table, the error types, atomic
writes, progress lines, the step declaration and registry, this generator), so that editing a docstring
there does not rerun every stage.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from steelflow import atomic, paths, steps

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
        "steelflow.step",
        "steelflow.steps",
    }
)
FOUNDATION_PACKAGES = ("steelflow.config.",)  # the typed config, by job: no step logic
FOLDERS = ("steelflow/models",)  # listed as one dep: the networks and their registry change together

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
    return steps.get(step).outputs


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
    path = module_file(module, root)
    if path is None:  # outside the project tree
        return module, set()
    tree = ast.parse((root / path).read_text())
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
    s = steps.get(step)
    own = [entry.partition(":")[0] for entry in s.modules]
    chain = {m for m in import_chain(s.modules, root) - FOUNDATION if not m.startswith(FOUNDATION_PACKAGES)}
    ordered = [m for m in own if m in chain] + sorted(chain - set(own))
    deps: list[str] = []
    for module in ordered:
        found = module_file(module, root)
        if found is None:  # outside the project tree (a step declared elsewhere)
            continue
        rel = found.as_posix()
        dep = next((f for f in FOLDERS if rel.startswith(f + "/")), rel)
        if dep not in deps:
            deps.append(dep)
    return deps


# --- dvc.yaml -----------------------------------------------------------------------------------------

HEADER = """\
# The pipeline's table of contents, generated by `steelflow dvc-yaml` from each step's declaration (STEP in
# steelflow/steps/<name>.py): edit those, not this file (a test fails when they differ). Each stage: its
# command, its code deps (the step's import chain inside the package) and data inputs, the params keys it
# reads (so a change reruns exactly the stages that read it), its outputs, metrics and plots.
"""


def dvc_yaml(root: Path = ROOT) -> str:
    """dvc.yaml's text, from the steps' declarations and :data:`PLOT_VIEWS`."""
    lines = [HEADER.rstrip("\n"), "stages:"]
    for name, s in steps.registry().items():
        lines += [f"  {name}:", f"    cmd: {s.command}"]
        lines += _block("deps", [*code_deps(name, root), *map(str, s.inputs)], s.notes)
        lines += _block("params", list(s.params), s.notes)
        outs = [f"{p}:\n          cache: false" for p in s.uncached] + [str(p) for p in s.outs]
        lines += _block("outs", outs, s.notes)
        lines += _block("metrics", [str(p) for p in s.metrics], s.notes)
        lines.append("")
    lines.append("plots:")
    for title, view in PLOT_VIEWS:
        lines.append(f"  - {title}:")
        lines += ["      " + line for line in _yaml(view).splitlines()]
    for s in steps.registry().values():
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
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=1000)


def write_dvc_yaml(target: Path | None = None) -> Path:
    """Write the generated dvc.yaml (default: the project's)."""
    target = ROOT / "dvc.yaml" if target is None else Path(target)
    atomic.write_text(target, dvc_yaml())
    return target
