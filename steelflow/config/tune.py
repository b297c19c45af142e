"""``tune``: the Optuna study, its search space over model/train keys, sampler and pruner."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from steelflow.config.section import Section


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
        default=1,
        ge=1,
        description="successive_halving/hyperband: the first rung (epochs every trial gets); a trial budget "
        "not above it scales the rungs down to it",
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
                "with tune.objective pareto set tune.pruner.kind to successive_halving (on Pareto rank) "
                "or none"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat(self) -> TuneConfig:
        if self.grace_seconds <= self.heartbeat_seconds:
            raise ValueError(
                f"grace_seconds ({self.grace_seconds}) must exceed "
                f"heartbeat_seconds ({self.heartbeat_seconds}): set tune.grace_seconds to "
                f"{6 * self.heartbeat_seconds}"
            )
        return self


TUNABLE_SECTIONS = ("model.", "train.")
