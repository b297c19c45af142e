#!/bin/sh
# One image build with docker, podman or buildah, the same options for each:
#   docker/build.sh TOOL -f docker/Dockerfile -t NAME:TAG [--build-arg K=V ...] CONTEXT
# buildah and podman build in `chroot` isolation, which needs no OCI runtime (this project's machines have
# none that can start a container), keep layers for the cache, remove their build containers even when a
# build fails, and write Docker's image format, the one that keeps HEALTHCHECK. HOST_PIP=1 hands this
# machine's pip settings to the build as read-only mounts (docker/pip-settings.py); `docker build` has no
# mounts, so there it is refused.
set -eu
tool=${1:?no container tool: set CONTAINER_TOOL=docker, podman or buildah (usage: docker/build.sh TOOL BUILD-OPTIONS... CONTEXT)}
shift
here=$(cd "$(dirname "$0")" && pwd)
mounts=""
if [ "${HOST_PIP:-0}" = 1 ]; then
  if [ "$tool" = docker ]; then
    echo "build: HOST_PIP=1 needs podman or buildah (docker build takes no mounts)" >&2
    exit 2
  fi
  conf=$(mktemp -d "${TMPDIR:-/tmp}/steelflow-pip.XXXXXX")
  trap 'rm -rf "$conf"' EXIT
  mounts=$(python3 "$here/pip-settings.py" "$conf")
fi
case "$tool" in
  # $mounts is a list of flags on purpose: split on spaces.
  # shellcheck disable=SC2086
  buildah) buildah bud --isolation chroot --layers --force-rm --format docker $mounts "$@" ;;
  # shellcheck disable=SC2086
  podman) podman build --isolation chroot --layers --force-rm --format docker $mounts "$@" ;;
  docker) docker build "$@" ;;
  *) echo "build: unknown container tool '$tool' (docker, podman or buildah)" >&2; exit 2 ;;
esac
