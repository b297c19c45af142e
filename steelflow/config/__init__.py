"""params.yaml as a typed, validated config tree.

One section of params.yaml = one config class. A step receives its own section (and the shared ``data``
section), never the whole tree. Loading fails early, before any work, with the dotted name of the key at
fault and what was allowed there.

By job: :mod:`~steelflow.config.section` (the base class), the schema by section (``data``, ``corrupt``,
``model``, ``robust``, ``train``, ``serving``, ``tune``, ``kubeflow``, ``deploy``, ``monitor``;
:mod:`~steelflow.config.params` the whole tree), :mod:`~steelflow.config.registries` (named variants:
corruption kinds, augmentation families, input stages), :mod:`~steelflow.config.tree` (dotted keys and
``--set``), :mod:`~steelflow.config.loading` (params.yaml, the environment, tuned values) and
:mod:`~steelflow.config.messages` (validation errors as one line). Every public name is importable from
here.
"""

from steelflow.config.corrupt import (
    CONDITION_KINDS,
    CONDITIONS,
    BlurCondition,
    Condition,
    CorruptConfig,
    ElasticCondition,
    JpegCondition,
    LuminanceCondition,
    NoiseCondition,
    PixelateCondition,
    PosterizeCondition,
    SaltPepperCondition,
    SpeckleCondition,
    StripesCondition,
)
from steelflow.config.data import DataConfig, QualityConfig, SplitConfig, SyntheticConfig, ValidateConfig
from steelflow.config.deploy import DeployConfig
from steelflow.config.kubeflow import GpuConfig, KubeflowConfig, SecretEnv, Toleration, TrainerConfig
from steelflow.config.loading import (
    DEFAULT_PARAMS,
    changed_values,
    check_search_space,
    load_params,
    parse_params,
    with_overrides,
    with_tuned,
)
from steelflow.config.model import INPUT_STAGES, ModelConfig
from steelflow.config.monitor import MEASURES, MonitorConfig
from steelflow.config.params import ENV_OVERRIDES, Params
from steelflow.config.registries import Registry
from steelflow.config.robust import (
    FAMILIES,
    ROBUST_FAMILIES,
    ConsistencyConfig,
    ContrastFamily,
    DefocusFamily,
    GammaFamily,
    IlluminationFamily,
    MotionBlurFamily,
    NoiseFamily,
    OverlayFamily,
    RobustConfig,
    Shape,
    ToneCurveFamily,
)
from steelflow.config.section import Section, Span
from steelflow.config.serving import GatesConfig, MlflowConfig, PredictConfig, RegistryConfig, ServingConfig
from steelflow.config.train import AugmentConfig, EvaluateConfig, TrainConfig
from steelflow.config.tree import apply_override, flatten_tree, lookup, scalar_metrics, set_key
from steelflow.config.tune import TUNABLE_SECTIONS, PrunerConfig, SamplerConfig, SearchParam, TuneConfig
from steelflow.errors import ConfigError

__all__ = [
    "CONDITIONS",
    "CONDITION_KINDS",
    "DEFAULT_PARAMS",
    "ENV_OVERRIDES",
    "FAMILIES",
    "INPUT_STAGES",
    "MEASURES",
    "ROBUST_FAMILIES",
    "TUNABLE_SECTIONS",
    "AugmentConfig",
    "BlurCondition",
    "Condition",
    "ConfigError",
    "ConsistencyConfig",
    "ContrastFamily",
    "CorruptConfig",
    "DataConfig",
    "DefocusFamily",
    "DeployConfig",
    "ElasticCondition",
    "EvaluateConfig",
    "GammaFamily",
    "GatesConfig",
    "GpuConfig",
    "IlluminationFamily",
    "JpegCondition",
    "KubeflowConfig",
    "LuminanceCondition",
    "MlflowConfig",
    "ModelConfig",
    "MonitorConfig",
    "MotionBlurFamily",
    "NoiseCondition",
    "NoiseFamily",
    "OverlayFamily",
    "Params",
    "PixelateCondition",
    "PosterizeCondition",
    "PredictConfig",
    "PrunerConfig",
    "QualityConfig",
    "Registry",
    "RegistryConfig",
    "RobustConfig",
    "SaltPepperCondition",
    "SamplerConfig",
    "SearchParam",
    "SecretEnv",
    "Section",
    "ServingConfig",
    "Shape",
    "Span",
    "SpeckleCondition",
    "SplitConfig",
    "StripesCondition",
    "SyntheticConfig",
    "Toleration",
    "ToneCurveFamily",
    "TrainConfig",
    "TrainerConfig",
    "TuneConfig",
    "ValidateConfig",
    "apply_override",
    "changed_values",
    "check_search_space",
    "flatten_tree",
    "scalar_metrics",
    "load_params",
    "lookup",
    "parse_params",
    "set_key",
    "with_overrides",
    "with_tuned",
]
