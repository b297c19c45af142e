"""`steelflow models` and `steelflow reproduce` through the CLI, on the tiny profile."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.models import list_models


def test_models_lists_every_variant_with_params_and_flops():
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list_models()
    casinet = next(r for r in rows if r["name"] == "casinet")
    assert abs(casinet["params"] - 2.22e6) / 2.22e6 < 0.05  # the paper's Table 2, ±5 %
    assert all(r["flops"] > 1e9 for r in rows)  # at 300 × 300

    table = CliRunner().invoke(app, ["models", "--image-size", "64", "--classes", "4"])
    flat = " ".join(table.output.split())
    assert table.exit_code == 0 and "casinet" in flat and "64×64, 4 classes" in flat


def test_models_rejects_a_size_the_network_cannot_take():
    result = CliRunner().invoke(app, ["models", "--image-size", "4"])
    assert result.exit_code == 2 and "image_size 4 is too small" in result.output


def test_reproduce_writes_table_1_with_all_four_variants(project):
    runner = CliRunner()
    for step in ("ingest", "validate", "split", "corrupt"):
        assert runner.invoke(app, [step]).exit_code == 0
    result = runner.invoke(app, ["reproduce", "--no-track", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    table = Path("reports/reproduce/table1.md").read_text()
    for label in ("BLFE + MLP", "BLFE + SI + MLP", "BLFE + CA + MLP", "BLFE + CA + SI + MLP"):
        assert f"| **ours: {label}" in table and f"| paper: {label}" in table
    assert "| BLFE + CA + SI + MLP (CASI-Net) | 2.203 M | 2.22 M |" in table
    summary = json.loads(Path("reports/reproduce/reproduce.json").read_text())
    assert set(summary["accuracy"]) == set(list_models())
    assert all(len(acc) == 7 for acc in summary["accuracy"].values())  # original + six conditions
