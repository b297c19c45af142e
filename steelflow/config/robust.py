"""``train.robust``: robust training's corruption families, one config class each, and the section of them.

Each family is registered in :data:`FAMILIES` with its defaults; :class:`RobustConfig` has one field per
registered family, in registration order (the order params.yaml shows them). What a family does is its
function in :mod:`steelflow.data.augment`, registered against the same name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from steelflow.config.registries import Registry
from steelflow.config.section import Section, Span

FAMILIES: Registry[Any] = Registry("augmentation family")
Shape = Literal["spot", "multi_spot", "gradient", "random_field", "glare"]


class _Family(Section):
    """One family of robust-training corruptions: drawn for each image with probability ``p``."""

    p: float = Field(ge=0, le=1, description="probability that an image gets this family")

    @model_validator(mode="after")
    def _ordered(self) -> _Family:
        for name, value in self:
            if type(self).model_fields[name].annotation == Span and value[0] > value[1]:
                raise ValueError(f"{name}: low ({value[0]}) > high ({value[1]})")
        return self


@FAMILIES.register("overlay", default={"p": 0.0})
class OverlayFamily(_Family):
    weight: Span = Field(
        default=(0.1, 0.4), description="range of the weight of another image's texture added to this one"
    )

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: Span) -> Span:
        if v[0] < 0 or v[1] > 1:  # (low <= high: _Family._ordered checks every span)
            raise ValueError(f"must lie in [0, 1], got {list(v)}")
        return v


@FAMILIES.register(
    "illumination",
    default={
        "p": 0.8,
        "strength": (0.2, 1.3),
        "shapes": ("spot", "multi_spot", "gradient", "random_field", "glare"),
    },
)
class IlluminationFamily(_Family):
    """A smooth multiplicative gain ``1 + s·f``, ``f`` a field in [−1, 1] of one of ``shapes``."""

    strength: Span = Field(description="range of s; above 1 parts of the image go black")
    shapes: tuple[Shape, ...] = Field(min_length=1)

    @field_validator("strength")
    @classmethod
    def _strength(cls, v: Span) -> Span:
        if v[0] < 0 or v[1] > 2:
            raise ValueError(f"must lie in [0, 2], got {list(v)}")
        return v


@FAMILIES.register("gamma", default={"p": 0.4, "gamma": (0.6, 1.7), "gain": (0.8, 1.25)})
class GammaFamily(_Family):
    gamma: Span = Field(description="range of the exponent (x ** gamma)")
    gain: Span = Field(default=(1.0, 1.0), description="range of the exposure gain applied with it")

    @field_validator("gamma", "gain")
    @classmethod
    def _positive(cls, v: Span) -> Span:
        if v[0] <= 0:
            raise ValueError(f"must be > 0, got {list(v)}")
        return v


@FAMILIES.register("contrast", default={"p": 0.4, "factor": (0.4, 1.6)})
class ContrastFamily(_Family):
    factor: Span = Field(description="range of the contrast factor around the image mean (1 = unchanged)")

    @field_validator("factor")
    @classmethod
    def _positive(cls, v: Span) -> Span:
        if v[0] < 0:
            raise ValueError(f"must be >= 0, got {list(v)}")
        return v


@FAMILIES.register("tone_curve", default={"p": 0.3})
class ToneCurveFamily(_Family):
    """A random monotone tone curve: piecewise linear over ``knots`` equal input segments, each with its own
    slope (log-normal, ``spread`` wide), rescaled to map [0, 1] onto [0, 1]."""

    knots: tuple[int, int] = Field(default=(3, 8), description="range of the number of linear segments")
    spread: Span = Field(
        default=(0.5, 1.5), description="range of the std of the segments' log-slopes: 0 = a straight line"
    )

    @field_validator("knots")
    @classmethod
    def _knots(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[0] > v[1] or v[1] > 64:
            raise ValueError(f"must be 1 <= low <= high <= 64, got {list(v)}")
        return v

    @field_validator("spread")
    @classmethod
    def _spread(cls, v: Span) -> Span:
        if v[0] < 0 or v[1] > 4:
            raise ValueError(f"must lie in [0, 4], got {list(v)}")
        return v


@FAMILIES.register("noise", default={"p": 0.4, "snr_db": (12.0, 40.0), "streak": (0.0, 0.5)})
class NoiseFamily(_Family):
    snr_db: Span = Field(description="range of the signal-to-noise ratio of additive Gaussian noise, dB")
    spectrum: Span = Field(
        default=(0.0, 0.0),
        description="range of β in the noise's isotropic power spectrum 1/f^β: 0 white, 1 pink, 2 blotchy",
    )
    streak: Span = Field(
        default=(0.0, 0.0),
        description="range of the noise's correlation length along a random direction, a fraction of the "
        "side: 0 no direction, 0.5 streaks half the image long (scan lines, read-out, rolling marks)",
    )

    @field_validator("streak")
    @classmethod
    def _streak(cls, v: Span) -> Span:
        if v[0] < 0 or v[1] > 2:  # (low <= high: _Family._ordered checks every span)
            raise ValueError(f"must lie in [0, 2], got {list(v)}")
        return v

    @field_validator("spectrum")
    @classmethod
    def _spectrum(cls, v: Span) -> Span:
        if v[0] < 0 or v[1] > 4:  # (low <= high: _Family._ordered checks every span)
            raise ValueError(f"must lie in [0, 4], got {list(v)}")
        return v


@FAMILIES.register("motion_blur", default={"p": 0.3, "length": (0.01, 0.05)})
class MotionBlurFamily(_Family):
    length: Span = Field(description="range of the blur length, as a fraction of the image side")

    @field_validator("length")
    @classmethod
    def _fraction(cls, v: Span) -> Span:
        if v[0] < 0 or v[1] > 0.25:
            raise ValueError(f"must lie in [0, 0.25], got {list(v)}")
        return v


@FAMILIES.register("defocus", default={"p": 0.2, "sigma": (0.005, 0.015)})
class DefocusFamily(_Family):
    sigma: Span = Field(description="range of the Gaussian defocus width, as a fraction of the image side")

    @field_validator("sigma")
    @classmethod
    def _fraction(cls, v: Span) -> Span:
        if v[0] <= 0 or v[1] > 0.1:
            raise ValueError(f"must lie in (0, 0.1], got {list(v)}")
        return v


class ConsistencyConfig(Section):
    """AugMix's Jensen–Shannon consistency loss (Hendrycks et al., ICLR 2020, §3) over a clean view and two
    views under this section's families (:mod:`steelflow.training.consistency`)."""

    weight: float = Field(
        default=0.0, ge=0, le=100, description="λ of the Jensen–Shannon term; 0 = off; AugMix uses 12"
    )
    ce: Literal["clean", "all"] = Field(
        default="clean",
        description="the cross-entropy of the clean view only (AugMix's) | the mean of all three views'",
    )


class _Robust(Section):
    enabled: bool = Field(default=False, description="false = clean training, as in the paper")

    @field_validator("consistency", check_fields=False)
    @classmethod
    def _views_differ(cls, v: ConsistencyConfig, info: ValidationInfo) -> ConsistencyConfig:
        # the families come before `consistency`, so info.data holds those that validated
        drawn = [f for f in FAMILIES if f in info.data and info.data[f].p > 0]
        if v.weight > 0 and info.data.get("enabled") and not drawn:
            raise ValueError(
                f"weight {v.weight:g} needs a family with p > 0 "
                "(its augmented views would equal the clean one)"
            )
        return v


RobustConfig = create_model(
    "RobustConfig",
    __base__=_Robust,
    __module__=__name__,
    __doc__="""Robust training: photometric and optical corruptions of every training batch, on the device.

    Its own families (steelflow.data.augment), never the evaluation corruptions. ``enabled: false`` is the
    paper's clean training (the families and the consistency loss are then off). ``consistency`` adds
    AugMix's Jensen–Shannon loss between a clean view and two views under the families.
    """,
    **{name: (FAMILIES.config(name), FAMILIES.default(name)) for name in FAMILIES},
    consistency=(ConsistencyConfig, ConsistencyConfig()),
)
ROBUST_FAMILIES = FAMILIES.names
