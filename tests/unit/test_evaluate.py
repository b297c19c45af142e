"""Evaluation: a model whose answers we know gives exactly the metrics, tables and plots we expect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steelflow import paper, paths, scoring
from steelflow.config import load_params
from steelflow.data import cache
from steelflow.errors import DataError
from steelflow.inference import save_trained
from steelflow.models import create_model
from steelflow.steps.evaluate import evaluate, headline, metric_names, robustness_table, score

CLASSES = ["dent", "rust", "scratch"]
TWO_FAMILIES = "{noise: {snr_db: [42.5, 35, 27.5, 20, 12.5]}, jpeg: {quality: [20, 14, 10, 7, 5]}}"
COUNTS = [4, 5, 6]  # test images per class


def _always(label: int, variant: str = "casinet") -> torch.nn.Module:
    """A network that answers ``label`` for every input: a zero last layer with a one-hot bias."""
    model = create_model(variant, num_classes=len(CLASSES), image_size=16)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), len(CLASSES)) * 10.0)
    return model


def _write_sets(conditions: list[str]) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), COUNTS)
    sets = [
        cache.split_path("data/cache", "test"),
        *(cache.condition_path("data/cache", c) for c in conditions),
    ]
    for path in sets:
        images = rng.integers(0, 256, (len(labels), 16, 16, 1), dtype=np.uint8)
        sha = np.array([f"{i:064x}" for i in range(len(labels))])
        cache.save(cache.CachedSet(images, labels, CLASSES, sha), path)


@pytest.fixture
def fixed_model(project):
    # two graded families (one Table 1, one hold-out) keep the test short: each set is one more pass
    p = load_params(overrides=[f"corrupt.graded.families={TWO_FAMILIES}"])
    _write_sets([c.name for c in p.corrupt.all_conditions] + p.corrupt.graded_names)
    meta = {"variant": "casinet", "image_size": 16, "dropout": 0.0, "classes": CLASSES, "in_chans": 1}
    save_trained(_always(1), meta, Path("models/model.pt"))
    return p


def test_a_model_that_always_says_rust_gets_the_expected_confusion_matrix(fixed_model):
    p = fixed_model
    result = evaluate(p.evaluate, p.corrupt)
    n = sum(COUNTS)
    assert result.accuracy == {name: pytest.approx(COUNTS[1] / n) for name in result.accuracy}
    holdout = [c.name for c in p.corrupt.holdout]
    table1 = [c.name for c in p.corrupt.conditions]
    assert holdout and list(result.accuracy) == ["original", *table1, *holdout]
    metrics = json.loads(Path("metrics/evaluate.json").read_text())
    assert metrics["holdout"] == holdout
    summary = metrics["summary"]
    assert summary["worst_condition"] not in holdout and summary["holdout_worst_condition"] in holdout
    assert summary["training"] == "clean-trained"  # a model saved without the robust flag
    assert set(metrics["conditions"]["original"]) == {
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "auroc_ovr_macro",
    }  # scalars only: `dvc metrics show` stays readable
    clean = json.loads(Path("reports/evaluation.json").read_text())["original"]
    assert clean["confusion_matrix"] == [[0, 4, 0], [0, 5, 0], [0, 6, 0]]
    assert clean["per_class"]["rust"] == {
        "precision": pytest.approx(5 / 15),
        "recall": 1.0,
        "f1": pytest.approx(0.5),
        "support": 5,
    }
    assert clean["per_class"]["dent"]["recall"] == 0.0
    assert clean["auroc_ovr_macro"] == pytest.approx(0.5)  # constant scores rank nothing
    assert metrics["summary"]["clean_accuracy"] == pytest.approx(5 / 15)
    for png in ("accuracy_by_condition.png", "confusion_matrix.png", "attention.png"):
        assert Path("reports/plots", png).stat().st_size > 5_000, png
    predictions = Path("reports/predictions.csv").read_text().splitlines()
    assert predictions[0] == "sha256,actual,predicted" and len(predictions) == 1 + n
    assert all(line.endswith(",rust") for line in predictions[1:])


def test_robustness_report_puts_the_papers_numbers_beside_ours(fixed_model):
    p = fixed_model
    evaluate(p.evaluate, p.corrupt)
    text = Path("reports/robustness.md").read_text()
    assert "**33.33**" in text  # ours: 5 of 15
    for variant, row in paper.TABLE1.items():
        assert paper.VARIANT_LABELS[variant] in text
        assert f"{row['luminance_1.0']:.2f}" in text
    assert paper.CITATION in text


def test_dvc_shows_a_summary_of_the_headline_numbers_and_the_full_set_stays_beside_it(fixed_model):
    p = fixed_model
    evaluate(p.evaluate, p.corrupt)
    full = json.loads(paths.EVALUATE_METRICS.read_text())
    shown = json.loads(paths.SUMMARY_METRICS.read_text())
    # numbers only, one per headline: a line of `dvc metrics show`, not 100 columns (no mCE here: the
    # default conditions have no graded levels)
    assert shown == {
        "clean_accuracy": pytest.approx(5 / 15),
        "worst_accuracy": full["summary"]["worst_accuracy"],
        "holdout_worst_accuracy": full["summary"]["holdout_worst_accuracy"],
    }
    assert len(full["conditions"]) == 1 + len(p.corrupt.all_conditions)  # the full set, every condition


def test_the_summary_takes_mce_and_relative_mce_when_the_evaluation_has_them():
    summary = {"clean_accuracy": 0.9, "worst_condition": "blur_5px", "worst_accuracy": 0.5, "mce": 0.8}
    assert headline({"summary": summary, "relative_mce": 1.2, "conditions": {}}) == {
        "clean_accuracy": 0.9,
        "worst_accuracy": 0.5,
        "mce": 0.8,
        "relative_mce": 1.2,
    }
    assert "mce" not in headline({"summary": {**summary, "mce": float("nan")}})  # not a number DVC can diff


def test_on_synthetic_data_the_report_leaves_the_papers_neu_cls_rows_out_and_says_why(fixed_model):
    p = fixed_model
    evaluate(p.evaluate, p.corrupt, data_source="synthetic")
    text = Path("reports/robustness.md").read_text()
    assert "trained and evaluated on synthetic steel images" in text
    assert "| **steelflow casinet, clean-trained, synthetic images** |" in text
    assert "paper:" not in text and "the paper's rows" in text and "are left out" in text
    evaluate(p.evaluate, p.corrupt, data_source="/data/NEU-CLS")
    text = Path("reports/robustness.md").read_text()
    assert "trained and evaluated on the images of `/data/NEU-CLS`" in text
    assert "| **steelflow casinet, clean-trained, data `NEU-CLS`** |" in text
    assert paper.VARIANT_LABELS["casinet"] in text  # real data: the paper's rows beside ours


def test_graded_sets_are_reported_per_family_and_severity_without_an_mce_when_no_baseline_is_set(fixed_model):
    p = fixed_model
    result = evaluate(p.evaluate, p.corrupt)
    families = list(p.corrupt.graded.families)
    assert list(result.graded["families"]) == families
    metrics = json.loads(Path("metrics/evaluate.json").read_text())
    assert metrics["graded"]["noise"] == {
        **{f"s{s}": pytest.approx(5 / 15) for s in range(1, 6)},
        "mean_error": pytest.approx(10 / 15),
    }
    assert "mce" not in metrics["summary"] and metrics["summary"]["graded_mean_error"] == pytest.approx(
        10 / 15
    )
    assert set(metrics["conditions"]) == {"original", *(c.name for c in p.corrupt.all_conditions)}
    errors = json.loads(Path("reports/graded_errors.json").read_text())  # what a baseline file holds
    assert errors["model"]["training"] == "clean-trained" and errors["ladders"]["jpeg"] == {
        "quality": [20, 14, 10, 7, 5]
    }
    assert errors["families"]["jpeg"] == pytest.approx([10 / 15] * 5)
    assert "No mCE: it needs a baseline" in Path("reports/robustness.md").read_text()
    assert Path("reports/plots/accuracy_by_severity.png").stat().st_size > 5_000


def test_with_a_baseline_evaluate_reports_mce_in_metrics_mlflow_names_and_the_report(fixed_model, tmp_path):
    p = fixed_model
    evaluate(p.evaluate, p.corrupt)  # a first model's errors (2/3 everywhere) become the baseline
    baseline = tmp_path / "baseline.json"
    tree = json.loads(Path("reports/graded_errors.json").read_text())
    tree["families"]["noise"] = [1.0] * 5  # a baseline that got noise all wrong: CE 2/3 there
    baseline.write_text(json.dumps(tree))
    cfg = p.evaluate.model_copy(update={"mce_baseline": str(baseline)})
    result = evaluate(cfg, p.corrupt)
    summary = json.loads(Path("metrics/evaluate.json").read_text())["summary"]
    assert summary["mce"] == pytest.approx((2 / 3 + 1) / 2)  # noise, jpeg
    # relative: this model loses nothing to any corruption (every set 1/3 right, as clean); the baseline
    # lost something on noise alone, the only family with a relative CE: 0 / (5 × 1/3)
    assert summary["relative_mce"] == pytest.approx(0.0)
    assert summary["table1_mce"] == pytest.approx(2 / 3)  # noise
    assert summary["holdout_mce"] == pytest.approx(1.0)  # jpeg
    names = metric_names({}, result.summary, result.graded)
    assert names["eval/mce"] == summary["mce"] and names["eval/graded/noise/ce"] == pytest.approx(2 / 3)
    assert names["eval/graded/jpeg/s3"] == pytest.approx(5 / 15)
    text = Path("reports/robustness.md").read_text()
    assert "| noise | table1 | 33.3 | 33.3 | 33.3 | 33.3 | 33.3 | 0.667 | 0.667 | 0.000 |" in text
    assert "| jpeg | holdout | 33.3 | 33.3 | 33.3 | 33.3 | 33.3 | 0.667 | 1.000 | – |" in text
    assert f"**mCE {summary['mce']:.3f}**" in text


def test_a_baseline_measured_on_other_ladders_stops_evaluate_before_scoring(fixed_model, tmp_path):
    p = fixed_model
    evaluate(p.evaluate, p.corrupt)
    tree = json.loads(Path("reports/graded_errors.json").read_text())
    tree["ladders"]["noise"] = {"snr_db": [40, 30, 20, 10, 0]}
    (tmp_path / "old.json").write_text(json.dumps(tree))
    cfg = p.evaluate.model_copy(update={"mce_baseline": str(tmp_path / "old.json")})
    with pytest.raises(DataError, match=r"other ladders for \['noise'\]"):
        evaluate(cfg, p.corrupt)


def test_variants_without_attention_draw_no_attention_picture(project):
    p = load_params(overrides=["corrupt.graded=null"])
    _write_sets([c.name for c in p.corrupt.all_conditions])
    meta = {"variant": "blfe_mlp", "image_size": 16, "dropout": 0.0, "classes": CLASSES, "in_chans": 1}
    save_trained(_always(2, "blfe_mlp"), meta, Path("models/model.pt"))
    evaluate(p.evaluate, p.corrupt)
    assert Path("reports/plots/confusion_matrix.png").is_file()
    assert not Path("reports/plots/attention.png").exists()


def test_score_on_hand_made_probabilities():
    labels = np.array([0, 0, 1, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    s = score(labels, probs, CLASSES)
    assert s["accuracy"] == 0.75
    assert s["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert s["per_class"]["rust"]["precision"] == 0.5
    assert s["auroc_ovr_macro"] == pytest.approx(1.0)


def test_table_layout_follows_the_paper_columns():
    rows = {"ours": {"original": 0.9, "luminance_0.4": 0.8, "my_fog": 0.5}}
    table = robustness_table("casinet", rows)
    header = table.splitlines()[2]
    assert header == "| method | Original | Luminance (α ± 0.4) | my_fog |"
    assert "| paper: BLFE + CA + SI + MLP (CASI-Net) | 95.83 | 94.21 | – |" in table
    assert "Hold-out" not in table


def test_hold_out_conditions_get_a_block_of_their_own_without_paper_rows():
    acc = {"original": 0.9, "luminance_0.4": 0.8, "jpeg_q10": 0.7}
    table = robustness_table("casinet", {"clean-trained": acc, "robust-trained": acc}, holdout=["jpeg_q10"])
    table1, held = table.split("## Hold-out")
    assert "| method | Original | Luminance (α ± 0.4) |" in table1 and "jpeg_q10" not in table1
    assert "| method | Original | jpeg_q10 |" in held and "paper:" not in held
    assert "| **clean-trained** | **90.00** | **70.00** |" in held
    assert "| **robust-trained** | **90.00** | **70.00** |" in held


def test_a_set_too_large_for_memory_is_streamed_to_the_same_scores(project, monkeypatch):
    """A random network (its scores differ image by image): streamed and in-memory evaluation agree."""
    p = load_params(overrides=["corrupt.graded=null"])
    _write_sets([c.name for c in p.corrupt.all_conditions])
    torch.manual_seed(0)
    meta = {"variant": "casinet", "image_size": 16, "dropout": 0.0, "classes": CLASSES, "in_chans": 1}
    save_trained(
        create_model("casinet", num_classes=len(CLASSES), image_size=16), meta, Path("models/model.pt")
    )
    outputs = (paths.EVALUATE_METRICS, paths.EVALUATION_DETAILS)
    evaluate(p.evaluate, p.corrupt)
    in_memory = [json.loads(f.read_text()) for f in outputs]
    sources: list[str] = []
    real = scoring.stream.source

    def counted(*args):
        source = real(*args)
        sources.append(type(source).__name__)
        return source

    monkeypatch.setattr(scoring, "IN_MEMORY_MB", 0)  # every set streams through DataLoader workers
    monkeypatch.setattr(scoring.stream, "source", counted)
    evaluate(p.evaluate, p.corrupt)
    assert set(sources) == {"StreamSource"} and len(sources) == 1 + len(p.corrupt.all_conditions)
    assert [json.loads(f.read_text()) for f in outputs] == in_memory
