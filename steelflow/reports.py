"""Pictures for people: plots the steps write next to their JSON."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: steps run in CI, DVC and Kubeflow pods
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from steelflow import io  # noqa: E402

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
    fig.tight_layout()
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
