#!/bin/sh
# Prints the first container tool that can build here: docker (only with a daemon answering), podman, then
# buildah. A `docker` CLI on the PATH proves nothing: without a daemon every build fails, so each tool is
# asked to report on its engine (`info`) before it is chosen. Exits 1, naming what was tried, if none can.
for tool in docker podman buildah; do
  if command -v "$tool" >/dev/null 2>&1 && "$tool" info >/dev/null 2>&1; then
    echo "$tool"
    exit 0
  fi
done
echo "no container tool can build here: docker (no daemon?), podman and buildah all failed 'info';" \
  "install one (Debian: apt-get install buildah) or set CONTAINER_TOOL" >&2
exit 1
