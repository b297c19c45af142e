# The two commands a new user needs: `make run` and `make test`. Both build .venv/ first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint docs bench clean image image-cpu image-gpu image-mlflow base-image image-tools browser-tools plots push

# Images for the Kubeflow pipeline, tagged <version> and <version>-<git sha>: `make image REGISTRY=...`.
REGISTRY ?= ghcr.io/steelflow
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
GIT_SHA  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE    := $(REGISTRY)/steelflow
GPU_IMAGE := $(REGISTRY)/steelflow-gpu
MLFLOW_IMAGE := $(REGISTRY)/steelflow-mlflow
# docker (with a daemon that answers), podman or buildah: the first that can build (docker/container-tool.sh).
# Asked only when a recipe needs it, and once: `make run` or `make test` never probe.
CONTAINER_TOOL ?= $(eval CONTAINER_TOOL := $$(shell sh docker/container-tool.sh))$(CONTAINER_TOOL)
# The local Debian Python base (`make base-image`), for machines that reach no container registry.
LOCAL_BASE := localhost/steelflow-base:bookworm
# Build arguments passed only when set: BASE (the CPU image's Python base; `make image-cpu
# BASE=$(LOCAL_BASE)` here) and TORCH_INDEX (`TORCH_INDEX=` takes torch from pip's own indexes).
# HOST_PIP=1 hands this machine's pip settings to a buildah/podman build as read-only mounts.
BUILD_ARGS := $(if $(BASE),--build-arg BASE=$(BASE)) \
	$(if $(filter-out undefined,$(origin TORCH_INDEX)),--build-arg TORCH_INDEX=$(TORCH_INDEX))
BUILD     = sh docker/build.sh "$(CONTAINER_TOOL)"

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check pip==25.3
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# `dvc repro` under one MLflow parent run: a child run per stage (docs/pipeline.md, one run tree)
run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/steelflow repro

# DVC's plots page with Vega inline (dvc_plots/index.html): draws with no network, unlike `dvc plots show`'s.
plots: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/steelflow plots

# Three pytest-xdist workers: the suite waits on servers, builds and child processes about half the time.
# A test file's tests stay on one worker (tests/conftest.py): its fixtures are made once. One OpenMP
# thread a process: two workers' trainings with two threads each on 2 cores collapse (408 s instead of
# about 100 for the robust-vs-clean training test).
test: setup
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" OMP_NUM_THREADS=1 \
		$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=25

# The contributor's loop, about a minute: no real servers or tools, no training or tuning for real.
test-fast: setup
	$(BIN)/pytest -m "not integration and not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/hadolint docker/Dockerfile docker/Dockerfile.gpu docker/mlflow.Dockerfile docker/base.Dockerfile

# The manual (mkdocs.yml, docs/) into site/; --strict fails on a broken link, anchor or include.
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/python benchmarks/bench_ingest_validate.py

clean:
	rm -rf data/manifest.csv data/images data/splits data/corrupted data/cache reports

image: image-cpu image-gpu

image-cpu:
	$(BUILD) -f docker/Dockerfile $(BUILD_ARGS) --build-arg GIT_SHA=$(GIT_SHA) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):$(VERSION)-$(GIT_SHA) .

image-gpu:
	$(BUILD) -f docker/Dockerfile.gpu --build-arg GIT_SHA=$(GIT_SHA) \
		-t $(GPU_IMAGE):$(VERSION) -t $(GPU_IMAGE):$(VERSION)-$(GIT_SHA) .

image-mlflow:
	$(BUILD) -f docker/mlflow.Dockerfile $(if $(BASE),--build-arg BASE=$(BASE)) \
		-t $(MLFLOW_IMAGE):$(VERSION) docker

base-image:
	sh docker/base-image.sh $(CONTAINER_TOOL) $(LOCAL_BASE)

# buildah and debootstrap from Debian's packages: what the image tests (and `make base-image`) need where
# no Docker engine runs. As root, or through sudo.
image-tools:
	@if command -v buildah >/dev/null && command -v debootstrap >/dev/null; then exit 0; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap

# Debian's Chromium for the browser tests (tests/support/browser.py); Playwright never downloads one.
browser-tools:
	@if command -v chromium >/dev/null; then exit 0; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation

push: image
	$(CONTAINER_TOOL) push $(IMAGE):$(VERSION) && $(CONTAINER_TOOL) push $(IMAGE):$(VERSION)-$(GIT_SHA)
	$(CONTAINER_TOOL) push $(GPU_IMAGE):$(VERSION) && $(CONTAINER_TOOL) push $(GPU_IMAGE):$(VERSION)-$(GIT_SHA)
