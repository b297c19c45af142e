# The two commands a new user needs: `make run` and `make test`. Both build .venv/ first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench clean image push

# Images for the Kubeflow pipeline, tagged <version> and <version>-<git sha>: `make image REGISTRY=...`.
REGISTRY ?= ghcr.io/steelflow
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
GIT_SHA  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE    := $(REGISTRY)/steelflow
GPU_IMAGE := $(REGISTRY)/steelflow-gpu

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check pip==25.3
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

test: setup
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/hadolint docker/Dockerfile docker/Dockerfile.gpu docker/mlflow.Dockerfile

bench: setup
	$(BIN)/python benchmarks/bench_ingest_validate.py

clean:
	rm -rf data/manifest.csv data/images data/splits data/corrupted data/cache reports

image:
	docker build -f docker/Dockerfile --build-arg GIT_SHA=$(GIT_SHA) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):$(VERSION)-$(GIT_SHA) .
	docker build -f docker/Dockerfile.gpu --build-arg GIT_SHA=$(GIT_SHA) \
		-t $(GPU_IMAGE):$(VERSION) -t $(GPU_IMAGE):$(VERSION)-$(GIT_SHA) .

push: image
	docker push $(IMAGE):$(VERSION) && docker push $(IMAGE):$(VERSION)-$(GIT_SHA)
	docker push $(GPU_IMAGE):$(VERSION) && docker push $(GPU_IMAGE):$(VERSION)-$(GIT_SHA)
