"""Pages for people: the model card says what data its model knows."""

from __future__ import annotations

from steelflow import paper
from steelflow.config import load_params
from steelflow.models import ModelMeta
from steelflow.reports import model_card

CLASSES = ["crazing", "scratches"]
TAGS = dict.fromkeys(
    ("data_version", "eval_data_hash", "git_commit", "git_dirty", "params_hash", "run_id"), "x"
)


def _card(source: str) -> str:
    params = load_params(overrides=[f"data.source={source}"])
    meta = ModelMeta(variant="casinet", image_size=16, classes=CLASSES, data_channels=1)
    conditions = {
        name: {"accuracy": 0.9} for name in ["original", *(c.name for c in params.corrupt.all_conditions)]
    }
    summary = {
        "clean_accuracy": 0.9,
        "worst_condition": "blur_5px",
        "worst_accuracy": 0.9,
        "mean_corrupted_accuracy": 0.9,
    }
    return model_card(params, meta, {"summary": summary, "conditions": conditions}, TAGS)


def test_a_model_trained_on_synthetic_images_says_so_first_and_keeps_the_papers_rows_away(project):
    card = _card("synthetic")
    head = card.split("## Data")[0]
    assert "This model knows only synthetic images" in head and "NEU-CLS" in head
    assert "- **trained and evaluated on synthetic steel images" in card
    assert "| **this model, clean-trained, synthetic images** |" in card
    assert "paper:" not in card and "are left out" in card  # no NEU-CLS figures beside synthetic ones


def test_a_model_trained_on_a_real_folder_names_it_and_stands_beside_the_papers_rows(project):
    card = _card("/data/NEU-CLS")
    assert "knows only synthetic" not in card
    assert "- **trained and evaluated on the images of `/data/NEU-CLS` (`data.source`)**" in card
    assert "| **this model, clean-trained, data `NEU-CLS`** |" in card
    assert f"paper: {paper.VARIANT_LABELS['casinet']}" in card
