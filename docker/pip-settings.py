"""Hand this machine's pip settings to an image build as read-only mounts, without writing them into a layer.

    python3 docker/pip-settings.py DIR    # fills DIR, prints the flags for `buildah bud` / `podman build`

A build on a machine whose packages come from a mirror, a local wheel folder or through a TLS-inspecting
proxy needs that machine's pip configuration. ``pip config list`` (environment variables and every config
file, ranked as pip ranks them) becomes one ``pip.conf`` in DIR; every file or folder a setting names (the
CA bundle, ``find-links`` folders, ``file://`` indexes) is mounted below ``/run/host-pip`` and the setting
rewritten to point there. DIR itself is mounted at ``/run/host-pip`` and the build argument
``PIP_CONFIG_FILE`` names the file, so what a layer keeps is one empty mount point: no setting, no path of
this machine. The Dockerfiles stay the same as on a laptop that reaches PyPI directly.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

MOUNT = Path("/run/host-pip")
# pip's own ranking, lowest first: a later scope overrides an earlier one.
SCOPES = ("global", "user", "site", ":env:")


def settings() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    ranked: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        scope, _, key = name.rpartition(".")
        if not sep or not key:
            continue
        rank = SCOPES.index(scope) if scope in SCOPES else 0
        if key not in ranked or rank >= ranked[key][0]:
            ranked[key] = (rank, value.strip().strip("'\""))
    return {key: value for key, (_, value) in ranked.items()}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: docker/pip-settings.py DIR")
    folder = Path(sys.argv[1]).resolve()
    mounts: dict[Path, str] = {}  # host path → its name below MOUNT

    def remap(word: str) -> str:
        url = word.startswith("file://")
        path = Path(word.removeprefix("file://"))
        tail = ""
        if url and path.name == "simple":  # a PEP 503 index's pages link to files beside it (../../files/…)
            path, tail = path.parent, "/simple"
        if not path.is_absolute() or not path.exists():
            return word
        name = mounts.setdefault(path, f"m{len(mounts)}")
        stub = folder / name  # the mount point, made here so that nothing is created in the image
        if path.is_dir():
            stub.mkdir(exist_ok=True)
        else:
            stub.touch()
        return f"{'file://' if url else ''}{MOUNT / name}{tail}"

    conf = configparser.ConfigParser(interpolation=None)
    conf["global"] = {key: " ".join(map(remap, value.split())) for key, value in settings().items()}
    with (folder / "pip.conf").open("w") as f:
        conf.write(f)
    flags = [f"--volume {folder}:{MOUNT}:ro"]
    flags += [f"--volume {src}:{MOUNT / name}:ro" for src, name in mounts.items()]
    flags.append(f"--build-arg PIP_CONFIG_FILE={MOUNT / 'pip.conf'}")
    print(" ".join(flags))


if __name__ == "__main__":
    main()
