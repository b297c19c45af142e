"""Vendored CRDs (``pipelines/crds/``) as strict JSON-schema validators: what the TrainJob and
InferenceService tests check the manifests steelflow builds against, with no cluster."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.support.helpers import REPO

CRDS = REPO / "pipelines" / "crds"


@functools.cache
def crd(path: Path) -> dict:
    """The CustomResourceDefinition in ``path`` (the first YAML document after the source comment)."""
    return next(d for d in yaml.safe_load_all(Path(path).read_text()) if d)


@functools.cache
def validator(path: Path) -> jsonschema.Validator:
    """The CRD's one version's openAPIV3Schema, strict: the API server (``fieldValidation=Strict``, which
    ``kubectl apply`` and the TrainJob launcher ask for) refuses a field the schema does not declare, so the
    copy here does too."""
    (version,) = crd(path)["spec"]["versions"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    open_ended = "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields")
    if out.get("type") == "object" and "properties" in out and not open_ended:
        out["additionalProperties"] = False
    return out


def problems(path: Path, manifest: dict) -> list[str]:
    """Every way ``manifest`` breaks the schema of the CRD in ``path``, as ``dotted.path: message``."""
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(path).iter_errors(manifest)
    ]
