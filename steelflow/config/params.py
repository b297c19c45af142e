"""The whole tree: one field per section of params.yaml, and where each value came from."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from steelflow.config.corrupt import CorruptConfig
from steelflow.config.data import DataConfig, SplitConfig, ValidateConfig
from steelflow.config.deploy import DeployConfig
from steelflow.config.kubeflow import KubeflowConfig
from steelflow.config.model import ModelConfig
from steelflow.config.monitor import MonitorConfig
from steelflow.config.section import Section
from steelflow.config.serving import MlflowConfig, PredictConfig, RegistryConfig
from steelflow.config.train import EvaluateConfig, TrainConfig
from steelflow.config.tree import flatten_tree
from steelflow.config.tune import TuneConfig

# Environment variables that override a params key. They are read once, when params are validated
# (never by the code that uses the value), and kept beside the tree, not in it: a params tree that is
# logged or shipped to a pipeline carries no one's server address or password.
ENV_OVERRIDES = {
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
    "STEELFLOW_OPTUNA_STORAGE": ("tune", "storage"),
}


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
    deploy: DeployConfig = DeployConfig()
    monitor: MonitorConfig = MonitorConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _holdout_gate(self) -> Params:
        gated = self.registry is not None and self.registry.gates.min_holdout_accuracy is not None
        if gated and not self.corrupt.holdout:
            raise ValueError(
                "registry.gates.min_holdout_accuracy is set but corrupt.holdout lists no condition"
            )
        mce = self.registry is not None and self.registry.gates.max_mce is not None
        if mce and (self.corrupt.graded is None or self.evaluate.mce_baseline is None):
            raise ValueError(
                "registry.gates.max_mce is set but mCE is not measured: it needs corrupt.graded and "
                "evaluate.mce_baseline"
            )
        return self

    def raw(self) -> dict[str, Any]:
        """The tree as params.yaml spells it (for applying overrides and validating again)."""
        return self.model_dump(by_alias=True, mode="json")

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)  # dotted key → where its value came from

    def sources(self) -> dict[str, tuple[Any, str]]:
        """Every leaf key of the effective params → (value, where it came from: ``params.yaml``, ``--set``,
        ``env NAME`` or ``default``). The environment's values stand in for the keys they override."""
        env = {key: (name, value) for name, key, value in env_values(self)}
        out: dict[str, tuple[Any, str]] = {}
        for key, value in flatten_tree(self.raw()).items():
            if key in env:
                out[key] = (env[key][1], f"env {env[key][0]}")
            else:
                out[key] = (value, self._sources.get(key, "default"))
        return out


def env_values(params: Params) -> list[tuple[str, str, str]]:
    """(variable, dotted key, value) of every environment override in effect."""
    out = []
    for name, (section, key) in ENV_OVERRIDES.items():
        cfg = getattr(params, section)
        if cfg is not None and cfg._from_env:
            out.append((name, f"{section}.{key}", cfg._from_env))
    return out
