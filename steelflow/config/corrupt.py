"""``corrupt``: the conditions of the paper's Table 1 and the hold-out block, one config class per kind.

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


class CorruptConfig(Section):
    """``conditions``: the paper's Table 1 sets. ``holdout``: families training never sees, reported apart."""

    seed: int = 0
    conditions: list[Condition] = Field(min_length=1)
    holdout: list[Condition] = Field(default_factory=list)
    grid_per_class: int = Field(default=1, ge=1, le=4, description="example rows per class in the grid")

    @model_validator(mode="after")
    def _unique_names(self) -> CorruptConfig:
        names = [c.name for c in self.all_conditions]
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
