"""The base of every config class: one section (or sub-section) of params.yaml."""

from __future__ import annotations

import re
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a name that is also a folder name
Span = tuple[float, float]  # a (low, high) range a value is drawn from


class Section(BaseModel):
    """Base for every section: unknown keys are errors (a typo must not silently fall back to a default),
    and a boolean is never a number nor a number a boolean (pydantic alone reads ``epochs: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_number_swap(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias or name
                wrong = _bool_number_swap(field.annotation, data.get(key))
                if wrong:
                    ctx = {"key": key, "reason": wrong, "value": data[key]}
                    raise PydanticCustomError("strict_bool", "'{key}': {reason}", ctx)
        return data


def _bool_number_swap(annotation: Any, value: Any) -> str | None:
    """Why ``value`` may not stand for ``annotation`` (true/false where a number goes, or a number where
    true/false goes), looking inside lists, tuples and unions; None when it may."""
    if value is None:
        return None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _bool_number_swap(args[0], value)
    if origin in (Union, UnionType):
        reasons = [_bool_number_swap(a, value) for a in args if a is not type(None)]
        return reasons[0] if reasons and all(reasons) else None
    if origin in (list, tuple) and isinstance(value, list | tuple):
        items = args[:1] * len(value) if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        return next((r for a, v in zip(items, value, strict=False) if (r := _bool_number_swap(a, v))), None)
    if annotation is bool and not isinstance(value, bool):
        return "expected true or false"
    if annotation in (int, float) and isinstance(value, bool):
        return f"expected {'an integer' if annotation is int else 'a number'}, not true/false"
    return None
