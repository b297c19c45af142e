"""`steelflow predict` on folders: what it opens, and one row per image (the model itself is a stand-in here;
tests/integration/test_serving_http.py runs a registered one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.errors import DataError
from steelflow.serving import predict as predict_module
from steelflow.serving import pyfunc
from steelflow.serving.predict import PredictionsFailed, image_files
from tests.support.helpers import write_image


class _StandIn:
    """A registered model as predict loads it: the real preprocessing (pyfunc) in front of a network that
    answers 'a' for everything."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        config = {"classes": ["a", "b"], "data_channels": 1, "cache_size": 16}
        return pyfunc.classify_with(lambda x: np.tile([1.0, 0.0], (len(x), 1)), config, list(frame["image"]))


@pytest.fixture
def photos(project: Path) -> Path:
    """photos/ with two images, and beside it a secret/ folder with one."""
    write_image(project / "photos" / "one.png", 1)
    write_image(project / "photos" / "sub" / "two.png", 2)
    write_image(project / "secret" / "key.png", 3)
    return project / "photos"


def _predict(*args: str, model: object = None, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    def load_model(params, uri):
        assert model is not None, "predict loaded a model before it refused the input"
        return model

    monkeypatch.setattr(predict_module, "load_model", load_model)
    result = CliRunner().invoke(app, ["predict", *args, "--out", "rows.csv"])
    return result.exit_code, " ".join(result.output.split())


def test_a_link_in_a_folder_given_that_points_outside_it_stops_predict_before_anything_is_read(
    photos, monkeypatch
):
    (photos / "sub" / "looks_innocent.png").symlink_to(photos.parent / "secret" / "key.png")

    code, output = _predict("photos", monkeypatch=monkeypatch)

    assert code == DataError.exit_code, output
    target = (photos.parent / "secret" / "key.png").resolve()
    assert f"1 link(s) point outside photos: sub/looks_innocent.png → {target}" in output
    assert "predict.outside_links: skip" in output
    assert not Path("rows.csv").exists()


def test_with_outside_links_skip_such_links_are_left_out_with_a_warning_and_the_rest_classified(
    photos, monkeypatch
):
    (photos / "sub" / "looks_innocent.png").symlink_to(photos.parent / "secret" / "key.png")
    (photos / "more").symlink_to(photos.parent / "secret", target_is_directory=True)

    code, output = _predict(
        "photos", "--set", "predict.outside_links=skip", model=_StandIn(), monkeypatch=monkeypatch
    )

    assert code == 0, output
    assert "warning: predict: left out 2 link(s) pointing outside the folder given: photos/more → " in output
    assert sorted(pd.read_csv("rows.csv")["path"]) == ["photos/one.png", "photos/sub/two.png"]


def test_links_that_stay_inside_are_followed_without_looping_and_a_named_file_is_read_wherever_it_is(photos):
    (photos / "again").symlink_to(photos / "sub", target_is_directory=True)  # inside: followed
    (photos / "sub" / "loop").symlink_to(photos, target_is_directory=True)  # back up: not followed (a loop)

    found = image_files([photos, photos.parent / "secret" / "key.png"])

    names = sorted(p.relative_to(photos.parent).as_posix() for p in found.files)
    assert names == ["photos/again/two.png", "photos/one.png", "photos/sub/two.png", "secret/key.png"]
    assert found.outside == []


def test_a_multi_page_tiff_is_a_row_with_its_error_never_classified_by_its_first_page(photos, monkeypatch):
    pages = [Image.fromarray(np.full((40, 40), v, np.uint8)) for v in (10, 200)]
    pages[0].save(photos / "stack.tif", save_all=True, append_images=pages[1:])

    code, output = _predict("photos", model=_StandIn(), monkeypatch=monkeypatch)

    assert code == PredictionsFailed.exit_code, output
    rows = pd.read_csv("rows.csv", keep_default_na=False).set_index("path")
    assert rows.loc["photos/stack.tif", "error"].startswith("a multi-frame image (2 frames, TIFF)")
    assert rows.loc["photos/stack.tif", "label"] == ""
    assert rows.loc["photos/one.png", "label"] == "a" and rows.loc["photos/one.png", "error"] == ""
