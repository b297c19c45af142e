"""Step 8, gate: may the evaluated model be registered? The same answer under ``dvc repro`` and Kubeflow.

Reads ``metrics/evaluate.json``, the evaluation caches (the shard sets ``data/cache/splits/test/`` and
``data/cache/corrupted/<condition>/``; a champion scored on other data is re-scored on them),
``metrics/mlflow_run_id.txt`` (the training run, tagged when its model is refused) and params sections
``registry`` (gates, challenger, fail_on_gate), ``corrupt`` (which conditions are hold-out) and ``evaluate``
(batch size for re-scoring).
Writes ``reports/gates.json`` (the verdict: whether every gate passed, whether to register, each gate) and
``reports/gates.md`` (the gate table as Markdown, what the Kubeflow UI shows for this step).

The gates are :func:`steelflow.registry.candidate_gates`: ``registry.gates`` and no drop against the
current champion. ``register`` goes ahead when they all pass, or always with ``registry.challenger:
always``. A refusal is a verdict, not a failure: the DVC stage succeeds (an experiment that tried a worse
setting keeps its metrics and verdict in ``dvc exp show``) and ``register`` registers nothing; the Kubeflow
pipeline skips ``register`` (``dsl.If`` on this step's answer). ``registry.fail_on_gate: true`` makes a
refusal fail the step instead (exit 8), for CI.
"""

from __future__ import annotations

from pathlib import Path

from steelflow import atomic, paths
from steelflow.config import Params
from steelflow.gates import GateResult, gate_markdown, verdict_of
from steelflow.registry import Registry, candidate_gates
from steelflow.step import Produces, Step

REFUSED_TAG = "steelflow.registered"  # on the training run whose model the gates refused


def gate(
    params: Params, metrics_path: Path = paths.EVALUATE_METRICS, cache_dir: Path = paths.CACHE
) -> GateResult:
    """Check the evaluated model against ``registry.gates`` and the champion; write the verdict
    (``reports/gates.json``) and the table (``reports/gates.md``); with ``registry.fail_on_gate``, fail
    (exit 8) when the model may not be registered."""
    gates = candidate_gates(params, metrics_path, cache_dir)
    passed = all(g.passed for g in gates)
    run_id = paths.MLFLOW_RUN.read_text().strip() if paths.MLFLOW_RUN.is_file() else None
    result = GateResult(
        gates=gates,
        passed=passed,
        register=passed or params.registry.challenger == "always",
        challenger=params.registry.challenger,
        run_id=run_id,
    )
    atomic.write_json(paths.GATES_JSON, verdict_of(result))
    atomic.write_text(paths.GATES_MD, gate_markdown(gates))
    if not result.register and run_id:
        reg = Registry(params)
        with reg.own_retries():
            reg.call(reg.client.set_tag, run_id, REFUSED_TAG, "no: failed registry.gates")
    if params.registry.fail_on_gate:
        result.raise_if_refused()
    return result


def summary(result: GateResult) -> list[str]:
    lines = [result.table]
    if result.passed:
        return [*lines, f"gate: every gate passed → {paths.GATES_JSON}"]
    if result.register:
        return [
            *lines,
            f"warning: gate: run {result.run_id} failed registry.gates; registry.challenger=always "
            "registers it",
        ]
    return [
        *lines,
        f"warning: gate: run {result.run_id} failed registry.gates: register will register nothing "
        f"(registry.fail_on_gate=true fails the run instead) → {paths.GATES_JSON}",
    ]


STEP = Step(
    "gate",
    run=gate,
    help="Check the evaluated model against registry.gates and the champion → reports/gates.json (a "
    "refusal exits 8 only with registry.fail_on_gate).",
    sections=("params",),  # the registry client takes the tree (registry, mlflow, corrupt, evaluate)
    inputs=(paths.EVALUATE_METRICS, paths.MLFLOW_RUN, paths.TEST_CACHE, paths.CACHE_CORRUPTED),
    params=(
        "registry.name",
        "registry.gates",
        "registry.challenger",
        "registry.fail_on_gate",
        "corrupt.conditions",
        "corrupt.holdout",
        "evaluate.batch_size",
    ),
    outs=(paths.GATES_MD,),
    metrics=(paths.GATES_JSON,),  # the verdict beside the scores in `dvc exp show`
    notes={str(paths.TEST_CACHE): "a champion scored on other data is re-scored on these"},
    summary=summary,
    consumes=("splits", "corrupted", "model", "evaluation"),
    produces=(Produces("verdict"), Produces("gates", "Markdown", page=paths.GATES_MD)),
    answer=lambda result: result.register,
    answer_type=bool,
    cache=False,  # the champion can change
    retries=True,
)
