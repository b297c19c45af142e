"""Gates: the checks a model must pass to be registered (the gate step) or promoted, and their tables.

Pure functions over accuracies per condition (from ``metrics/evaluate.json`` or a version's tags):
:func:`check_gates` (``registry.gates``: clean, worst Table 1 condition, worst hold-out, no drop against the
champion), :func:`quantization_gates` (int8 against fp32), and the table as text (:func:`gate_table`, for
the terminal) or Markdown (:func:`gate_markdown`, for the Kubeflow UI and ``reports/gates.md``). Finding the
champion's accuracies is the registry's part (:func:`steelflow.registry.candidate_gates`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from steelflow.errors import DataError, SteelflowError
from steelflow.scoring import CLEAN, worst_condition


class GateFailed(SteelflowError):
    """A candidate failed a promotion gate; the table says which."""

    exit_code = 8


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
) -> list[Gate]:
    """Clean and worst accuracy (over the Table 1 conditions), the worst hold-out accuracy when that gate
    is set, and no drop against the champion on any condition both were scored on."""
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
