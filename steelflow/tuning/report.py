"""What a study's report is made of: the baseline trial's record, the plots, one line per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from steelflow.tuning import objective as fidelity

METRIC = {
    "accuracy": "best clean validation accuracy over {budget} epochs",
    "robust": "best {score} validation accuracy under train.robust's families over {budget} epochs",
    "pareto": "most robust ({score} family) top-rung trial within {drop} of the best clean validation "
    "accuracy, over {budget} epochs",
}


def baseline_of(trials: list[FrozenTrial], objective: fidelity.Objective) -> dict[str, Any] | None:
    """The baseline trial as best_params.yaml shows it (its latest retry, if its worker died); None when
    the study has none (tune.baseline off, or a study begun without one)."""
    found = [t for t in trials if fidelity.is_baseline(t)]
    if not found:
        return None
    t = found[-1]
    clean, robust = t.user_attrs.get(fidelity.CLEAN), t.user_attrs.get(fidelity.ROBUST)
    value = None
    if clean is not None and (robust is not None or not objective.needs_robust):
        value = objective.value(clean, robust)
        value = value[1] if isinstance(value, list) else value  # pareto: the robust score, as `value`
    return {
        "number": t.number,
        "state": t.state.name,
        "epochs": t.user_attrs.get(fidelity.EPOCHS),
        "top_rung": bool(fidelity.top_rung([t], objective)),
        "value": value,
        "clean": clean,
        "robust": robust,
        "params": {k: plain(v) for k, v in t.params.items()},
        "sampled": t.user_attrs.get("baseline_sampled", []),  # keys whose hand-set value was out of range
    }


def draw_plots(study: optuna.Study, objective: fidelity.Objective, chosen: int, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    fidelity.plot_rungs(trials, objective, folder / "rungs.png")
    fidelity.plot_front(trials, objective, chosen, folder / "pareto_front.png")
    # Optuna's own plots take one number per trial: with pareto, the robust score
    target = {"target": lambda t: t.values[1], "target_name": "robust"} if objective.kind == "pareto" else {}
    drawings = {
        "history.png": ovm.plot_optimization_history,
        "importance.png": ovm.plot_param_importances if len(complete) >= 2 else None,
    }
    for name, draw in drawings.items():
        if draw is None:
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.text(0.5, 0.5, "parameter importances need two complete trials", ha="center", va="center")
            ax.set_axis_off()
        else:
            ax = draw(study, **target)
            fig = ax.figure
            fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)


def print_trial(t: FrozenTrial, worker: int) -> None:
    shown = ", ".join(f"{k}={fmt(v)}" for k, v in t.params.items())
    if fidelity.CLEAN in t.user_attrs:
        robust = t.user_attrs.get(fidelity.ROBUST)
        value = f"val acc {t.user_attrs[fidelity.CLEAN]:.3f}" + (
            f", robust {robust:.3f}" if robust is not None else ""
        )
        value += f" after {t.user_attrs.get(fidelity.EPOCHS)} epochs"
    else:
        value = ""
    if t.state == TrialState.FAIL:
        value = t.user_attrs.get("error", "")
    elif "diverged" in t.user_attrs:
        value = f"diverged: {t.user_attrs['diverged']}"
    what = "the baseline, hand-set: " if fidelity.is_baseline(t) else ""
    print(f"tune: trial {t.number} {t.state.name} {value} ({what}{shown}) [worker {worker}]", flush=True)


def fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def plain(v: Any) -> Any:
    """numpy scalars and the like → plain YAML values."""
    return v.item() if hasattr(v, "item") else v
