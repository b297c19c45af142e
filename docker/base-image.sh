#!/bin/sh
# Builds the local Debian Python base (docker/base.Dockerfile) with TOOL (docker, podman or buildah) as TAG:
#   docker/base-image.sh buildah localhost/steelflow-base:bookworm
# debootstrap lays a minimal bookworm root (Debian's python3 3.11, python3-venv, CA certificates) into a
# temporary folder; the Dockerfile adds it as the only layer below a venv. Needs root and debootstrap.
# DEBIAN_MIRROR picks the mirror (default deb.debian.org).
set -eu
tool=${1:?usage: docker/base-image.sh TOOL TAG}
tag=${2:?usage: docker/base-image.sh TOOL TAG}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/steelflow-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/root" "$mirror" \
  > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# Package caches are not part of an image.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" -cf "$work/rootfs.tar" .
cp "$here/base.Dockerfile" "$work/Dockerfile"
case "$tool" in
  buildah) buildah bud --isolation chroot --layers --format docker -t "$tag" "$work" ;;
  *) "$tool" build -t "$tag" "$work" ;;
esac
