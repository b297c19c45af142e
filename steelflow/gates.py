"""Gates: the checks a model must pass to be registered (the gate step) or promoted, and their tables.

Pure functions over accuracies per condition (from ``metrics/evaluate.json`` or a version's tags):
:func:`check_gates` (``registry.gates``: clean, worst Table 1 condition, worst hold-out, the graded mCE when
``max_mce`` is set, no drop against the champion), :func:`quantization_gates` (int8 against fp32), and the
table as text (:func:`gate_table`, for the terminal) or Markdown (:func:`gate_markdown`, for the Kubeflow
UI and ``reports/gates.md``). Finding the champion's accuracies is the registry's part
(:func:`steelflow.registry.candidate_gates`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from steelflow import paths
from steelflow.errors import DataError, GateFailed  # noqa: F401 (GateFailed re-exported)
from steelflow.scoring import CLEAN, worst_condition


@dataclasses.dataclass
class Gate:
    name: str
    value: float
    threshold: float
    passed: bool
    rule: str  # "≥" or "≤"


def check_gates(
    gates: Any,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    holdout: Collection[str] = (),
    mce: float | None = None,
) -> list[Gate]:
    """Clean and worst accuracy (over the Table 1 conditions), the worst hold-out accuracy and the mCE over
    ``corrupt.graded`` (``mce``) when those gates are set, and no drop against the champion on any
    condition both were scored on."""
    worst = worst_condition(candidate, exclude=holdout)
    out = [
        Gate(
            "clean accuracy",
            candidate[CLEAN],
            gates.min_clean_accuracy,
            candidate[CLEAN] >= gates.min_clean_accuracy,
            "≥",
        ),
        Gate(
            f"worst accuracy ({worst})",
            candidate[worst],
            gates.min_worst_accuracy,
            candidate[worst] >= gates.min_worst_accuracy,
            "≥",
        ),
    ]
    held = {k: v for k, v in candidate.items() if k in holdout}
    if gates.min_holdout_accuracy is not None:
        if not held:
            raise DataError(
                "registry.gates.min_holdout_accuracy is set but the model has no hold-out accuracy: "
                "run `steelflow corrupt` and `steelflow evaluate` with corrupt.holdout"
            )
        worst_held = min(held, key=held.get)
        out.append(
            Gate(
                f"worst hold-out ({worst_held})",
                held[worst_held],
                gates.min_holdout_accuracy,
                held[worst_held] >= gates.min_holdout_accuracy,
                "≥",
            )
        )
    if gates.max_mce is not None:
        if mce is None:
            raise DataError(
                "registry.gates.max_mce is set but the model has no mCE: run `steelflow corrupt` and "
                "`steelflow evaluate` with corrupt.graded and evaluate.mce_baseline"
            )
        out.append(
            Gate("mCE (graded, vs evaluate.mce_baseline)", mce, gates.max_mce, mce <= gates.max_mce, "≤")
        )
    for name, acc in (champion or {}).items():
        drop = acc - candidate.get(name, 0.0)
        out.append(Gate(f"drop vs champion ({name})", drop, gates.max_drop, drop <= gates.max_drop, "≤"))
    return out


def quantization_gates(fp32: dict[str, float], int8: dict[str, float], max_drop: float) -> list[Gate]:
    """One gate per evaluation condition (hold-out ones included): int8 accuracy within ``max_drop``."""
    return [
        Gate(f"int8 {name} ({fp32[name]:.3f} → {int8[name]:.3f})", drop, max_drop, drop <= max_drop, "≤")
        for name in fp32
        for drop in [fp32[name] - int8[name]]
    ]


def gate_table(gates: list[Gate]) -> str:
    rows = [f"  {'gate':<40} {'value':>8}   {'threshold':>9}   result"]
    for g in gates:
        verdict = "pass" if g.passed else "FAIL"
        rows.append(f"  {g.name:<40} {g.value:>8.4f}   {g.rule} {g.threshold:<7.4f}   {verdict}")
    return "\n".join(rows)


def gate_markdown(gates: list[Gate]) -> str:
    """The gate table as Markdown (what the Kubeflow UI shows for the pipeline's gate step)."""
    rows = ["| gate | value | threshold | result |", "|---|---:|---:|---|"]
    for g in gates:
        rows.append(
            f"| {g.name} | {g.value:.4f} | {g.rule} {g.threshold:.4f} | {'pass' if g.passed else 'FAIL'} |"
        )
    return "\n".join(rows) + "\n"


# --- the gate step's verdict (reports/gates.json) ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GateResult:
    gates: list[Gate]
    passed: bool  # every gate passed
    register: bool  # passed, or registry.challenger: always
    challenger: str  # registry.challenger
    run_id: str | None  # the training run the gates were checked for

    @property
    def table(self) -> str:
        return gate_table(self.gates)

    def raise_if_refused(self) -> None:
        """Fail (exit 8) when the model may not be registered."""
        if not self.register:
            raise GateFailed(
                f"run {self.run_id} failed registry.gates: not registered, @challenger stays "
                f"(registry.challenger=always registers it anyway) → {paths.GATES_JSON}"
            )


def load_verdict(path: Path = paths.GATES_JSON, run_id_path: Path = paths.MLFLOW_RUN) -> GateResult:
    """The verdict ``gate`` wrote; a DataError when there is none, or when it was written for another
    training run than the one in ``run_id_path``."""
    run_id = _run_id(run_id_path)
    try:
        tree = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: no gate verdict ({e}): run `steelflow gate` first") from None
    if tree.get("run_id") != run_id:
        raise DataError(
            f"{path} is the verdict for run {tree['run_id']}, not {run_id}: run `steelflow gate` again"
        )
    return GateResult(
        gates=[Gate(**g) for g in tree["gates"]],
        passed=tree["passed"],
        register=tree["register"],
        challenger=tree["challenger"],
        run_id=tree.get("run_id"),
    )


def _run_id(path: Path) -> str | None:
    """The training run the model comes from (``metrics/mlflow_run_id.txt``), when it was tracked."""
    return Path(path).read_text().strip() if Path(path).is_file() else None


def verdict_of(result: GateResult) -> dict[str, Any]:
    return {
        "passed": result.passed,
        "register": result.register,
        "challenger": result.challenger,
        "run_id": result.run_id,
        "gates": [dataclasses.asdict(g) for g in result.gates],
    }
