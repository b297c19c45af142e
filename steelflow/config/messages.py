"""A pydantic validation error as one line per problem, naming the dotted key and what was allowed there."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from steelflow.config.corrupt import CONDITION_KINDS
from steelflow.config.params import Params


def one_line(error: ValidationError) -> str:
    """Every problem of ``error``, each as :func:`describe` says it, joined by ``; ``."""
    return "; ".join(describe(err) for err in error.errors())


def describe(err: Any) -> str:
    """One entry of ``ValidationError.errors()`` as ``'dotted.key': what is wrong (got value)``."""
    parts = err["loc"]
    kept = [p for i, p in enumerate(parts) if not _is_union_tag(p, parts[i - 1] if i else None)]
    loc = ".".join(str(p) for p in kept)
    kind = err["type"]
    if kind == "missing":
        return f"missing key '{loc}'"
    if kind == "strict_bool":  # raised for the section; the key at fault is in the context
        ctx = err["ctx"]
        return f"'{'.'.join(filter(None, (loc, ctx['key'])))}': {ctx['reason']} (got {ctx['value']!r})"
    if kind == "extra_forbidden":
        parent = err["loc"][:-1]
        allowed = _allowed_keys(parent)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key '{loc}'{hint}"
    return f"'{loc}': {err['msg']} (got {err.get('input')!r})"


def _is_union_tag(part: Any, before: Any) -> bool:
    """Pydantic puts a condition's kind into an error's location, right after the list index."""
    return isinstance(before, int) and isinstance(part, str) and part in CONDITION_KINDS


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    """The keys a section accepts, found by walking the config classes along an error's location."""
    candidates: list[type[BaseModel]] = [Params]
    for i, part in enumerate(parent):
        if isinstance(part, int):
            continue
        if _is_union_tag(part, parent[i - 1] if i else None):  # a condition: the class of this kind
            candidates = [
                m
                for m in candidates
                if "kind" in m.model_fields and part in m.model_fields["kind"].annotation.__args__
            ]
            continue
        fields = {f.alias or n: f for m in candidates for n, f in m.model_fields.items()}
        if part not in fields:
            return []
        candidates = _models_in(fields[part].annotation)
    if len(candidates) != 1:
        return []
    return sorted(f.alias or n for n, f in candidates[0].model_fields.items())


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Config classes inside a type: ``X``, ``list[X]``, ``A | B``, ``Annotated[...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]
