"""Bad input through the CLI: a clear message naming the file or key, a non-zero exit, earlier outputs intact.

Each test first runs the steps once on good data, then breaks one thing and reruns the step that must fail.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelflow.cli import app
from tests.support.helpers import repo_params, write_params

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


def _link_out_of_the_source(folder: Path) -> tuple[Path, str]:
    secret = folder.parent.parent / "elsewhere.png"
    Image.open(folder / "img_0.png").save(secret)
    (folder / "linked.png").symlink_to(secret)
    return folder / "linked.png", f"dent/linked.png → {secret.resolve()}"


def _multi_page_tiff(folder: Path) -> tuple[Path, str]:
    page = Image.open(folder / "img_0.png")
    page.save(folder / "stack.tif", save_all=True, append_images=[page.rotate(90), page.rotate(180)])
    return folder / "stack.tif", "stack.tif (3 frames)"


@pytest.mark.parametrize("make_bad_file", [_link_out_of_the_source, _multi_page_tiff])
def test_a_link_out_of_the_source_or_a_multi_page_file_fails_ingest_naming_it(good_run, make_bad_file):
    _, named = make_bad_file(good_run / "dent")
    before = snapshot(OUTPUTS)
    flat = _assert_failed_and_intact(("ingest",), before, named)
    assert flat.startswith("error: ") and "Traceback" not in flat


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


@pytest.mark.parametrize(
    ("item", "named"), [("split.seed=true", "'split.seed'"), ("split.test=[0.3", "--set split.test")]
)
def test_a_boolean_for_a_number_or_an_override_that_is_not_yaml_exits_2_naming_the_key(good_run, item, named):
    before = snapshot(OUTPUTS)
    result = CliRunner().invoke(app, ["split", "--set", item])
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    assert snapshot(OUTPUTS) == before


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


# --- outputs that cannot be written: one red line, exit 12, nothing half-written -------------------------

DROP_ROOT_OVERRIDE = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _as_a_plain_user() -> list[str]:
    """A prefix that runs a command without root's permission override (tests here often run as root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is not installed: cannot drop dac_override")
    return DROP_ROOT_OVERRIDE


@pytest.mark.slow
@pytest.mark.parametrize(("step", "folder"), [("ingest", "data"), ("validate", "reports"), ("split", "data")])
def test_read_only_output_folder_gives_one_red_line_and_exit_12(good_run, step, folder):
    before = snapshot([*OUTPUTS, "reports"])
    os.chmod(folder, 0o555)
    try:
        proc = subprocess.run(
            [*_as_a_plain_user(), sys.executable, "-m", "steelflow", step],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.chmod(folder, 0o755)

    assert proc.returncode == 12, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: cannot write {folder}/") and f"{folder} is not writable" in lines[0]
    assert snapshot([*OUTPUTS, "reports"]) == before, "outputs changed"
    assert not [p for p in Path(folder).iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_full_disk_gives_one_red_line_and_exit_12(good_run, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    before = snapshot(OUTPUTS)
    code, output = run("ingest")
    assert code == 12
    assert " ".join(output.split()) == "error: cannot write data/manifest.csv: no space left on the device"
    assert snapshot(OUTPUTS) == before
