"""``mlflow`` (the tracking server), ``registry`` (gates, serving, export) and ``predict``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr

from steelflow.config.section import Section


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
    max_mce: float | None = Field(
        default=None,
        gt=0,
        description="mean corruption error over corrupt.graded, relative to evaluate.mce_baseline "
        "(1.0: as the baseline); null = no such gate",
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
    fail_on_gate: bool = Field(
        default=False,
        description="false: a refusing gate is a verdict (the gate stage succeeds, register registers "
        "nothing, a DVC experiment keeps its metrics); true: the gate step fails (exit 8), for CI",
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


class PredictConfig(Section):
    """``steelflow predict``: how many images it holds in memory at once, and what it opens."""

    batch_size: int = Field(default=64, ge=1, description="images read, decoded and classified at once")
    outside_links: Literal["refuse", "skip"] = Field(
        default="refuse",
        description="a link under a folder given whose real path is outside it: refuse (error) | skip (warn)",
    )
