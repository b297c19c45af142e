"""The paper's published numbers, kept beside ours in every robustness report.

Source: "CASI-Net: A Novel and Effect Steel Surface Defect Classification Method Based on Coordinate
Attention and Self-Interaction Mechanism", Mathematics 2022, 10, 963 — Table 1 (accuracy, %, of the four
ablation variants on the original NEU-CLS test set and six corrupted copies) and Table 2 (params).
"""

from __future__ import annotations

CITATION = "CASI-Net, Mathematics 2022, 10, 963, Tables 1 and 2"

# Table 1 columns, in the paper's order, mapped to steelflow's default condition names.
CONDITIONS: dict[str, str] = {
    "original": "Original",
    "luminance_0.4": "Luminance (α ± 0.4)",
    "luminance_1.0": "Luminance (α ± 1)",
    "noise_20db": "Noise (20 dB)",
    "noise_35db": "Noise (35 dB)",
    "blur_2px": "Blur (2)",
    "blur_5px": "Blur (5)",
}

# Table 1 rows, by steelflow variant name: accuracy (%) per condition, in CONDITIONS order.
VARIANT_LABELS: dict[str, str] = {
    "blfe_mlp": "BLFE + MLP",
    "blfe_si_mlp": "BLFE + SI + MLP",
    "blfe_ca_mlp": "BLFE + CA + MLP",
    "casinet": "BLFE + CA + SI + MLP (CASI-Net)",
}
_TABLE1_ROWS = {
    "blfe_mlp": (94.79, 92.93, 82.54, 80.33, 92.87, 94.31, 80.62),
    "blfe_si_mlp": (95.22, 93.53, 84.66, 85.34, 93.26, 94.53, 82.33),
    "blfe_ca_mlp": (95.47, 93.68, 87.14, 90.63, 94.97, 95.26, 90.19),
    "casinet": (95.83, 94.21, 92.56, 94.71, 95.26, 95.66, 91.62),
}
TABLE1: dict[str, dict[str, float]] = {
    variant: dict(zip(CONDITIONS, row, strict=True)) for variant, row in _TABLE1_ROWS.items()
}

# Table 2: parameters (millions) and accuracy (%).
TABLE2: dict[str, tuple[float, float]] = {
    "ResNet": (25.56, 95.09),
    "EffNet": (2.21, 94.81),
    "MobileNet": (2.23, 95.57),
    "CASI-Net": (2.22, 95.83),
}


def in_table_order(conditions: list[str]) -> list[str]:
    """The paper's Table 1 column order for the conditions it has, then any others as given."""
    known = [c for c in CONDITIONS if c in conditions]
    return known + [c for c in conditions if c not in CONDITIONS]


def table1_head(conditions: list[str]) -> list[str]:
    """Markdown header and rule of a Table-1-style table over ``conditions`` (paper names where known)."""
    return [
        "| method | " + " | ".join(CONDITIONS.get(c, c) for c in conditions) + " |",
        "|---|" + "---:|" * len(conditions),
    ]


def ours_row(label: str, accuracy: dict[str, float], conditions: list[str]) -> str:
    """Our accuracies (fractions) as a bold row of percentages."""
    return f"| **{label}** | " + " | ".join(f"**{100 * accuracy[c]:.2f}**" for c in conditions) + " |"


def paper_row(variant: str, conditions: list[str]) -> str:
    """The paper's Table 1 row for ``variant``; '–' where the paper has no such condition."""
    row = TABLE1[variant]
    cells = " | ".join(f"{row[c]:.2f}" if c in row else "–" for c in conditions)
    return f"| paper: {VARIANT_LABELS[variant]} | {cells} |"
