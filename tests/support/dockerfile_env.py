"""Rebuild a Docker image's Python environment in a venv by following its Dockerfile (no Docker engine here).

ARG, ENV, WORKDIR, COPY and the RUNs of docker/install.sh are carried out in order: WORKDIR and COPY inside a
folder standing in for the image's file system, RUN with the venv's ``python`` and ``pip`` first on PATH.
tests/integration/test_container_images.py builds the real images. FROM, USER, CMD and the other
instructions change nothing a Python process sees and are skipped; what a base image brings (the CUDA
image's torch) is passed in as ``preinstalled`` packages.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import REPO


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def build_env(
    dockerfile: Path,
    dest: Path,
    build_args: dict[str, str] | None = None,
    preinstalled: tuple[str, ...] = (),
) -> Path:
    """A fresh venv at ``dest / 'venv'`` holding what ``dockerfile`` installs; returns its python."""
    venv, image_root = dest / "venv", dest / "image"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    variables = dict(build_args or {})
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if preinstalled:
        _run(f"python -m pip install -q {' '.join(preinstalled)}", image_root, env)
    cwd = image_root
    for op, rest in instructions(dockerfile):
        rest = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], ""), rest)
        if op == "ARG":
            name, _, default = rest.partition("=")
            variables.setdefault(name, default)
        elif op == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = variables[key] = value
        elif op == "WORKDIR":
            cwd = image_root / rest.lstrip("/")
            cwd.mkdir(parents=True, exist_ok=True)
        elif op == "COPY":
            *sources, target = shlex.split(rest)
            folder = len(sources) > 1 or target.endswith("/")
            _copy(sources, (image_root if target.startswith("/") else cwd) / target.lstrip("/"), folder)
        elif op == "RUN" and "install.sh" in rest:
            _run(rest, cwd, env)
        # Other RUNs set up the image's system (its user, Kubeflow's staging folders): followed here they
        # would change this machine, and a Python process in the venv sees none of it.
    return bin_dir / "python"


def _copy(sources: list[str], target: Path, into_folder: bool) -> None:
    for src in sources:
        path = REPO / src
        if path.is_dir():  # Docker copies a folder's contents
            shutil.copytree(path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst = target / path.name if into_folder else target
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)


def _run(command: str, cwd: Path, env: dict[str, str]) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"RUN {command} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
