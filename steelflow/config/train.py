"""``train`` (with its ``augment`` and ``robust`` sub-sections) and ``evaluate``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steelflow.config.robust import RobustConfig
from steelflow.config.section import Section


class AugmentConfig(Section):
    """Training-time augmentation, applied to cached uint8 images on the fly."""

    hflip: bool = True
    vflip: bool = True
    rot90: bool = False
    brightness: float = Field(default=0.0, ge=0, le=1, description="max relative brightness change")
    contrast: float = Field(default=0.0, ge=0, le=1, description="max relative contrast change")


class LoaderConfig(Section):
    """How training batches reach the model (:mod:`steelflow.data.stream`): the same order either way."""

    mode: Literal["auto", "memory", "stream"] = Field(
        default="auto",
        description="memory: decode the split once into a tensor; stream: DataLoader workers read the "
        "shards; auto: memory when the decoded split fits memory_limit_mb",
    )
    workers: int = Field(default=2, ge=0, description="DataLoader worker processes when streaming")
    shuffle_window: int = Field(
        default=8,
        ge=1,
        description="shards whose samples are shuffled together (the shard order too)",
    )
    memory_limit_mb: float = Field(default=2048, ge=0, description="auto's bound on a decoded split")
    shards: str | None = Field(
        default=None,
        pattern=r"^s3://[^/]+(/.*)?$",
        description="where train/ and val/ are read: null = data/cache/splits; s3://bucket/prefix/splits "
        "(`steelflow shards push`) streams them from S3",
    )


class DistributedConfig(Section):
    """Data-parallel training under torchrun (:mod:`steelflow.training.distributed`)."""

    nproc: int = Field(default=1, ge=1, description="processes `steelflow train` starts on this machine")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        default="auto", description="auto: nccl on CUDA, else gloo"
    )
    batchnorm: Literal["sync", "local"] = Field(
        default="sync", description="sync: statistics of the global batch; local: of each rank's part"
    )


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
    patience: int = Field(ge=0, description="early stopping on train.keep's score; 0 = never stop early")
    keep: Literal["val_accuracy", "val_robust_mean", "val_robust_worst"] = Field(
        default="val_accuracy",
        description="the validation score whose best epoch is the model kept (and early stopping's): clean "
        "accuracy, or accuracy under each train.robust family with p > 0 alone, their mean or worst",
    )
    seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    robust: RobustConfig = RobustConfig()
    threads: int | None = Field(default=None, ge=1, description="CPU threads; null = PyTorch's default")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: fp32 on CPU, bf16 (or fp16) autocast on CUDA"
    )
    channels_last: Literal["auto", "on", "off"] = Field(default="auto", description="auto = on")
    compile: bool = Field(default=False, description="torch.compile the model")
    loader: LoaderConfig = LoaderConfig()
    distributed: DistributedConfig = DistributedConfig()
    use_tuned: bool = Field(
        default=False, description="apply reports/tuning/best_params.yaml (from `steelflow tune`) on top"
    )


class EvaluateConfig(Section):
    batch_size: int = Field(default=64, ge=1)
    attention_examples: int = Field(default=1, ge=1, le=4, description="test images per class in the picture")
    mce_baseline: str | None = Field(
        default=None,
        description="a graded-errors JSON (reports/graded_errors.json of `steelflow evaluate` on the "
        "paper-faithful clean-trained model, on the same ladders) that normalises mCE; null = no mCE, "
        "the mean error per family is reported instead",
    )
