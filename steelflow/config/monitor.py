"""``monitor``: the drift watch ``steelflow monitor BATCH_DIR`` keeps over incoming images
(:mod:`steelflow.monitor`): the reference it compares with, which measures, and the false-alarm rate its
thresholds are calibrated to."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from steelflow.config.section import Section

MEASURES = ("brightness", "sharpness", "entropy", "size", "mode", "confidence")
Measure = Literal["brightness", "sharpness", "entropy", "size", "mode", "confidence"]


class MonitorConfig(Section):
    """A batch is compared with the reference on each measure; the thresholds are calibrated together by
    resampling clean batches of the batch's size from the reference, so that a clean batch raises an alarm
    on any measure with probability ``false_alarm_rate``."""

    reference: Path = Field(
        default=Path("reports/monitor_reference.json"),
        description="the reference file (`steelflow monitor --build-reference` writes it) in the project",
    )
    reference_split: Literal["train", "val", "test"] = Field(
        default="test",
        description="the split `--build-reference` measures: images the model was not fitted to",
    )
    measures: list[Measure] = Field(
        default=list(MEASURES),
        min_length=1,
        description="what is compared: the manifest's quality measures, and the model's confidence",
    )
    confidence: Literal["max_softmax", "entropy"] = Field(
        default="max_softmax",
        description="the model's confidence measure: its top probability, or the entropy of its answer",
    )
    false_alarm_rate: float = Field(
        default=0.05, gt=0, le=0.5, description="the chance a clean batch is flagged, over all measures"
    )
    calibration_batches: int = Field(
        default=2000, ge=200, le=100_000, description="clean batches resampled to calibrate the thresholds"
    )
    seed: int = Field(default=0, description="of the resampling: the same batch gets the same verdict")
    output: Path = Field(
        default=Path("reports/monitor"),
        description="folder of the verdict (drift.json) and the page (drift.html), inside the project",
    )

    @field_validator("measures")
    @classmethod
    def _once_each(cls, v: list[str]) -> list[str]:
        repeated = sorted({m for m in v if v.count(m) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return v

    @field_validator("reference")
    @classmethod
    def _json_file(cls, v: Path) -> Path:
        if v.suffix != ".json":
            raise ValueError("the reference is a .json file")
        return v
