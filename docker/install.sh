#!/bin/sh
# Installs steelflow into the current Python. Both Dockerfiles run it, and so does the test that rebuilds each
# image's environment in a fresh venv (tests/integration/test_kfp_local.py), so there is one install recipe.
#   install.sh deps      the exact pins of requirements.lock
#                        TORCH_INDEX  an extra package index for torch (the CPU image's CPU-only wheels)
#                        KEEP_TORCH=1 keep the base image's CUDA torch instead of the lock's torch
#   install.sh project   steelflow, components/ and pipelines/ themselves (their dependencies are in place)
set -eu
case "${1:-}" in
  deps)
    lock=requirements.lock
    if [ "${KEEP_TORCH:-0}" = 1 ]; then
      lock=$(mktemp)
      grep -v '^torch==' requirements.lock > "$lock"
    fi
    # The pip that `make setup` uses, whatever the base brings (Debian's 23.0 builds some sdists the old way).
    python -m pip install --no-cache-dir --disable-pip-version-check pip==25.3
    python -m pip install --no-cache-dir --disable-pip-version-check ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -r "$lock"
    ;;
  project)
    python -m pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation .
    rm -rf build ./*.egg-info  # setuptools' leftovers beside the sources; the install is in site-packages
    ;;
  *)
    echo "usage: docker/install.sh deps|project" >&2
    exit 2
    ;;
esac
