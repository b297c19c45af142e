"""Promotion gates: the Table 1 worst and the hold-out worst are judged apart, each against its own bar."""

from __future__ import annotations

import pytest

from steelflow.config import load_params
from steelflow.errors import DataError
from steelflow.gates import check_gates
from tests.support.helpers import REPO

ACC = {"original": 0.97, "luminance_1.0": 0.90, "blur_5px": 0.95, "jpeg_q10": 0.70, "stripes_0.1": 0.88}
HOLDOUT = ["jpeg_q10", "stripes_0.1"]


def _gates(**changes):
    gates = load_params(REPO / "params.yaml").registry.gates
    return gates.model_copy(update=changes)


def test_the_worst_gate_reads_the_table_1_conditions_and_the_hold_out_gate_its_own():
    gates = {g.name: g for g in check_gates(_gates(min_holdout_accuracy=0.8), ACC, None, HOLDOUT)}
    worst = gates["worst accuracy (luminance_1.0)"]
    assert worst.value == 0.90 and worst.passed
    held = gates["worst hold-out (jpeg_q10)"]
    assert held.value == 0.70 and not held.passed


def test_a_brittle_model_fails_the_default_worst_gate():
    brittle = {**ACC, "luminance_1.0": 0.546}  # main's clean-trained `make run` model, α = 1
    gates = check_gates(_gates(), brittle, None, HOLDOUT)
    assert not next(g for g in gates if g.name.startswith("worst accuracy")).passed


def test_without_the_hold_out_gate_hold_out_sets_count_only_against_the_champion():
    gates = check_gates(_gates(min_holdout_accuracy=None), ACC, {**ACC, "jpeg_q10": 0.9}, HOLDOUT)
    assert not any(g.name.startswith("worst hold-out") for g in gates)
    drop = next(g for g in gates if g.name == "drop vs champion (jpeg_q10)")
    assert drop.value == pytest.approx(0.2) and not drop.passed


def test_a_model_without_hold_out_scores_cannot_pass_a_hold_out_gate_silently():
    table1_only = {k: v for k, v in ACC.items() if k not in HOLDOUT}
    with pytest.raises(DataError, match="no hold-out accuracy"):
        check_gates(_gates(min_holdout_accuracy=0.8), table1_only, None, HOLDOUT)
