"""`steelflow models` and `steelflow reproduce` through the CLI, on the tiny profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
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


@pytest.mark.slow  # trains every variant of Table 1, clean and robust
def test_reproduce_writes_table_1_with_a_clean_and_a_robust_row_per_variant(project):
    runner = CliRunner()
    for step in ("ingest", "validate", "split", "corrupt"):
        assert runner.invoke(app, [step]).exit_code == 0
    result = runner.invoke(app, ["reproduce", "--no-track", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    table = Path("reports/reproduce/table1.md").read_text()
    table1, held = table.split("## Hold-out")
    for label in ("BLFE + MLP", "BLFE + SI + MLP", "BLFE + CA + MLP", "BLFE + CA + SI + MLP"):
        for regime in ("clean", "robust"):
            assert f"| **ours, {regime}-trained: {label}" in table1, (regime, label)
            assert f"| **ours, {regime}-trained: {label}" in held, (regime, label)
        assert f"| paper: {label}" in table1 and f"| paper: {label}" not in held
    assert "| BLFE + CA + SI + MLP (CASI-Net) | 2.203 M | 2.22 M |" in table
    summary = json.loads(Path("reports/reproduce/reproduce.json").read_text())
    assert set(summary["accuracy"]) == set(list_models())
    n_sets = 1 + 6 + len(summary["holdout"])  # original, the six conditions, the hold-out block
    assert summary["holdout"] and all(
        set(by_regime) == {"clean", "robust"} and all(len(acc) == n_sets for acc in by_regime.values())
        for by_regime in summary["accuracy"].values()
    )
    for variant in list_models():  # each regime's model was trained as it says
        for regime in ("clean", "robust"):
            meta = torch.load(f"reports/reproduce/{variant}/{regime}/model.pt", weights_only=True)["meta"]
            assert meta["robust"] is (regime == "robust")


def test_reproduce_refuses_an_unknown_training_regime(project):
    result = CliRunner().invoke(app, ["reproduce", "--no-track", "--training", "dirty"])
    assert result.exit_code == 2 and "expected both, clean or robust" in result.output
