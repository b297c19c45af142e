"""params.yaml as a typed, validated config tree.

One section of params.yaml = one config class. A step receives its own section (and the shared ``data``
section), never the whole tree. Loading fails early, before any work, with the dotted name of the key at
fault and what was allowed there.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from steelflow import redact
from steelflow.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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


# --- data -------------------------------------------------------------------------------------------


class SyntheticConfig(Section):
    """Procedural steel images (the embedded default source)."""

    per_class: int = Field(gt=0, description="images generated per class")
    image_size: int = Field(ge=32, le=1024, description="side of the square images, pixels")
    seed: int = 0


class DataConfig(Section):
    """Shared by every step: where images come from and how they are cached for training."""

    source: str = Field(min_length=1, description="'synthetic', a folder of images, or s3://bucket/prefix")
    classes: list[str] | None = Field(
        default=None, description="expected class names; null = the classes found in the source"
    )
    synthetic: SyntheticConfig
    cache_size: int = Field(ge=8, le=1024, description="side the decoded-image cache stores images at")
    s3_retries: int = Field(default=5, ge=1, description="attempts per S3 request (an s3:// source)")
    max_pixels: int = Field(
        default=4096 * 4096, ge=1, description="images larger than this are not decoded (header only)"
    )
    white_level: float | None = Field(
        default=None, gt=0, description="16/32-bit images: value shown as white; null = each image's range"
    )
    reencode: Literal["png"] | None = Field(
        default=None, description="ingest stores every image as this lossless format; null = as the source"
    )
    outside_links: Literal["refuse", "skip"] = Field(
        default="refuse",
        description="a link in the source folder whose real path is outside it: refuse (error) | skip (warn)",
    )
    multi_frame: Literal["refuse", "expand"] = Field(
        default="refuse",
        description="multi-page TIFF or animation: refuse (error) | expand (one PNG image per page or frame)",
    )

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if len(v) < 2:
                raise ValueError("needs at least two classes")
            if len(set(v)) != len(v):
                raise ValueError(f"class names repeat: {v}")
        return v

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"


# --- validate ---------------------------------------------------------------------------------------


class QualityConfig(Section):
    """Image-quality flags (steelflow.data.quality): a flag is a warning unless ``action`` is fail."""

    action: Literal["warn", "fail"] = "warn"
    dark: float = Field(default=20, ge=0, le=255, description="mean brightness below this is dark")
    bright: float = Field(default=240, ge=0, le=255, description="mean brightness above this is bright")
    blurry: float = Field(default=0.15, ge=0, description="sharpness below this is blurry")
    low_information: float = Field(default=2.0, ge=0, le=8, description="entropy (bits) below this")
    odd_size: float = Field(default=2.0, gt=1, description="a side more than this factor off the median")

    @model_validator(mode="after")
    def _ordered(self) -> QualityConfig:
        if self.dark >= self.bright:
            raise ValueError(f"dark ({self.dark:g}) must be below bright ({self.bright:g})")
        return self


class ValidateConfig(Section):
    min_per_class: int = Field(ge=1)
    duplicates: Literal["drop", "fail"] = "drop"
    near_duplicates: Literal["drop", "fail", "warn"] = "warn"
    near_duplicate_distance: int = Field(
        default=8, ge=0, le=32, description="max differing bits of two 64-bit perceptual hashes"
    )
    shortcuts: Literal["fail", "warn", "off"] = "fail"
    shortcut_margin: float = Field(
        default=0.1, ge=0, le=1, description="metadata-only accuracy allowed above the majority baseline"
    )
    quality: QualityConfig = QualityConfig()
    min_width: int = Field(ge=1)
    max_width: int = Field(ge=1)
    min_height: int = Field(ge=1)
    max_height: int = Field(ge=1)
    modes: list[Literal["1", "L", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK", "LA"]] = Field(min_length=1)

    @model_validator(mode="after")
    def _bounds(self) -> ValidateConfig:
        if self.min_width > self.max_width:
            raise ValueError(f"min_width ({self.min_width}) > max_width ({self.max_width})")
        if self.min_height > self.max_height:
            raise ValueError(f"min_height ({self.min_height}) > max_height ({self.max_height})")
        return self


# --- split ------------------------------------------------------------------------------------------


class SplitConfig(Section):
    """Paper §4.3: 70 % train / 30 % test; ``val`` is a fraction of train held out for early stopping."""

    test: float = Field(gt=0, lt=1)
    val: float = Field(ge=0, lt=1)
    seed: int = 0


# --- corrupt ----------------------------------------------------------------------------------------


class _Condition(Section):
    name: str

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.match(v) or v in ("clean", "original"):
            raise ValueError(f"{v!r} is not usable as a folder name (letters, digits, '_', '.', '-')")
        return v


class LuminanceCondition(_Condition):
    kind: Literal["luminance"]
    alpha: float = Field(ge=0, le=1, description="strength of the non-uniform illumination")


class NoiseCondition(_Condition):
    kind: Literal["noise"]
    snr_db: float = Field(gt=-20, le=100, description="signal-to-noise ratio of the added noise, dB")


class BlurCondition(_Condition):
    kind: Literal["blur"]
    length: float = Field(gt=0, le=100, description="motion length, pixels")


# Hold-out kinds: families robust training never augments with (the README's hold-out block).


class JpegCondition(_Condition):
    kind: Literal["jpeg"]
    quality: int = Field(ge=1, le=95, description="JPEG quality the image is re-encoded at")


class SaltPepperCondition(_Condition):
    kind: Literal["salt_pepper"]
    amount: float = Field(gt=0, le=0.5, description="fraction of pixels set to black or white")


class PixelateCondition(_Condition):
    kind: Literal["pixelate"]
    factor: int = Field(ge=2, le=32, description="block size, pixels: resolution lost to a coarse sensor")


class StripesCondition(_Condition):
    kind: Literal["stripes"]
    strength: float = Field(gt=0, le=1, description="row/column banding, std as a fraction of the mean")


class SpeckleCondition(_Condition):
    kind: Literal["speckle"]
    sigma: float = Field(gt=0, le=1, description="multiplicative noise: I · (1 + n), n ~ N(0, sigma²)")


class PosterizeCondition(_Condition):
    kind: Literal["posterize"]
    bits: int = Field(ge=1, le=7, description="grey levels kept: 2**bits (a low bit depth, a badly set gain)")


class ElasticCondition(_Condition):
    kind: Literal["elastic"]
    displacement: float = Field(
        gt=0, le=0.2, description="peak of a smooth random warp, as a fraction of the image side"
    )


_CONDITIONS = (
    LuminanceCondition,
    NoiseCondition,
    BlurCondition,
    JpegCondition,
    SaltPepperCondition,
    PixelateCondition,
    StripesCondition,
    SpeckleCondition,
    PosterizeCondition,
    ElasticCondition,
)
CONDITION_KINDS = tuple(c.model_fields["kind"].annotation.__args__[0] for c in _CONDITIONS)
Condition = Annotated[
    LuminanceCondition
    | NoiseCondition
    | BlurCondition
    | JpegCondition
    | SaltPepperCondition
    | PixelateCondition
    | StripesCondition
    | SpeckleCondition
    | PosterizeCondition
    | ElasticCondition,
    Field(discriminator="kind"),
]


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


# --- model, train, evaluate, tracking ---------------------------------------------------------------


class ModelConfig(Section):
    """Which CASI-Net variant, at which input size (paper: casinet at 300 x 300), with which input stage."""

    variant: str = Field(min_length=1, description="a name from `steelflow models`")
    image_size: int = Field(ge=8, le=1024, description="side the model resizes its input to")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout before the classifier's last layer")
    input_norm: Literal["none", "standardize", "flatfield", "local"] = Field(
        default="none", description="input stage inside the network; none = the paper's"
    )
    input_norm_sigma: float = Field(
        default=0.1, gt=0, le=0.3, description="flatfield/local: low-pass width, fraction of image_size"
    )


class AugmentConfig(Section):
    """Training-time augmentation, applied to cached uint8 images on the fly."""

    hflip: bool = True
    vflip: bool = True
    rot90: bool = False
    brightness: float = Field(default=0.0, ge=0, le=1, description="max relative brightness change")
    contrast: float = Field(default=0.0, ge=0, le=1, description="max relative contrast change")


Span = tuple[float, float]


class _Family(Section):
    """One family of robust-training corruptions: drawn for each image with probability ``p``."""

    p: float = Field(ge=0, le=1, description="probability that an image gets this family")

    @model_validator(mode="after")
    def _ordered(self) -> _Family:
        for name, value in self:
            if type(self).model_fields[name].annotation == Span and value[0] > value[1]:
                raise ValueError(f"{name}: low ({value[0]}) > high ({value[1]})")
        return self


Shape = Literal["spot", "multi_spot", "gradient", "random_field", "glare"]


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


class GammaFamily(_Family):
    gamma: Span = Field(description="range of the exponent (x ** gamma)")
    gain: Span = Field(default=(1.0, 1.0), description="range of the exposure gain applied with it")

    @field_validator("gamma", "gain")
    @classmethod
    def _positive(cls, v: Span) -> Span:
        if v[0] <= 0:
            raise ValueError(f"must be > 0, got {list(v)}")
        return v


class ContrastFamily(_Family):
    factor: Span = Field(description="range of the contrast factor around the image mean (1 = unchanged)")

    @field_validator("factor")
    @classmethod
    def _positive(cls, v: Span) -> Span:
        if v[0] < 0:
            raise ValueError(f"must be >= 0, got {list(v)}")
        return v


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


class MotionBlurFamily(_Family):
    length: Span = Field(description="range of the blur length, as a fraction of the image side")

    @field_validator("length")
    @classmethod
    def _fraction(cls, v: Span) -> Span:
        if v[0] < 0 or v[1] > 0.25:
            raise ValueError(f"must lie in [0, 0.25], got {list(v)}")
        return v


class DefocusFamily(_Family):
    sigma: Span = Field(description="range of the Gaussian defocus width, as a fraction of the image side")

    @field_validator("sigma")
    @classmethod
    def _fraction(cls, v: Span) -> Span:
        if v[0] <= 0 or v[1] > 0.1:
            raise ValueError(f"must lie in (0, 0.1], got {list(v)}")
        return v


class RobustConfig(Section):
    """Robust training: photometric and optical corruptions of every training batch, on the device.

    Its own families (steelflow.data.augment), never the evaluation corruptions. ``enabled: false`` is the
    paper's clean training.
    """

    enabled: bool = Field(default=False, description="false = clean training, as in the paper")
    overlay: OverlayFamily = OverlayFamily(p=0.0)
    illumination: IlluminationFamily = IlluminationFamily(
        p=0.8, strength=(0.2, 1.3), shapes=("spot", "multi_spot", "gradient", "random_field", "glare")
    )
    gamma: GammaFamily = GammaFamily(p=0.4, gamma=(0.6, 1.7), gain=(0.8, 1.25))
    contrast: ContrastFamily = ContrastFamily(p=0.4, factor=(0.4, 1.6))
    tone_curve: ToneCurveFamily = ToneCurveFamily(p=0.3)
    noise: NoiseFamily = NoiseFamily(p=0.4, snr_db=(12.0, 40.0), streak=(0.0, 0.5))
    motion_blur: MotionBlurFamily = MotionBlurFamily(p=0.3, length=(0.01, 0.05))
    defocus: DefocusFamily = DefocusFamily(p=0.2, sigma=(0.005, 0.015))


ROBUST_FAMILIES = tuple(name for name in RobustConfig.model_fields if name != "enabled")


class TrainConfig(Section):
    """Paper §4.3: SGD, momentum 0.9, weight decay 1e-3, batch 16."""

    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    step_epochs: int = Field(
        default=10, ge=1, description="with schedule: step, decay every this many epochs"
    )
    gamma: float = Field(default=0.1, gt=0, le=1, description="with schedule: step, the decay factor")
    patience: int = Field(ge=0, description="early stopping on val accuracy; 0 = never stop early")
    seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    robust: RobustConfig = RobustConfig()
    threads: int | None = Field(default=None, ge=1, description="CPU threads; null = PyTorch's default")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: fp32 on CPU, bf16 (or fp16) autocast on CUDA"
    )
    channels_last: Literal["auto", "on", "off"] = Field(default="auto", description="auto = on")
    compile: bool = Field(default=False, description="torch.compile the model")
    use_tuned: bool = Field(
        default=False, description="apply reports/tuning/best_params.yaml (from `steelflow tune`) on top"
    )


class EvaluateConfig(Section):
    batch_size: int = Field(default=64, ge=1)
    attention_examples: int = Field(default=1, ge=1, le=4, description="test images per class in the picture")


class MlflowConfig(Section):
    tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        description="overridden by the MLFLOW_TRACKING_URI environment variable",
    )
    experiment: str = Field(default="steelflow", min_length=1)
    retries: int = Field(
        default=3, ge=0, le=10, description="retries of a call while the tracking server is unreachable"
    )
    backoff_factor: float = Field(
        default=1.0, ge=0, le=60, description="first retry's wait in seconds; doubles each time"
    )
    timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=300,
        description="how long a request waits for the tracking server's answer (MLflow's own default is "
        "120 s); with retries and backoff it bounds how long a step waits for a server that is gone",
    )
    log_checkpoints: bool = Field(
        default=False,
        description="also log models/checkpoint.pt (for --resume elsewhere; ~27 MB a run at 64 px)",
    )
    _from_env: str | None = PrivateAttr(default=None)  # MLFLOW_TRACKING_URI, set when params are loaded

    @property
    def effective_uri(self) -> str:
        """Where tracking goes: ``MLFLOW_TRACKING_URI`` when it was set at load, else ``tracking_uri``."""
        return self._from_env or self.tracking_uri


# --- registry -------------------------------------------------------------------------------------


class GatesConfig(Section):
    """What a model must show before ``steelflow promote`` makes it the champion."""

    min_clean_accuracy: float = Field(ge=0, le=1, description="accuracy on the clean test set")
    min_worst_accuracy: float = Field(ge=0, le=1, description="accuracy on the hardest corrupted set")
    max_drop: float = Field(
        ge=0, le=1, description="largest allowed accuracy drop against the champion, on every condition"
    )
    min_holdout_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="worst accuracy over corrupt.holdout; null = no such gate"
    )


class ServingConfig(Section):
    """How the registered model runs wherever it is loaded (its ``model_config``)."""

    engine: Literal["onnx", "pytorch"] = Field(
        default="onnx", description="ONNX Runtime, or the PyTorch weights as a fallback"
    )
    intra_op_threads: int = Field(default=2, ge=0, description="threads inside an operator; 0 = all cores")
    inter_op_threads: int = Field(default=1, ge=0, description="operators run in parallel; 0 = ORT's choice")
    max_image_pixels: int = Field(
        default=25_000_000, ge=64, description="larger images are refused (HTTP 400), not decoded"
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="`steelflow serve` answers a larger request body with HTTP 413 without reading it; "
        "16 MiB holds 46 uncompressed 300 px RGB images (138 grey) as base64 JSON",
    )
    small_images: Literal["refuse", "flag", "allow"] = Field(
        default="refuse",
        description="an image whose shorter side is under min_side_fraction × data.cache_size: refuse "
        "(HTTP 400 / a row error naming its size), flag (classified, with a `warning` column), allow",
    )
    min_side_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="smallest shorter side, as a share of the side the model was trained at (0.5: blown up "
        "at most 2×)",
    )


class RegistryConfig(Section):
    name: str = Field(default="steel-defect-classifier", min_length=1, description="registered model name")
    gates: GatesConfig
    challenger: Literal["gated", "always"] = Field(
        default="gated",
        description="gated: `register` adds a version (and moves @challenger) only when the model passes "
        "registry.gates against the champion; always: every trained model",
    )
    description: str = Field(
        default="Steel-surface defect classifier (CASI-Net) from the steelflow pipeline: raw images in, "
        "class and probabilities out. @champion passed every promotion gate; @challenger is the newest "
        "candidate.",
        description="the registered model's description in the MLflow UI",
    )
    retries: int = Field(
        default=3, ge=0, le=10, description="retries of a call while the tracking server is unreachable"
    )
    backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="first retry's wait; doubles each time (each request waits "
        "mlflow.timeout_seconds at most)",
    )
    onnx_tolerance: float = Field(default=1e-4, gt=0, description="export-onnx: max |logit difference|")
    latency_runs: int = Field(default=20, ge=1, description="export-onnx: timed runs per batch size")
    serving: ServingConfig = ServingConfig()
    max_parity_diff: float = Field(
        default=1e-4, gt=0, description="register: max |Δp| between ONNX fp32 and PyTorch on the test set"
    )
    min_label_agreement: float = Field(
        default=1.0, ge=0, le=1, description="register: share of test images where both give one label"
    )
    quantize: Literal["none", "dynamic", "static"] = Field(
        default="none", description="int8 with ONNX Runtime: none, dynamic, or static (calibrated)"
    )
    max_quantized_drop: float = Field(
        default=0.005, ge=0, le=1, description="int8 may lose at most this accuracy on every condition"
    )
    calibration_images: int = Field(
        default=64, ge=1, description="training images that calibrate static quantization"
    )


# --- predict ----------------------------------------------------------------------------------------


class PredictConfig(Section):
    """``steelflow predict``: how many images it holds in memory at once, and what it opens."""

    batch_size: int = Field(default=64, ge=1, description="images read, decoded and classified at once")
    outside_links: Literal["refuse", "skip"] = Field(
        default="refuse",
        description="a link under a folder given whose real path is outside it: refuse (error) | skip (warn)",
    )


# --- tune -------------------------------------------------------------------------------------------


class SearchParam(Section):
    """One entry of ``tune.space``: a dotted params key and the range Optuna searches for it."""

    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0, description="float/int: grid step; null = continuous")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range(self) -> SearchParam:
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("categorical takes 'choices', not low/high/log")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.kind} takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.kind} needs both 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got low={self.low})")
        if self.log and self.step is not None:
            raise ValueError("log scale and step cannot be combined")
        if self.kind == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"int needs whole-number bounds (got {self.low}, {self.high})")
        return self

    def values(self) -> list[Any]:
        """The values at the edges of the range, for checking that the key accepts them."""
        if self.kind == "categorical":
            return list(self.choices or [])
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]


class SamplerConfig(Section):
    seed: int = 0
    startup_trials: int = Field(default=4, ge=0, description="random trials before TPE models the space")


class PrunerConfig(Section):
    """How trials are stopped early: multi-fidelity halving over epochs, or the median rule."""

    kind: Literal["successive_halving", "hyperband", "median", "none"] = "successive_halving"
    min_epochs: int = Field(
        default=1, ge=1, description="successive_halving/hyperband: the first rung (epochs every trial gets)"
    )
    reduction_factor: int = Field(
        default=3, ge=2, description="successive_halving/hyperband: 1 in this many trials climbs each rung"
    )
    startup_trials: int = Field(default=2, ge=0, description="median: finished trials before any pruning")
    warmup_epochs: int = Field(default=1, ge=0, description="median: epochs before a trial can be pruned")


class TuneConfig(Section):
    """Optuna search over params keys (``tune.space``); its best values feed ``train`` via train.use_tuned."""

    n_trials: int = Field(ge=1, description="finished trials (COMPLETE + PRUNED + FAIL) the study ends with")
    timeout: float | None = Field(default=None, gt=0, description="seconds per `steelflow tune`; null = none")
    objective: Literal["accuracy", "robust", "pareto"] = Field(
        default="accuracy",
        description="accuracy: clean validation accuracy; robust: under train.robust's families; "
        "pareto: both, as a multi-objective study",
    )
    robust_score: Literal["worst", "mean"] = Field(
        default="worst", description="robust/pareto: the worst or the mean family's validation accuracy"
    )
    max_clean_drop: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="pareto: best_params is the most robust top-rung trial within this of the best clean one",
    )
    baseline: bool = Field(
        default=True,
        description="a new study's first trial runs the hand-set values of tune.space's keys (params.yaml)",
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="a trial replaces the baseline as best_params only when it beats the baseline's "
        "top-rung score by more than this",
    )
    significance: float | None = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="a trial replaces the baseline only when it beats it in all but this share of paired "
        "bootstrap resamples of the validation images; null = off",
    )
    max_epochs: int | None = Field(
        default=None, ge=1, description="epochs of a trial that survives every rung; null = train.epochs"
    )
    workers: int = Field(default=1, ge=1, description="processes on the same study (`--workers` overrides)")
    storage: str = Field(
        default="sqlite:///optuna.db",
        min_length=1,
        description="SQLAlchemy URL of the study; STEELFLOW_OPTUNA_STORAGE wins when set",
    )
    _from_env: str | None = PrivateAttr(default=None)  # STEELFLOW_OPTUNA_STORAGE, set when params are loaded

    @property
    def effective_storage(self) -> str:
        """The study's storage: ``STEELFLOW_OPTUNA_STORAGE`` when it was set at load, else ``storage``."""
        return self._from_env or self.storage

    heartbeat_seconds: int = Field(default=10, ge=1, description="a running trial's heartbeat interval")
    grace_seconds: int = Field(default=60, ge=1, description="a trial silent this long is failed and retried")
    retries: int = Field(default=1, ge=0, description="how often a trial whose worker died is run again")
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    space: dict[str, SearchParam] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "epochs" in data:
            raise ValueError(
                "'tune.epochs' is now 'tune.max_epochs' (null = train.epochs): trials climb rungs of "
                "tune.pruner.min_epochs × reduction_factor^k up to it"
            )
        return data

    @model_validator(mode="after")
    def _pruning(self) -> TuneConfig:
        if self.objective == "pareto" and self.pruner.kind in ("median", "hyperband"):
            raise ValueError(
                f"tune.pruner.kind {self.pruner.kind!r} needs a single objective (Optuna's pruners do); "
                "with tune.objective pareto use successive_halving (on Pareto rank) or none"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat(self) -> TuneConfig:
        if self.grace_seconds <= self.heartbeat_seconds:
            raise ValueError(
                f"grace_seconds ({self.grace_seconds}) must exceed "
                f"heartbeat_seconds ({self.heartbeat_seconds})"
            )
        return self


TUNABLE_SECTIONS = ("model.", "train.")


# --- kubeflow ---------------------------------------------------------------------------------------


class Toleration(Section):
    key: str = Field(min_length=1)
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class GpuConfig(Section):
    """Where the GPU steps (tune workers, train) run: the resource they request and the nodes they fit."""

    accelerator: str = Field(default="nvidia.com/gpu", min_length=1, description="resource name requested")
    count: int = Field(default=1, ge=1, description="GPUs per pod")
    node_selector: dict[str, str] = Field(default_factory=dict, description="node label → value")
    tolerations: list[Toleration] = Field(default_factory=list)
    cpu: str = Field(default="4", description="CPU request of a GPU step")
    memory: str = Field(default="16Gi", description="memory request of a GPU step")
    cpu_limit: str | None = Field(default=None, description="CPU limit of a GPU step; null = the request")
    memory_limit: str | None = Field(
        default=None, description="memory limit of a GPU step; null = the request"
    )


class SecretEnv(Section):
    """A Kubernetes secret whose keys become environment variables in every step (never literals)."""

    name: str = Field(min_length=1, description="secret name in the run's namespace")
    env: dict[str, str] = Field(min_length=1, description="environment variable → key in the secret")


class KubeflowConfig(Section):
    """The Kubeflow run: images, resources, GPU placement, secrets and retries (`steelflow pipeline`)."""

    image: str = Field(min_length=1, description="image of the CPU steps (docker/Dockerfile)")
    gpu_image: str = Field(min_length=1, description="image of the GPU steps (docker/Dockerfile.gpu)")
    experiment: str = Field(default="steelflow", min_length=1, description="Kubeflow experiment")
    cpu: str = Field(default="1", description="CPU request of a CPU step")
    memory: str = Field(default="4Gi", description="memory request of a CPU step")
    cpu_limit: str | None = Field(default=None, description="CPU limit of a CPU step; null = the request")
    memory_limit: str | None = Field(
        default=None, description="memory limit of a CPU step; null = the request"
    )
    gpu: GpuConfig = GpuConfig()
    secrets: list[SecretEnv] = Field(default_factory=list)
    retries: int = Field(default=2, ge=0, description="retries of the steps that talk to servers")
    pipeline_root: str | None = Field(
        default=None, description="where artifacts go (s3://...); null = the cluster's default"
    )


# --- the whole tree ---------------------------------------------------------------------------------


class Params(Section):
    data: DataConfig
    validate_: ValidateConfig = Field(alias="validate")
    split: SplitConfig
    corrupt: CorruptConfig
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig = EvaluateConfig()
    mlflow: MlflowConfig = MlflowConfig()
    tune: TuneConfig | None = None
    registry: RegistryConfig | None = None
    kubeflow: KubeflowConfig | None = None
    predict: PredictConfig = PredictConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _holdout_gate(self) -> Params:
        gated = self.registry is not None and self.registry.gates.min_holdout_accuracy is not None
        if gated and not self.corrupt.holdout:
            raise ValueError(
                "registry.gates.min_holdout_accuracy is set but corrupt.holdout lists no condition"
            )
        return self

    def raw(self) -> dict[str, Any]:
        """The tree as params.yaml spells it (for applying overrides and validating again)."""
        return self.model_dump(by_alias=True, mode="json")

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)  # dotted key → where its value came from

    def sources(self) -> dict[str, tuple[Any, str]]:
        """Every leaf key of the effective params → (value, where it came from: ``params.yaml``, ``--set``,
        ``env NAME`` or ``default``). The environment's values stand in for the keys they override."""
        env = {key: (name, value) for name, key, value in _env_values(self)}
        out: dict[str, tuple[Any, str]] = {}
        for key, value in flatten_tree(self.raw()).items():
            if key in env:
                out[key] = (env[key][1], f"env {env[key][0]}")
            else:
                out[key] = (value, self._sources.get(key, "default"))
        return out


# --- loading ----------------------------------------------------------------------------------------


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read ``path``, apply ``dotted.key=value`` overrides, and validate into :class:`Params`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    sources = dict.fromkeys(flatten_tree(raw), str(path.name))
    for item in overrides:
        key = apply_override(raw, item)
        sources |= dict.fromkeys(flatten_tree(_subtree(raw, key), key), "--set")
    params = parse_params(raw, source=str(path))
    params._sources = sources
    return params


# Environment variables that override a params key. They are read here, once, when params are validated
# (never by the code that uses the value), and kept beside the tree, not in it: a params tree that is
# logged or shipped to a pipeline carries no one's server address or password.
ENV_OVERRIDES = {
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
    "STEELFLOW_OPTUNA_STORAGE": ("tune", "storage"),
}


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params tree into :class:`Params`; the environment's overrides (:data:`ENV_OVERRIDES`) are
    read here."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(_describe(err) for err in e.errors())) from None
    for name, (section, _key) in ENV_OVERRIDES.items():
        cfg = getattr(params, section)
        if cfg is not None:
            cfg._from_env = os.environ.get(name) or None
    return params


def _env_values(params: Params) -> list[tuple[str, str, str]]:
    """(variable, dotted key, value) of every environment override in effect."""
    out = []
    for name, (section, key) in ENV_OVERRIDES.items():
        cfg = getattr(params, section)
        if cfg is not None and cfg._from_env:
            out.append((name, f"{section}.{key}", cfg._from_env))
    return out


def hide_password(value: Any) -> Any:
    """A value with every URL's password and every known secret hidden: the one rule of
    :func:`steelflow.redact.redact` (kept under this name for its callers)."""
    return redact.hide_password(value)


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key → leaf value (lists are leaves)."""
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out |= flatten_tree(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _subtree(tree: dict[str, Any], key: str) -> Any:
    """The value at a dotted key that :func:`set_key` just set (keys with dots are matched whole)."""
    node: Any = tree
    parts, i = key.split("."), 0
    while i < len(parts):
        if isinstance(node, list):
            node, i = node[int(parts[i])], i + 1
            continue
        j = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in node), i + 1)
        node, i = node[".".join(parts[i:j])], j
    return node


def check_search_space(params: Params) -> None:
    """Every ``tune.space`` entry must name a model/train key that accepts both ends of its range."""
    if params.tune is None:
        return
    base = params.raw()
    base["tune"] = None
    for key, spec in params.tune.space.items():
        where = f"tune.space.{key}"
        if not key.startswith(TUNABLE_SECTIONS) or key in ("train.use_tuned", "train.epochs"):
            raise ConfigError(
                f"'{where}': only model.* and train.* keys (but train.epochs and "
                f"train.use_tuned) can be tuned"
            )
        for value in spec.values():
            tree = copy.deepcopy(base)
            try:
                set_key(tree, key, value)
                parse_params(tree)
            except ConfigError as e:
                raise ConfigError(f"'{where}': {value!r} is not a valid value for {key}: {e}") from None


def with_overrides(params: Params, values: dict[str, Any]) -> Params:
    """``params`` with dotted keys set to ``values``, validated again."""
    tree = params.raw()
    for key, value in values.items():
        set_key(tree, key, value)
    return parse_params(tree, source="tuned params")


def with_tuned(params: Params, path: Path) -> Params:
    """Apply ``best_params.yaml`` (written by ``steelflow tune``) when ``train.use_tuned`` is on."""
    if not params.train.use_tuned:
        return params
    if not path.is_file():
        raise ConfigError(f"train.use_tuned is true but {path} does not exist: run `steelflow tune` first")
    try:
        best = (yaml.safe_load(path.read_text()) or {}).get("params")
    except (yaml.YAMLError, AttributeError) as e:
        raise ConfigError(f"{path}: not a best-params file: {e}") from None
    if not isinstance(best, dict):
        raise ConfigError(f"{path}: expected a 'params' mapping of dotted keys to values")
    return with_overrides(params, best)


def apply_override(tree: dict[str, Any], item: str) -> str:
    """Set ``a.b.c=value`` (a ``--set``) in ``tree``; the value is parsed as YAML (``3``, ``0.5``, ``[a, b]``,
    ``null``). Returns the dotted key."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        reason = str(getattr(e, "problem", None) or e).strip()
        raise ConfigError(f"--set {key.strip()}: {value!r} is not a YAML value ({reason})") from None
    set_key(tree, key.strip(), parsed)
    return key.strip()


def set_key(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set the typed ``value`` at the dotted ``key`` in ``tree`` (validation comes after, on the tree).

    Keys that themselves hold dots (the entries of ``tune.space``) are matched whole:
    ``tune.space.train.lr.high``.
    """
    parts = key.split(".")
    node: Any = tree
    i = 0
    while True:
        if isinstance(node, list) and parts[i].isdigit() and int(parts[i]) < len(node):
            j = i + 1
            if j == len(parts):
                node[int(parts[i])] = value
                return
            node = node[int(parts[i])]
        elif isinstance(node, dict):
            # the longest run of parts that is a key here (a plain key is a run of one)
            j = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in node), i + 1)
            name = ".".join(parts[i:j])
            if j == len(parts):
                node[name] = value  # unknown leaf keys are reported by validation
                return
            if name not in node:
                raise ConfigError(f"--set {key}: unknown key {'.'.join(parts[:j])!r}")
            node = node[name]
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])!r} is not a section")
        i = j


def _describe(err: dict[str, Any]) -> str:
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
