"""Step 7, gate: may the evaluated model be registered? The same answer under ``dvc repro`` and Kubeflow.

Reads ``metrics/evaluate.json``, the evaluation caches (``data/cache/splits/test.npz``,
``data/cache/corrupted``; a champion scored on other data is re-scored on them), ``metrics/mlflow_run_id.txt``
(the training run, tagged when its model is refused) and params sections ``registry`` (gates, challenger),
``corrupt`` (which conditions are hold-out) and ``evaluate`` (batch size for re-scoring). Writes
``reports/gates.json`` (the verdict: whether every gate passed, whether to register, each gate) and
``reports/gates.md`` (the gate table as Markdown, what the Kubeflow UI shows for this step).

The gates are :func:`steelflow.registry.candidate_gates`: ``registry.gates`` and no drop against the
current champion. ``register`` goes ahead when they all pass, or always with ``registry.challenger:
always``. The DVC stage fails with exit 8 when it may not (``dvc repro`` stops before ``register``); the
Kubeflow pipeline skips ``register`` (``dsl.If`` on this step's answer); ``register`` itself reads the verdict
and refuses a stale or negative one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from steelflow import atomic, paths
from steelflow.config import Params
from steelflow.errors import DataError
from steelflow.gates import Gate, GateFailed, gate_markdown, gate_table
from steelflow.registry import Registry, candidate_gates

REFUSED_TAG = "steelflow.registered"  # on the training run whose model the gates refused


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


def gate(
    params: Params, metrics_path: Path = paths.EVALUATE_METRICS, cache_dir: Path = paths.CACHE
) -> GateResult:
    """Check the evaluated model against ``registry.gates`` and the champion; write the verdict
    (``reports/gates.json``) and the table (``reports/gates.md``)."""
    gates = candidate_gates(params, metrics_path, cache_dir)
    passed = all(g.passed for g in gates)
    run_id = _run_id(paths.MLFLOW_RUN)
    result = GateResult(
        gates=gates,
        passed=passed,
        register=passed or params.registry.challenger == "always",
        challenger=params.registry.challenger,
        run_id=run_id,
    )
    atomic.write_json(paths.GATES_JSON, _verdict(result))
    atomic.write_text(paths.GATES_MD, gate_markdown(gates))
    if not result.register and run_id:
        reg = Registry(params)
        with reg.own_retries():
            reg.call(reg.client.set_tag, run_id, REFUSED_TAG, "no: failed registry.gates")
    return result


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


def _verdict(result: GateResult) -> dict[str, Any]:
    return {
        "passed": result.passed,
        "register": result.register,
        "challenger": result.challenger,
        "run_id": result.run_id,
        "gates": [dataclasses.asdict(g) for g in result.gates],
    }
