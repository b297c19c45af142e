"""What a study's report is made of: the baseline trial's record, the plots, a line before and after
each trial (which of how many, how it ended, how many are left)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from steelflow import progress
from steelflow.tuning import objective as fidelity
from steelflow.tuning.study import counted

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


def position(trials: list[FrozenTrial], number: int, n_trials: int) -> tuple[int, int]:
    """Trial ``number``'s place in the study (a retried trial not counted twice), and of how many."""
    at = 1 + sum(t.number < number for t in counted(trials))
    return at, max(n_trials, at)


def announce(position: int, total: int) -> Callable[[dict[str, Any], bool], None]:
    """What a trial calls with its values before it trains: the line that says this is tuning."""
    return lambda values, baseline: progress.say(started_line(position, total, values, baseline))


def started_line(position: int, total: int, values: dict[str, Any], baseline: bool) -> str:
    """The line before a trial's epoch lines: that this is tuning, which trial of how many, its values."""
    shown = ", ".join(f"{k}={fmt(v)}" for k, v in values.items())
    what = "the baseline, hand-set: " if baseline else ""
    return f"tune: trial {position}/{total} starts, {total - position} after it ({what}{shown})"


def finished_line(t: FrozenTrial, position: int, total: int, left: int, worker: str = "") -> str:
    """The line after a trial: how it ended (complete, pruned at a rung, diverged, failed), its scores,
    and how many trials of the study are left."""
    attrs = t.user_attrs
    scores = ""
    if fidelity.CLEAN in attrs:
        robust = attrs.get(fidelity.ROBUST)
        scores = f"val acc {attrs[fidelity.CLEAN]:.3f}"
        scores += f", robust {robust:.3f}" if robust is not None else ""
    epochs = attrs.get(fidelity.EPOCHS, 0)
    if t.state == TrialState.COMPLETE:
        how = f"complete: {scores} after {epochs} epochs"
    elif "diverged" in attrs:
        at = f" at {epochs} epochs" if epochs else " in its first epoch"
        how = f"pruned{at}, diverged: {attrs['diverged']}"
    elif t.state == TrialState.PRUNED:
        how = f"pruned at {epochs} epochs: {scores}" if scores else f"pruned at {epochs} epochs"
    else:
        how = f"failed: {attrs.get('error') or t.state.name.lower()}"
    rest = "the study is done" if left <= 0 else f"{left} trial{'s' * (left != 1)} left"
    where = f" [study trial {t.number}{worker}]"
    return f"tune: trial {position}/{total} {how}; {rest}{where}"


def fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def plain(v: Any) -> Any:
    """numpy scalars and the like → plain YAML values."""
    return v.item() if hasattr(v, "item") else v
