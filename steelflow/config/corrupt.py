"""``corrupt``: the conditions of the paper's Table 1 and the hold-out block, one config class per kind,
and the graded ladders (``corrupt.graded``: each family at five severities, as ImageNet-C grades them).

Each kind is registered in :data:`CONDITIONS`; its function registers against the same name in
:mod:`steelflow.data.corruptions`. The ``kind`` field is the registry key and the union's tag.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steelflow.config.registries import Registry
from steelflow.config.section import NAME, Section

CONDITIONS: Registry[Any] = Registry("corruption kind")


class _Condition(Section):
    name: str

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not NAME.match(v) or v in ("clean", "original"):
            raise ValueError(f"{v!r} is not usable as a folder name (letters, digits, '_', '.', '-')")
        return v


@CONDITIONS.register()
class LuminanceCondition(_Condition):
    kind: Literal["luminance"]
    alpha: float = Field(ge=0, le=1, description="strength of the non-uniform illumination")


@CONDITIONS.register()
class NoiseCondition(_Condition):
    kind: Literal["noise"]
    snr_db: float = Field(gt=-20, le=100, description="signal-to-noise ratio of the added noise, dB")


@CONDITIONS.register()
class BlurCondition(_Condition):
    kind: Literal["blur"]
    length: float = Field(gt=0, le=100, description="motion length, pixels")


# Hold-out kinds: families robust training never augments with (the README's hold-out block).


@CONDITIONS.register()
class JpegCondition(_Condition):
    kind: Literal["jpeg"]
    quality: int = Field(ge=1, le=95, description="JPEG quality the image is re-encoded at")


@CONDITIONS.register()
class SaltPepperCondition(_Condition):
    kind: Literal["salt_pepper"]
    amount: float = Field(gt=0, le=0.5, description="fraction of pixels set to black or white")


@CONDITIONS.register()
class PixelateCondition(_Condition):
    kind: Literal["pixelate"]
    factor: int = Field(ge=2, le=32, description="block size, pixels: resolution lost to a coarse sensor")


@CONDITIONS.register()
class StripesCondition(_Condition):
    kind: Literal["stripes"]
    strength: float = Field(gt=0, le=1, description="row/column banding, std as a fraction of the mean")


@CONDITIONS.register()
class SpeckleCondition(_Condition):
    kind: Literal["speckle"]
    sigma: float = Field(gt=0, le=1, description="multiplicative noise: I · (1 + n), n ~ N(0, sigma²)")


@CONDITIONS.register()
class PosterizeCondition(_Condition):
    kind: Literal["posterize"]
    bits: int = Field(ge=1, le=7, description="grey levels kept: 2**bits (a low bit depth, a badly set gain)")


@CONDITIONS.register()
class ElasticCondition(_Condition):
    kind: Literal["elastic"]
    displacement: float = Field(
        gt=0, le=0.2, description="peak of a smooth random warp, as a fraction of the image side"
    )


CONDITION_KINDS = CONDITIONS.names
Condition = CONDITIONS.union()


class GradedConfig(Section):
    """Each family (a corruption kind) at ``severities`` levels of one of its parameters, mildest first.

    ``families`` maps a kind to ``{parameter: [severity 1, ..., severity n]}``; severity ``s`` of family
    ``f`` is the condition ``<f>_s<s>`` (docs: Robustness, Graded corruptions, says how each ladder was
    chosen). A ladder must be strictly monotone; each level must be a valid value of the kind's parameter.
    """

    severities: int = Field(default=5, ge=2, le=10, description="levels per family (ImageNet-C: 5)")
    families: dict[str, dict[str, list[int | float]]] = Field(min_length=1)
    per_class: int | None = Field(
        default=None,
        ge=1,
        description="test images per class in each graded set (the first of each class); null = all",
    )

    @model_validator(mode="after")
    def _ladders(self) -> GradedConfig:
        for family, ladder in self.families.items():
            if family not in CONDITIONS:
                raise ValueError(
                    f"families.{family}: unknown corruption kind (allowed: {', '.join(CONDITIONS.names)})"
                )
            if len(ladder) != 1:
                raise ValueError(
                    f"families.{family}: give exactly one parameter and its ladder, got {ladder}"
                )
            ((field, levels),) = ladder.items()
            allowed = [n for n in CONDITIONS.config(family).model_fields if n not in ("name", "kind")]
            if field not in allowed:
                raise ValueError(
                    f"families.{family}: {field!r} is not a parameter of it (allowed: {allowed})"
                )
            if len(levels) != self.severities:
                raise ValueError(
                    f"families.{family}.{field}: {len(levels)} levels, corrupt.graded.severities is "
                    f"{self.severities}"
                )
            steps = [b - a for a, b in zip(levels, levels[1:], strict=False)]
            if not (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
                raise ValueError(f"families.{family}.{field}: {levels} is not strictly monotone")
            self.conditions(family)  # each level within the kind's range (its config class checks)
        return self

    def conditions(self, family: str) -> list[Any]:
        """The family's conditions, severity 1 first: ``<family>_s1`` ... ``<family>_s<n>``."""
        ((field, levels),) = self.families[family].items()
        cls = CONDITIONS.config(family)
        out = []
        for s, level in enumerate(levels, 1):
            value = int(level) if cls.model_fields[field].annotation is int and level == int(level) else level
            try:
                out.append(cls(name=severity_name(family, s), kind=family, **{field: value}))
            except ValueError as e:
                raise ValueError(f"families.{family}.{field}: severity {s} = {level}: {_first(e)}") from None
        return out

    @property
    def all_conditions(self) -> list[Any]:
        return [c for family in self.families for c in self.conditions(family)]

    def ladder(self, family: str) -> tuple[str, list[float]]:
        """The family's parameter and its levels."""
        ((field, levels),) = self.families[family].items()
        return field, list(levels)


def severity_name(family: str, severity: int) -> str:
    """The condition name of ``family`` at ``severity`` (its folder under data/corrupted)."""
    return f"{family}_s{severity}"


def _first(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    return errors()[0]["msg"] if callable(errors) else str(e)


class CorruptConfig(Section):
    """``conditions``: the paper's Table 1 sets. ``holdout``: families training never sees, reported apart."""

    seed: int = 0
    conditions: list[Condition] = Field(min_length=1)
    holdout: list[Condition] = Field(default_factory=list)
    grid_per_class: int = Field(default=1, ge=1, le=4, description="example rows per class in the grid")
    graded: GradedConfig | None = Field(
        default=None, description="every family at several severities, for mCE; null = none"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> CorruptConfig:
        names = [c.name for c in self.all_conditions] + self.graded_names
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"condition names repeat (conditions and holdout together): {dup}")
        return self

    @property
    def all_conditions(self) -> list[Any]:
        return [*self.conditions, *self.holdout]

    @property
    def holdout_names(self) -> list[str]:
        return [c.name for c in self.holdout]

    @property
    def graded_conditions(self) -> list[Any]:
        """The graded ladders' conditions, family by family, severity 1 first (none when not graded)."""
        return self.graded.all_conditions if self.graded is not None else []

    @property
    def graded_names(self) -> list[str]:
        return [c.name for c in self.graded_conditions]

    def graded_group(self, family: str) -> str:
        """``holdout`` for a family whose kind is in ``corrupt.holdout``, else ``table1``."""
        return "holdout" if family in {c.kind for c in self.holdout} else "table1"
