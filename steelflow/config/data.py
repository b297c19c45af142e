"""``data`` (shared by every step), ``validate`` and ``split``: where images come from, what they must be."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from steelflow.config.section import Section


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
    shard_size: int = Field(
        default=1000, ge=1, description="images per WebDataset tar shard of a decoded-image cache set"
    )
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
    parts: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Kubeflow: ingest runs as this many parts, one pod each (DVC: one process; same outputs)",
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


class SplitConfig(Section):
    """Paper §4.3: 70 % train / 30 % test; ``val`` is a fraction of train held out for early stopping."""

    test: float = Field(gt=0, lt=1)
    val: float = Field(ge=0, lt=1)
    seed: int = 0
