"""The images' recipes: hadolint on every Dockerfile, `make image` tags, what the build context holds.

The images themselves are built and run in tests/integration/test_container_images.py (buildah);
tests/integration/test_kfp_local.py rebuilds each image's environment from its Dockerfile in a fresh venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import REPO

DOCKERFILES = (
    "docker/Dockerfile",
    "docker/Dockerfile.gpu",
    "docker/mlflow.Dockerfile",
    "docker/base.Dockerfile",
)
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes_every_dockerfile(dockerfile):
    proc = subprocess.run([HADOLINT, str(REPO / dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_careless_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN pip install torch\n"
    )
    proc = subprocess.run([HADOLINT, str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # the :latest tag
    assert "DL3013" in proc.stdout  # an unpinned pip install


def test_make_image_tags_both_images_with_version_and_git_sha():
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    out = subprocess.run(
        ["make", "-n", "image", "REGISTRY=registry.example.com/team"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    version = next(
        line.split('"')[1]
        for line in (REPO / "pyproject.toml").read_text().splitlines()
        if line.startswith("version")
    )
    for image, dockerfile in (("steelflow", "docker/Dockerfile"), ("steelflow-gpu", "docker/Dockerfile.gpu")):
        assert f"-f {dockerfile} " in out
        assert f"-t registry.example.com/team/{image}:{version} " in out
        assert f"-t registry.example.com/team/{image}:{version}-{sha.stdout.strip()} " in out
    assert f"GIT_SHA={sha.stdout.strip()}" in out


def test_the_build_context_sends_only_what_the_images_copy():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "*"  # everything is left out unless named
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for dockerfile in ("docker/Dockerfile", "docker/Dockerfile.gpu"):
        for line in (REPO / dockerfile).read_text().splitlines():
            if line.startswith("COPY "):
                copied |= {src.rstrip("/") for src in line.split()[1:-1]}
    assert copied == kept


def _path_with(folder: Path, tools: dict[str, int]) -> dict[str, str]:
    """An environment whose PATH holds only what make needs and stand-in container tools, whose `info`
    exits with the given code (docker's exits 1 when no daemon answers)."""
    folder.mkdir()
    for name in ("sh", "make", "sed", "git"):
        (folder / name).symlink_to(shutil.which(name))
    for name, rc in tools.items():
        (folder / name).write_text(f'#!/bin/sh\n[ "$1" = info ] && exit {rc}\nexit 0\n')
        (folder / name).chmod(0o755)
    return {"PATH": str(folder)}


@pytest.mark.parametrize(
    ("tools", "chosen"),
    [
        ({"docker": 1, "podman": 1, "buildah": 0}, "buildah"),  # a docker CLI without a daemon is passed over
        ({"docker": 0, "buildah": 0}, "docker"),
        ({"podman": 0, "buildah": 0}, "podman"),
    ],
)
def test_make_image_uses_the_first_tool_that_can_build(tools, chosen, tmp_path):
    env = _path_with(tmp_path / "bin", tools)
    proc = subprocess.run(
        ["sh", "docker/container-tool.sh"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, chosen)
    out = subprocess.run(["make", "-n", "image-cpu"], cwd=REPO, env=env, capture_output=True, text=True)
    assert f'docker/build.sh "{chosen}" -f docker/Dockerfile' in out.stdout


def test_no_tool_that_can_build_is_one_clear_error(tmp_path):
    env = _path_with(tmp_path / "bin", {"docker": 1})
    proc = subprocess.run(
        ["sh", "docker/container-tool.sh"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "docker (no daemon?)" in proc.stderr and "CONTAINER_TOOL" in proc.stderr


@pytest.mark.parametrize("target", ["run", "test", "clean", "docs"])
def test_targets_without_images_do_not_ask_for_a_container_tool(target, tmp_path):
    env = _path_with(tmp_path / "bin", {"docker": 1})  # no tool can build: the probe would complain
    proc = subprocess.run(["make", "-n", target], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "container tool" not in proc.stderr + proc.stdout


def test_the_image_targets_ask_once_and_say_why_they_cannot_build(tmp_path):
    env = _path_with(tmp_path / "bin", {"docker": 1})
    proc = subprocess.run(["make", "-n", "push"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.stderr.count("no container tool can build here") == 1
