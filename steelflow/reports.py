"""Pictures and pages for people: plots the steps write next to their JSON, the robustness table in the
layout of the paper's Table 1, and the model card a registered version carries."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: steps run in CI, DVC and Kubeflow pods
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from steelflow import atomic, paper  # noqa: E402
from steelflow.scoring import CLEAN, training_label  # noqa: E402

if TYPE_CHECKING:
    from steelflow.config import Params
    from steelflow.models import ModelMeta

CELL_INCHES = 1.6


def grid_picks(labels: list[str], classes: list[str], per_class: int) -> list[int]:
    """Indices of the first ``per_class`` images of each class, class by class."""
    return [i for c in classes for i in [j for j, lab in enumerate(labels) if lab == c][:per_class]]


def corruption_grid(examples: dict[str, list[np.ndarray]], row_labels: list[str], out: Path) -> None:
    """One row per example image (labelled by class); columns: the original, then each condition."""
    columns = list(examples)
    n_rows = len(row_labels)
    fig, axes = plt.subplots(
        n_rows, len(columns), figsize=(CELL_INCHES * len(columns), CELL_INCHES * n_rows), squeeze=False
    )
    for r, label in enumerate(row_labels):
        for c, name in enumerate(columns):
            ax = axes[r][c]
            img = examples[name][r]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    _save(fig, out)


def accuracy_bars(
    accuracy: dict[str, float], paper_row: dict[str, float] | None, out: Path, holdout: Collection[str] = ()
) -> None:
    """Accuracy (%) per condition; the paper's numbers for the same variant beside ours when it has them.
    Hold-out conditions are drawn in their own colour, right of a dashed line."""
    names = [n for n in accuracy if n not in holdout] + [n for n in accuracy if n in holdout]
    x = np.arange(len(names))
    width = 0.4 if paper_row else 0.6
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4))
    ours = x - (width / 2 if paper_row else 0)
    held = np.array([n in holdout for n in names])
    ax.bar(ours[~held], [100 * accuracy[n] for n in names if n not in holdout], width, label="steelflow")
    if held.any():
        ax.bar(ours[held], [100 * accuracy[n] for n in names if n in holdout], width, label="hold-out")
        ax.axvline(int(np.argmax(held)) - 0.5, color="gray", linestyle="--", linewidth=1)
    if paper_row:
        ax.bar(x + width / 2, [paper_row.get(n, np.nan) for n in names], width, label="paper", alpha=0.6)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out)


def severity_lines(graded: dict[str, Any], out: Path) -> None:
    """Accuracy (%) against severity, one line per graded family (severity 0: the clean test set); Table 1
    families solid, hold-out families dashed."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    clean = 100 * (1 - graded["clean_error"])
    for family, row in graded["families"].items():
        style = "--" if row["group"] == "holdout" else "-"
        levels = range(len(row["accuracy"]) + 1)
        ax.plot(levels, [clean, *(100 * a for a in row["accuracy"])], style, marker="o", label=family)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: lines fall anywhere
    _save(fig, out)


def confusion_figure(matrix: np.ndarray, classes: list[str], out: Path) -> None:
    """Rows: the true class; columns: the predicted one; counts in the cells."""
    fig, ax = plt.subplots(figsize=(0.8 * len(classes) + 2.5, 0.8 * len(classes) + 2))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=classes).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, text_kw={"fontsize": 8}
    )
    plt.setp(ax.get_xticklabels(), ha="right")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _save(fig, out)


def _save(fig: plt.Figure, out: Path) -> None:
    fig.tight_layout()
    with atomic.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def attention_figure(model: Any, clean: Any, per_class: int, out: Path, device: Any) -> None:
    """Like the paper's Fig. 7: test images (top) and the coordinate-attention weights over them (bottom).

    The weight map is ``g_h · g_w`` averaged over channels (Hou et al.'s two 1-D gates, outer product),
    upsampled to the image.
    """
    # here, not at the top: the registry writes model cards with this module and never loads the network
    import torch

    from steelflow.inference import as_float, to_tensor

    labels = [clean.classes[i] for i in clean.labels]
    picks = grid_picks(labels, clean.classes, per_class)
    images = clean.read(np.asarray(picks, dtype=np.int64))  # those alone: the set may be large
    x = as_float(to_tensor(images).to(device))
    with torch.no_grad():
        g_h, g_w = model.attention_maps(x)
        weights = (g_h * g_w).mean(1, keepdim=True).float()
        weights = (
            torch.nn.functional.interpolate(weights, size=x.shape[-2:], mode="bilinear")[:, 0].cpu().numpy()
        )
    fig, axes = plt.subplots(
        2, len(picks), figsize=(CELL_INCHES * len(picks), 2 * CELL_INCHES), squeeze=False
    )
    for c, i in enumerate(picks):
        image = images[c][..., 0] if images.shape[-1] == 1 else images[c]
        axes[0][c].imshow(image, cmap="gray", vmin=0, vmax=255)
        axes[0][c].set_title(labels[i], fontsize=8)
        axes[1][c].imshow(image, cmap="gray", vmin=0, vmax=255)
        axes[1][c].imshow(weights[c], cmap="jet", alpha=0.5)
        for ax in (axes[0][c], axes[1][c]):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("image", fontsize=8)
    axes[1][0].set_ylabel("attention", fontsize=8)
    _save(fig, out)


# --- tables and pages -------------------------------------------------------------------------------


def is_synthetic(source: str | None) -> bool:
    """``data.source`` names the generated images (:mod:`steelflow.data.synthetic`), not real ones."""
    return source == "synthetic"


def data_label(source: str | None, short: bool = False) -> str:
    """What a model was trained and evaluated on, for a person: synthetic images, or the real source."""
    if is_synthetic(source):
        return (
            "synthetic images"
            if short
            else "synthetic steel images that steelflow generates (`data.source: synthetic`), not NEU-CLS "
            "or any camera's photographs"
        )
    name = str(source).rstrip("/").rsplit("/", 1)[-1] or str(source)
    return f"data `{name}`" if short else f"the images of `{source}` (`data.source`)"


def robustness_table(
    variant: str,
    rows: dict[str, dict[str, float]],
    holdout: Collection[str] = (),
    data_source: str | None = None,
) -> str:
    """Markdown: our rows (label → accuracy) in the layout of the paper's Table 1 with the paper's rows,
    then the hold-out block (conditions no training family resembles), which the paper does not have.

    On synthetic data (``data_source``) the paper's rows are left out, and the page says why: they were
    measured on NEU-CLS, and numbers on other images are not comparable with them."""
    synthetic = is_synthetic(data_source)
    out = []
    out.append(f"# Robustness: accuracy (%) of `{variant}` on the clean and corrupted test sets\n\n")
    if data_source:
        out.append(f"Our rows: trained and evaluated on {data_label(data_source)}.\n\n")
    out.append("\n".join(table1_lines(rows, holdout, [] if synthetic else list(paper.TABLE1))) + "\n\n")
    if synthetic:
        out.append(
            f"**Synthetic data: the paper's rows ({paper.CITATION}, on NEU-CLS at 300 × 300) are left "
            "out.** These accuracies are on generated images, so they say nothing about NEU-CLS or real "
            "steel photographs; train on NEU-CLS (`data.source`, `profiles/paper.yaml`) to compare.\n"
        )
    else:
        out.append(
            f"Paper rows: {paper.CITATION}, on NEU-CLS at 300 × 300. Our corruptions are Fu-style "
            "re-implementations (see README), and our data and image size come from params.yaml, so compare "
            "the pattern across conditions rather than single numbers.\n"
        )
    if holdout:
        out.append("\n" + "\n".join(holdout_lines(rows, holdout)) + "\n")
    return "".join(out)


def table1_lines(
    rows: dict[str, dict[str, float]], holdout: Collection[str], paper_variants: list[str]
) -> list[str]:
    """Table 1's head over the clean set and the paper's conditions, our rows, then the paper's rows."""
    first = next(iter(rows.values()))
    columns = paper.in_table_order([c for c in first if c not in holdout])
    return [
        *paper.table1_head(columns),
        *(paper.ours_row(label, acc, columns) for label, acc in rows.items()),
        *(paper.paper_row(v, columns) for v in paper_variants),
    ]


def graded_lines(graded: dict[str, Any], baseline: str | None) -> list[str]:
    """The graded block: accuracy (%) per family and severity, the corruption error (CE) and relative CE
    of each family against the baseline, and mCE; without a baseline, the mean error, and why no mCE."""
    n = max((len(r["accuracy"]) for r in graded["families"].values()), default=0)
    scored = "mce" in graded
    head = ["family", "group", *(f"s{s}" for s in range(1, n + 1)), "mean error"]
    head += ["CE", "relative CE"] if scored else []
    lines = [
        "## Graded corruptions: accuracy (%) per severity (corrupt.graded)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * 2 + "---:|" * (len(head) - 2),
    ]
    for family, row in graded["families"].items():
        cells = [
            family,
            row["group"],
            *(f"{100 * a:.1f}" for a in row["accuracy"]),
            f"{row['mean_error']:.3f}",
        ]
        cells += [_num(row["ce"]), _num(row["relative_ce"])] if scored else []
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if not scored:
        lines.append(
            f"Mean error over families {graded['mean_error']:.3f}. No mCE: it needs a baseline's errors on "
            "the same ladders (evaluate.mce_baseline: the reports/graded_errors.json of the clean-trained "
            "CASI-Net)."
        )
        return lines
    model = graded.get("baseline") or {}
    lines.append(
        f"**mCE {_num(graded['mce'])}**, relative mCE {_num(graded.get('relative_mce'))} (Table 1 families "
        f"{_num(graded.get('table1_mce'))} / {_num(graded.get('table1_relative_mce'))}, hold-out "
        f"{_num(graded.get('holdout_mce'))} / {_num(graded.get('holdout_relative_mce'))}). CE = Σ_s error / "
        "Σ_s baseline error (ImageNet-C; 1.000 = as the baseline, lower is better); normalised by "
        f"`{model.get('variant', '?')}`, {model.get('training', '?')}, from `{baseline}`."
    )
    return lines


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def holdout_lines(rows: dict[str, dict[str, float]], holdout: Collection[str]) -> list[str]:
    """The hold-out block: a heading, our rows over the hold-out conditions (the clean set for reference)."""
    columns = [CLEAN, *holdout]
    return [
        "## Hold-out conditions: corruption families training never augments with",
        "",
        *paper.table1_head(columns),
        *(paper.ours_row(label, acc, columns) for label, acc in rows.items()),
    ]


def model_card(params: Params, meta: ModelMeta, metrics: dict[str, Any], tags: dict[str, str]) -> str:
    """The registered version's model card (Markdown): data, training params, the robustness table,
    intended use, limitations. ``tags`` are the version's identity tags (data version, commit, params hash,
    run id, evaluation-data hash)."""
    accuracy = {name: m["accuracy"] for name, m in metrics["conditions"].items()}
    s = metrics["summary"]
    train = params.train
    source = params.data.source
    lines = [
        f"# Model card: {params.registry.name if params.registry else 'steelflow'} ({meta.variant})",
        "",
        *_synthetic_warning(source),
        "## Data",
        f"- **trained and evaluated on {data_label(source)}**",
        f"- source: `{source}`; classes: {', '.join(meta.classes)}",
        f"- data version (md5 of data/manifest.csv): `{tags['data_version']}`",
        f"- split: test {params.split.test}, val {params.split.val} of train, seed {params.split.seed}",
        f"- evaluation data hash: `{tags['eval_data_hash']}`",
        "",
        "## Training",
        f"- variant `{meta.variant}` at {meta.image_size} px, dropout {meta.dropout}, input stage "
        f"`{meta.input_norm}`; {training_label(meta)} (train.robust)",
        f"- SGD lr {train.lr}, momentum {train.momentum}, weight decay {train.weight_decay}, batch "
        f"{train.batch_size}, {train.epochs} epochs ({train.schedule}), seed {train.seed}",
        f"- git commit `{tags['git_commit']}` (dirty: {tags['git_dirty']}), "
        f"params hash `{tags['params_hash']}`, MLflow run `{tags['run_id']}`",
        "",
        "## Metrics",
        f"Clean accuracy {s['clean_accuracy']:.4f}; worst condition {s['worst_condition']} "
        f"{s['worst_accuracy']:.4f}; mean over corrupted sets {s['mean_corrupted_accuracy']:.4f}"
        + (
            f"; worst hold-out {s['holdout_worst_condition']} {s['holdout_worst_accuracy']:.4f}."
            if "holdout_worst_condition" in s
            else "."
        )
        + (
            f" mCE over the graded corruptions {s['mce']:.4f}, relative mCE {_num(s.get('relative_mce'))} "
            "(1 = the clean-trained baseline's)."
            if s.get("mce") is not None
            else ""
        ),
        "",
        robustness_table(
            meta.variant,
            {f"this model, {training_label(meta)}, {data_label(source, short=True)}": accuracy},
            params.corrupt.holdout_names,
            source,
        ).split("\n", 2)[2],
        "## Intended use",
        "Classifying single crops of hot-rolled steel surface into the six NEU-CLS defect classes (or the "
        "classes of the dataset it was trained on), as a screening aid next to human inspection.",
        "",
        "## Limitations",
        "- Trained on one dataset's imaging conditions; other mills, cameras or lighting need re-validation.",
        "- Every image gets one of the known classes: there is no 'no defect' or 'unknown' answer.",
        "- Robustness is measured on synthetic corruptions (lighting, noise, blur), not on field data.",
    ]
    return "\n".join(lines) + "\n"


def _synthetic_warning(source: str) -> list[str]:
    """The card's first words when the model has never seen a real image."""
    if not is_synthetic(source):
        return []
    return [
        "> **This model knows only synthetic images.** It was trained and evaluated on images steelflow "
        "generates (`data.source: synthetic`, the default profile), to exercise the pipeline. It gets most "
        "real steel photographs wrong, NEU-CLS images included, and its accuracies below are not "
        "comparable with the paper's NEU-CLS results. For real images, train on them: set `data.source` "
        "to their folder.",
        "",
    ]
