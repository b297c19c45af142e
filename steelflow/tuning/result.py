"""What a tune run found: the study's counts, the trial whose values ``train`` applies, and its summary
numbers (:attr:`TuneResult.metrics`, what the study's MLflow run and the Kubeflow Metrics artifact show)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class TuneResult:
    study_name: str
    storage: str  # with any password hidden
    counts: dict[str, int]
    n_trials: int
    complete: bool
    best_trial: int
    best_value: float  # the objective's value (pareto: the robust score) of the trial train applies
    best_params: dict[str, Any]
    best_clean: float = 0.0
    best_robust: float | None = None
    seconds: float = 0.0
    dead_workers: list[int] = dataclasses.field(default_factory=list)
    baseline: bool = False  # best_params are the baseline's: the hand-set values won
    baseline_trial: dict[str, Any] | None = None  # the baseline's number, state and scores; None: none
    significance: dict[str, Any] | None = None  # the bootstrap of the pick against the baseline, if run

    @property
    def metrics(self) -> dict[str, float]:
        """The study's summary numbers: what its MLflow run and the Kubeflow Metrics artifact show."""
        out = {"best_value": self.best_value, "best_trial": self.best_trial, "best_clean": self.best_clean}
        if self.best_robust is not None:
            out["best_robust"] = self.best_robust
        if self.baseline_trial is not None:
            out["best_is_baseline"] = float(self.baseline)
            out |= {
                f"baseline_{k}": float(v)
                for k, v in self.baseline_trial.items()
                if k in ("number", "epochs", "value", "clean", "robust") and v is not None
            }
        return out | {f"trials_{state.lower()}": n for state, n in self.counts.items()}
