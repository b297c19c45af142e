"""Bad input through the CLI: a clear message naming the file or key, a non-zero exit, earlier outputs intact.

Each test first runs the steps once on good data, then breaks one thing and reruns the step that must fail.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from steelflow.cli import app
from tests.helpers import repo_params, write_params

OUTPUTS = ["data/manifest.csv", "data/splits", "reports/split.json", "data/cache/splits"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def snapshot(paths: list[str]) -> dict[str, str]:
    """sha256 of every file under the given paths."""
    files = [f for p in paths for f in ([Path(p)] if Path(p).is_file() else sorted(Path(p).rglob("*")))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture
def good_run(project, image_folder):
    write_params(project, repo_params(data={"source": str(image_folder)}))
    for step in ("ingest", "validate", "split"):
        code, output = run(step)
        assert code == 0, output
    return image_folder


def _assert_failed_and_intact(args: tuple[str, ...], before: dict[str, str], *needles: str) -> str:
    code, output = run(*args)
    assert code != 0, output
    flat = " ".join(output.split())
    for needle in needles:
        assert needle in flat, f"{needle!r} not in: {flat}"
    assert snapshot(OUTPUTS) == before, "earlier outputs changed"
    return flat


def _truncated_bmp(folder: Path) -> Path:
    """A real BMP with its pixel data cut short."""
    path = folder / "truncated.bmp"
    Image.open(folder / "img_0.png").save(path)
    path.write_bytes(path.read_bytes()[:900])
    return path


def _zero_bytes(folder: Path) -> Path:
    path = folder / "zero.png"
    path.write_bytes(b"")
    return path


def _text_named_png(folder: Path) -> Path:
    path = folder / "text.png"
    path.write_text("just some text with a png name\n")
    return path


@pytest.mark.parametrize("make_bad_file", [_truncated_bmp, _zero_bytes, _text_named_png])
def test_undecodable_file_fails_validation_naming_it(good_run, make_bad_file):
    bad = make_bad_file(good_run / "dent")
    assert run("ingest")[0] == 0  # ingest records the decode error; validation reports it
    before = snapshot(OUTPUTS)
    _assert_failed_and_intact(("validate",), before, f"images/dent/{bad.name}")
    assert Path("reports/validation.json").is_file() and Path("reports/validation/index.html").is_file()


def test_unknown_class_folder_when_classes_are_set(good_run):
    write_params(Path.cwd(), repo_params(data={"source": str(good_run), "classes": ["dent", "rust"]}))
    before = snapshot(OUTPUTS)
    _assert_failed_and_intact(("validate",), before, "scratch")


def test_empty_class_fails_ingest_naming_the_folder(good_run):
    (good_run / "hollow").mkdir()
    before = snapshot(OUTPUTS)
    _assert_failed_and_intact(("ingest",), before, "hollow has no images")


def test_one_image_under_two_classes_fails_naming_both(good_run):
    shutil.copyfile(good_run / "dent" / "img_3.png", good_run / "rust" / "copy_of_dent_3.png")
    assert run("ingest")[0] == 0
    before = snapshot(OUTPUTS)
    _assert_failed_and_intact(
        ("validate",), before, "images/dent/img_3.png", "images/rust/copy_of_dent_3.png"
    )


def test_missing_params_key_names_it(good_run):
    tree = repo_params(data={"source": str(good_run)})
    del tree["data"]["cache_size"]
    write_params(Path.cwd(), tree)
    before = snapshot(OUTPUTS)
    for step in ("ingest", "validate", "split", "corrupt"):
        _assert_failed_and_intact((step,), before, "missing key 'data.cache_size'")


def test_negative_split_ratio_names_the_key(good_run):
    before = snapshot(OUTPUTS)
    _assert_failed_and_intact(("split", "--set", "split.test=-0.3"), before, "split.test", "-0.3")


def test_source_path_that_does_not_exist(good_run, tmp_path):
    before = snapshot(OUTPUTS)
    missing = tmp_path / "no" / "such" / "folder"
    _assert_failed_and_intact(("ingest", "--set", f"data.source={missing}"), before, str(missing))


def test_debug_shows_the_traceback(good_run):
    result = CliRunner().invoke(app, ["--debug", "split", "--set", "split.test=-0.3"])
    assert result.exit_code != 0 and result.exception is not None


def test_params_file_option(good_run, tmp_path):
    code, output = run("split", "--params", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in output
