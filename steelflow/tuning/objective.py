"""What a trial is scored on, how it climbs the rungs, and which trial's values ``best_params`` takes.

Multi-fidelity: every trial trains on the full schedule of ``tune.max_epochs`` (``train.epochs`` when
null), so a trial that survives every rung *is* the full training run with its values. Rungs sit at
``min_epochs × reduction_factor^k`` epochs; at each one a trial continues only if it ranks in the top
``1 / reduction_factor`` of the trials that reached that rung (asynchronous successive halving, Optuna's
``SuccessiveHalvingPruner``; ``HyperbandPruner`` runs several such brackets). A budget at or below
``min_epochs`` (a quick ``-S train.epochs=2``) scales the rungs down to it (:func:`first_rung`) rather
than refusing the study; at one epoch there is no rung, and no pruning.

Scores (``tune.objective``), each the best so far over the epochs a trial ran, so that one lucky or
unlucky epoch on a small validation split does not decide a rung:

- ``accuracy``: clean validation accuracy;
- ``robust``: validation accuracy under ``train.robust``'s families, the worst or the mean family
  (``tune.robust_score``). The test split and its corruptions are never touched;
- ``pareto``: both, as a two-objective study. Optuna's pruners take one objective only, so here the rung
  rule ranks the trials at a rung by Pareto rank (then by the sum of both scores).

``best_params`` comes only from trials that ran the full budget (the top rung): the best score, or with
``pareto`` the most robust trial within ``tune.max_clean_drop`` of the best clean accuracy. The baseline
trial (the hand-set values, ``tune.baseline``) competes with its scores raised by ``tune.min_improvement``:
a rival replaces it only by beating it by more than that. With ``tune.significance`` the win must also
hold beyond the luck of which images landed in validation: in a paired bootstrap over the validation
images (each trial keeps which images it got right, ``val_correct``), the rival must beat the baseline in
at least ``1 - significance`` of the resamples; otherwise the hand-set values stay.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from steelflow.config import TuneConfig

# user attributes every trial carries (trials.csv shows them as user_attrs_<name>)
CURVE = "curve"  # [[epoch, clean, robust], ...] per epoch, robust null under the accuracy objective
EPOCHS = "epochs"  # epochs the trial ran
LAST_RUNG = "last_rung"  # the highest rung (epochs) the trial reached
CLEAN, ROBUST = "clean", "robust"  # its scores: the best so far at its last epoch
BASELINE = "steelflow.baseline"  # True on the trial that runs the hand-set values (tune.baseline)
# which validation images the trial got right at the epoch of each best-so-far score:
# {"clean": {"epoch", "n", "views": {"clean": hex}}, "robust": {"epoch", "n", "views": {family: hex}}}
CORRECT = "val_correct"
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 0


@dataclass(frozen=True)
class Objective:
    """The study's objective, its budget and its rungs."""

    kind: str  # accuracy | robust | pareto
    robust_key: str  # the history column of the robust score (val_robust_worst | val_robust_mean)
    budget: int  # epochs of a trial that survives every rung
    rungs: tuple[int, ...]  # the rung epochs below the budget; the budget is the top rung
    reduction_factor: int

    @classmethod
    def of(cls, cfg: TuneConfig, train_epochs: int) -> Objective:
        budget = cfg.max_epochs or train_epochs
        p = cfg.pruner
        rungs: list[int] = []
        if p.kind in ("successive_halving", "hyperband"):
            epoch = first_rung(cfg, budget)
            while epoch and epoch < budget:
                rungs.append(epoch)
                epoch *= p.reduction_factor
        return cls(cfg.objective, f"val_robust_{cfg.robust_score}", budget, tuple(rungs), p.reduction_factor)

    @property
    def directions(self) -> list[str]:
        return ["maximize", "maximize"] if self.kind == "pareto" else ["maximize"]

    @property
    def metric_names(self) -> list[str]:
        robust = self.robust_key.removeprefix("val_")
        return {"accuracy": ["val_accuracy"], "robust": [robust], "pareto": ["val_accuracy", robust]}[
            self.kind
        ]

    @property
    def needs_robust(self) -> bool:
        return self.kind != "accuracy"

    def robust_epochs(self, pruner: str) -> frozenset[int] | None:
        """Where a trial is scored under the families: at the rungs and the top one (None: every epoch,
        which the median rule needs). Each score is a validation pass per family, so not every epoch."""
        if not self.needs_robust or pruner == "median":
            return None
        return frozenset((*self.rungs, self.budget))

    def scores(self, curve: Sequence[Sequence[Any]]) -> tuple[float, float | None]:
        """(clean, robust) of a trial's curve: each the best so far (robust: over the epochs scored)."""
        clean = max(row[1] for row in curve)
        scored = [row[2] for row in curve if row[2] is not None]
        robust = max(scored) if self.needs_robust and scored else None
        return clean, robust

    def value(self, clean: float, robust: float | None) -> float | list[float]:
        """What the study is told: one number, or (clean, robust) for pareto."""
        if self.kind == "pareto":
            return [clean, float(robust)]  # type: ignore[arg-type]
        return float(robust) if self.kind == "robust" else clean

    def last_rung(self, epochs: int) -> int:
        """The highest rung a trial that ran ``epochs`` epochs reached (0: none)."""
        if not self.rungs:  # the median rule (or none) has no rungs: a trial got as far as it ran
            return epochs
        reached = [r for r in (*self.rungs, self.budget) if r <= epochs]
        return reached[-1] if reached else 0


def first_rung(cfg: TuneConfig, budget: int) -> int | None:
    """The first rung of successive halving: ``tune.pruner.min_epochs``, or, when a trial's budget is at
    or below it (a quick ``-S train.epochs=2``), the budget divided by the reduction factor (at least 1),
    so the rungs follow the budget down; None when the budget is one epoch (no rung fits: no pruning)."""
    p = cfg.pruner
    if p.min_epochs < budget:
        return p.min_epochs
    return max(1, budget // p.reduction_factor) if budget > 1 else None


def rung_note(cfg: TuneConfig, objective: Objective) -> str | None:
    """The one line that says the rungs were scaled to a small budget (None when they were not)."""
    p, budget = cfg.pruner, objective.budget
    if p.kind not in ("successive_halving", "hyperband") or p.min_epochs < budget:
        return None
    source = "tune.max_epochs" if cfg.max_epochs else "train.epochs"
    said = f"tune: a trial's budget ({budget} epoch{'s' * (budget != 1)}, {source}) is not above "
    said += f"tune.pruner.min_epochs ({p.min_epochs}): "
    if not objective.rungs:
        return said + "pruning is off, every trial runs the whole budget"
    shown = ", ".join(str(r) for r in objective.rungs)
    return said + f"the rungs are scaled to {shown} and the top rung {budget} epochs"


def pareto_promotable(
    trial_number: int, rung: int, trials: Sequence[FrozenTrial], reduction_factor: int
) -> bool:
    """Successive halving on Pareto rank: does this trial rank in the top 1/η of those at ``rung``?

    Each competitor's (clean, robust) at the rung is its ``rung_<epochs>`` user attribute. As in Optuna's
    rule, with fewer than η trials at a rung only the best one climbs.
    """
    at_rung = {
        t.number: tuple(t.user_attrs[f"rung_{rung}"]) for t in trials if f"rung_{rung}" in t.user_attrs
    }
    if trial_number not in at_rung or len(at_rung) == 1:
        return True
    ranks = pareto_ranks(at_rung)
    order = sorted(at_rung, key=lambda n: (ranks[n], -sum(at_rung[n]), n))
    keep = max(1, len(order) // reduction_factor)
    return trial_number in order[:keep]


def pareto_ranks(points: dict[int, tuple[float, ...]]) -> dict[int, int]:
    """Non-dominated sorting (maximising every coordinate): 0 for the front, 1 for the next, ..."""
    left, ranks, rank = dict(points), {}, 0
    while left:
        front = [n for n, p in left.items() if not any(_dominates(q, p) for m, q in left.items() if m != n)]
        for n in front:
            ranks[n] = rank
            del left[n]
        rank += 1
    return ranks


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def top_rung(trials: Sequence[FrozenTrial], objective: Objective) -> list[FrozenTrial]:
    """The complete trials that ran the whole budget: the only ones ``best_params`` may come from."""
    return [
        t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get(EPOCHS) == objective.budget
    ]


def is_baseline(t: FrozenTrial) -> bool:
    """Does this trial run the hand-set values (the study's baseline, or a retry of it)?"""
    return bool(t.user_attrs.get(BASELINE))


def pick_best(
    candidates: Sequence[FrozenTrial],
    objective: Objective,
    max_clean_drop: float,
    min_improvement: float = 0.0,
) -> FrozenTrial:
    """The trial whose values ``train`` applies; ties go to the baseline, then to the earlier trial.

    The rule sees the baseline's scores raised by ``min_improvement`` (both of them with ``pareto``), so
    another trial replaces it only when it beats it by more than that: on the objective's score, or with
    ``pareto`` on robustness within ``max_clean_drop``, or on clean accuracy by more than
    ``max_clean_drop`` as well. A baseline that did not reach the top rung is not among the candidates.
    """

    def score(t: FrozenTrial, value: float) -> float:
        return value + min_improvement + 1e-12 if is_baseline(t) else value  # a tie within rounding: kept

    if objective.kind != "pareto":
        return max(candidates, key=lambda t: (score(t, float(t.values[0])), is_baseline(t), -t.number))
    clean = {t.number: score(t, float(t.user_attrs[CLEAN])) for t in candidates}
    best_clean = max(clean.values())
    near = [t for t in candidates if clean[t.number] >= best_clean - max_clean_drop - 1e-12]
    return max(
        near,
        key=lambda t: (score(t, float(t.user_attrs[ROBUST])), clean[t.number], is_baseline(t), -t.number),
    )


def pack(correct: Any) -> str:
    """Per-image right/wrong (any sequence of bools) as a hex string, 8 images a byte."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack(packed: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(packed), dtype=np.uint8))[:n].astype(bool)


def guard_baseline(
    winner: FrozenTrial,
    candidates: Sequence[FrozenTrial],
    objective: Objective,
    max_clean_drop: float,
    min_improvement: float,
    significance: float | None,
) -> tuple[FrozenTrial, dict[str, Any] | None]:
    """Keep the baseline unless ``winner``'s win over it holds in a paired bootstrap (``tune.significance``).

    The score compared is the one that decided: clean accuracy (``accuracy``, or ``pareto`` where the
    baseline fell outside the clean window), else the robust score. Returns the trial ``best_params`` takes
    and what the test found (None where there was nothing to test: no baseline among the candidates, the
    baseline won, or the test is off).
    """
    baseline = next((t for t in candidates if is_baseline(t)), None)
    if significance is None or baseline is None or winner.number == baseline.number:
        return winner, None
    on = "clean" if objective.kind == "accuracy" else "robust"
    if objective.kind == "pareto":
        best_clean = max(float(t.user_attrs[CLEAN]) for t in candidates)
        if float(baseline.user_attrs[CLEAN]) + min_improvement < best_clean - max_clean_drop - 1e-12:
            on = "clean"
    p = loss_probability(winner, baseline, on, objective.robust_key)
    found = {"rival": winner.number, "score": on, "significance": significance, "p": p}
    if p is None:  # a trial from before steelflow kept val_correct: nothing to test on
        return winner, found | {"kept_baseline": False, "note": "no val_correct on these trials"}
    kept = p > significance
    return (baseline if kept else winner), found | {"kept_baseline": kept}


def loss_probability(rival: FrozenTrial, baseline: FrozenTrial, on: str, robust_key: str) -> float | None:
    """The share of paired bootstrap resamples of the validation images in which ``rival`` does not beat
    ``baseline`` on ``on`` (clean accuracy, or the robust score: the worst or mean family); None when a
    trial lacks the per-image record (or has fewer than two images: nothing to resample). Seeded, so every
    orchestrator finds the same value.

    scipy's paired bootstrap draws the resamples and applies the statistic (the rival's score minus the
    baseline's, both on the same resampled images); the share is read off its bootstrap distribution, as
    scipy reports intervals, not this one-sided share.
    """
    records = [t.user_attrs.get(CORRECT, {}).get(on) for t in (rival, baseline)]
    if not all(records) or records[0]["n"] != records[1]["n"]:
        return None
    n = records[0]["n"]
    views = sorted(records[0]["views"])
    if n < 2 or views != sorted(records[1]["views"]):
        return None
    by_view = np.mean if robust_key.endswith("_mean") and on == "robust" else np.min

    def score(right: np.ndarray, axis: int = -1) -> np.ndarray:
        return by_view(right.mean(axis=axis), axis=0)  # (views, …, n) → accuracy per view → one score

    def lead(rival_right: np.ndarray, baseline_right: np.ndarray, axis: int = -1) -> np.ndarray:
        return score(rival_right, axis) - score(baseline_right, axis)

    right = [np.stack([unpack(r["views"][v], n) for v in views]).astype(float) for r in records]  # (views, n)
    with warnings.catch_warnings():  # a distribution without spread: scipy warns about its interval only
        warnings.simplefilter("ignore")
        found = stats.bootstrap(
            right,
            lead,
            paired=True,
            vectorized=True,
            axis=-1,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
    return float(np.mean(found.bootstrap_distribution <= 0))


def pareto_front(trials: Sequence[FrozenTrial]) -> list[int]:
    """Numbers of the trials on the (clean, robust) Pareto front."""
    points = {t.number: (float(t.user_attrs[CLEAN]), float(t.user_attrs[ROBUST])) for t in trials}
    return sorted(n for n, r in pareto_ranks(points).items() if r == 0)


# --- plots ------------------------------------------------------------------------------------------


def plot_rungs(trials: Sequence[FrozenTrial], objective: Objective, path: Any) -> None:
    """Each trial's score epoch by epoch, the rungs as dashed lines, a pruned trial ending in a cross."""
    import matplotlib.pyplot as plt  # here, not at the top: a tune worker imports this module, never plots

    panels = [("clean validation accuracy", 1)] + (
        [(f"{objective.robust_key.removeprefix('val_')} (validation)", 2)] if objective.needs_robust else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (label, column) in zip(axes[0], panels, strict=True):
        for t in trials:
            curve = t.user_attrs.get(CURVE) or []
            if not curve:
                continue
            points = [row for row in curve if row[column] is not None]  # robust: the epochs scored
            if not points:
                continue
            epochs = [row[0] for row in points]
            best = [max(row[column] for row in points[: i + 1]) for i in range(len(points))]
            pruned = t.state == TrialState.PRUNED
            style = "-" if len(points) == len(curve) else "-o"
            (line,) = ax.plot(
                epochs, best, style, alpha=0.5 if pruned else 0.9, lw=1 if pruned else 1.6, ms=3
            )
            if pruned:
                ax.plot(epochs[-1], best[-1], "x", color=line.get_color())
            elif t.state == TrialState.COMPLETE:
                ax.annotate(
                    f"#{t.number}",
                    (epochs[-1], best[-1]),
                    fontsize=7,
                    xytext=(2, 0),
                    textcoords="offset points",
                )
        for rung in (*objective.rungs, objective.budget):
            ax.axvline(rung, color="grey", ls="--", lw=0.8)
        ax.set(xlabel="epoch", ylabel=f"{label}, best so far", ylim=(0, 1.02), title=label)
    fig.suptitle(
        f"rungs at {', '.join(map(str, objective.rungs)) or '-'} and {objective.budget} epochs; × = pruned"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_front(trials: Sequence[FrozenTrial], objective: Objective, chosen: int | None, path: Any) -> None:
    """Clean against robust validation accuracy of the top-rung trials, the front joined, the pick circled."""
    import matplotlib.pyplot as plt  # as in plot_rungs

    fig, ax = plt.subplots(figsize=(6, 5))
    done = [t for t in top_rung(trials, objective) if t.user_attrs.get(ROBUST) is not None]
    if not done:
        ax.text(
            0.5,
            0.5,
            "no top-rung trial with a robust score\n(tune.objective accuracy scores clean only)",
            ha="center",
            va="center",
        )
        ax.set_axis_off()
    else:
        pruned = [t for t in trials if t.state == TrialState.PRUNED and t.user_attrs.get(ROBUST) is not None]
        for group, colour, size, label in (
            (pruned, "lightgrey", 20, "pruned (scores at their last rung)"),
            (done, "tab:blue", 30, "top rung"),
        ):
            xs, ys = [t.user_attrs[CLEAN] for t in group], [t.user_attrs[ROBUST] for t in group]
            ax.scatter(xs, ys, c=colour, s=size, label=label)
        front = sorted((t for t in done if t.number in pareto_front(done)), key=lambda t: t.user_attrs[CLEAN])
        ax.plot(
            [t.user_attrs[CLEAN] for t in front],
            [t.user_attrs[ROBUST] for t in front],
            "-o",
            c="tab:orange",
            label="Pareto front",
        )
        for t in done:
            ax.annotate(
                f"#{t.number}",
                (t.user_attrs[CLEAN], t.user_attrs[ROBUST]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        pick = next((t for t in done if t.number == chosen), None)
        if pick is not None:
            ax.scatter(
                [pick.user_attrs[CLEAN]],
                [pick.user_attrs[ROBUST]],
                s=160,
                facecolors="none",
                edgecolors="red",
                linewidths=2,
                label=f"best_params (trial {pick.number})",
            )
        ax.set(
            xlabel="clean validation accuracy",
            ylabel=objective.robust_key.removeprefix("val_"),
            title="clean vs robust validation accuracy",
        )
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
