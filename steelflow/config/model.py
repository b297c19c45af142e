"""``model``: which CASI-Net variant, at which size, with which input stage (:data:`INPUT_STAGES`).

The input stages are declared here by name (they have no parameters of their own but the shared
``input_norm_sigma``); each one's builder registers against its name in :mod:`steelflow.models.input_norm`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from steelflow.config.registries import Registry
from steelflow.config.section import Section

INPUT_STAGES: Registry[Any] = Registry("input_norm")
INPUT_STAGES.declare("none", "the paper's: the [0, 1] image as it is")
INPUT_STAGES.declare("standardize", "per image and channel, (x − mean) / std")
INPUT_STAGES.declare("flatfield", "x / blur(x), standardised: a smooth gain cancels")
INPUT_STAGES.declare("local", "local contrast normalisation: a smooth gain and offset cancel")
InputStage = INPUT_STAGES.literal()


class ModelConfig(Section):
    """Which CASI-Net variant, at which input size (paper: casinet at 300 x 300), with which input stage."""

    variant: str = Field(min_length=1, description="a name from `steelflow models`")
    image_size: int = Field(ge=8, le=1024, description="side the model resizes its input to")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout before the classifier's last layer")
    input_norm: InputStage = Field(
        default="none", description="input stage inside the network; none = the paper's"
    )
    input_norm_sigma: float = Field(
        default=0.1, gt=0, le=0.3, description="flatfield/local: low-pass width, fraction of image_size"
    )
