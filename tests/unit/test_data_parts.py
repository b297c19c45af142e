"""The data steps in parts: what Kubeflow runs as a pod per part and a merge is what DVC runs in one process.

Each part and each merge here goes through the component adapter (:func:`steelflow.workspace.run_component`)
in a workspace of its own, with folders standing in for the artifacts, as the generated components call it;
the ParallelFor and ``dsl.Collected`` around them are kfp's (tests/integration/test_kfp_local.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from steelflow import steps
from steelflow.config import load_params
from steelflow.errors import DataError
from steelflow.steps.corrupt import corrupt
from steelflow.steps.ingest import cut, ingest, summary
from steelflow.steps.split import split
from steelflow.workspace import params_json, run_component
from tests.support.helpers import mark_validated, repo_params, write_params
from tests.unit.test_image_decoding import multi_frame


def artifact(path: Path) -> SimpleNamespace:
    return SimpleNamespace(path=str(path))


def plan(name: str, text: str) -> list[str]:
    return run_component(name, {"params": text}, "plan")


def run_part(name: str, text: str, key: str, folder: Path, inputs: dict[str, Path]) -> Path:
    """One part in its own workspace; returns its artifact folder."""
    out = folder / "parts" / key
    given = {k: artifact(v) for k, v in inputs.items()}
    run_component(name, {"params": text, "key": key, "part": artifact(out), **given}, "part")
    return out


def merge(name: str, text: str, parts: list[Path], folder: Path, inputs: dict[str, Path]) -> dict[str, Path]:
    """The fan-in, given every part's artifact as kfp's dsl.Collected gives them; returns its artifacts."""
    outputs = {out.name: folder / "merged" / out.name for out in steps.get(name).produces}
    arguments = {
        "params": text,
        "parts": [artifact(p) for p in parts],
        **{k: artifact(v) for k, v in inputs.items()},
        **{k: artifact(v) for k, v in outputs.items()},
    }
    run_component(name, arguments, "merge")
    return outputs


def in_parts(name: str, text: str, folder: Path, inputs: dict[str, Path] | None = None) -> dict[str, Path]:
    inputs = inputs or {}
    parts = [run_part(name, text, key, folder, inputs) for key in plan(name, text)]
    return merge(name, text, parts, folder, inputs)


def assert_same_files(ours: Path, theirs: Path) -> int:
    """The same files, byte for byte (cache shard sets too: their tars and indexes are deterministic);
    returns how many."""
    files = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file()), ours
    for rel in files:
        assert (ours / rel).read_bytes() == (theirs / rel).read_bytes(), rel
    return len(files)


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 40])
def test_the_parts_of_a_listing_cover_every_image_exactly_once_in_order(parts):
    for n in range(0, 30):
        slices = [cut(n, str(k), parts) for k in range(parts)]
        covered = [i for s in slices for i in range(n)[s]]
        assert covered == list(range(n)), (n, parts)
        sizes = [len(range(n)[s]) for s in slices]
        assert max(sizes) - min(sizes) <= 1, (n, parts)


def test_a_part_key_outside_data_parts_is_refused():
    with pytest.raises(DataError, match="data.parts is 3, so the parts are 0 … 2"):
        cut(10, "3", 3)


def test_ingest_in_parts_writes_the_manifest_and_images_of_one_ingest(project, tmp_path):
    params = load_params(overrides=["data.parts=3"])
    text = params_json(params)
    assert plan("ingest", text) == ["0", "1", "2"]
    ingest(params.data)
    merged = in_parts("ingest", text, tmp_path / "kfp")
    assert (merged["manifest"] / "data/manifest.csv").read_bytes() == Path("data/manifest.csv").read_bytes()
    assert assert_same_files(Path("data/images"), merged["dataset"] / "data/images") == 6 * 12
    assert not (merged["dataset"] / "data/parts").exists()  # the parts' rows stay out of the dataset


def test_a_folder_ingested_in_parts_keeps_its_order_its_frames_and_its_warnings(
    project, tmp_path, image_folder, capsys
):
    multi_frame(image_folder / "rust" / "stack.tif")  # three frames, stored as three images
    (image_folder / "notes.txt").write_text("not an image")
    change = {"source": str(image_folder), "multi_frame": "expand", "parts": 4}
    write_params(project, repo_params(data=change))
    params = load_params()
    expected = summary(ingest(params.data))
    capsys.readouterr()
    merged = in_parts("ingest", params_json(params), tmp_path / "kfp")
    assert (merged["manifest"] / "data/manifest.csv").read_bytes() == Path("data/manifest.csv").read_bytes()
    assert assert_same_files(Path("data/images"), merged["dataset"] / "data/images") == 33
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert [line for line in expected if line in printed] == expected  # the same summary and warnings
    assert any("stored as 3 images" in line for line in expected)


def test_a_missing_part_or_parts_that_listed_different_sources_stop_the_merge(
    project, tmp_path, image_folder
):
    write_params(project, repo_params(data={"source": str(image_folder), "parts": 2}))
    text = params_json(load_params())
    first = run_part("ingest", text, "0", tmp_path, {})
    with pytest.raises(DataError, match="ingest part 1 of 2 is missing"):
        merge("ingest", text, [first], tmp_path, {})
    (image_folder / "dent" / "img_0.png").rename(image_folder / "dent" / "img_x.png")  # the source changes
    second = run_part("ingest", text, "1", tmp_path, {})
    with pytest.raises(DataError, match="listed different contents"):
        merge("ingest", text, [first, second], tmp_path, {})


def test_parts_that_read_one_source_from_folders_of_their_own_merge(project, tmp_path, image_folder):
    """Each pod downloads an s3:// source into a folder of its own: the parts compare relative paths."""
    elsewhere = shutil.copytree(image_folder, tmp_path / "elsewhere")

    def text(source: Path) -> str:
        return params_json(load_params(overrides=[f"data.source={source}", "data.parts=2"]))

    parts = [run_part("ingest", text(image_folder), "0", tmp_path, {})]
    parts.append(run_part("ingest", text(elsewhere), "1", tmp_path, {}))
    merged = merge("ingest", text(image_folder), parts, tmp_path, {})
    ingest(load_params(overrides=[f"data.source={image_folder}"]).data)
    assert (merged["manifest"] / "data/manifest.csv").read_bytes() == Path("data/manifest.csv").read_bytes()


@pytest.fixture
def split_done(project, tmp_path) -> dict[str, Path]:
    """Ingested, validated and split in the project; the same data as the artifacts corrupt consumes."""
    params = load_params()
    ingest(params.data)
    mark_validated()
    split(params.data, params.split)
    dataset, splits = tmp_path / "dataset", tmp_path / "splits"
    shutil.copytree("data/images", dataset / "data/images")
    shutil.copy2("data/manifest.csv", dataset / "data/manifest.csv")
    shutil.copytree("data/splits", splits / "data/splits")
    return {"dataset": dataset, "splits": splits}


def test_corrupt_in_parts_writes_the_files_of_one_corrupt_byte_for_byte(split_done, tmp_path):
    params = load_params()
    text = params_json(params)
    names = [c.name for c in params.corrupt.all_conditions]
    families = [f"graded:{f}" for f in params.corrupt.graded.families]
    # one part per condition, the Table 1 six then the hold-out ones, then one per graded family
    assert plan("corrupt", text) == names + families
    corrupt(params.data, params.corrupt)
    merged = in_parts("corrupt", text, tmp_path / "kfp", split_done)["corrupted"]
    for rel in ("data/corrupted", "data/cache/corrupted"):
        assert assert_same_files(Path(rel), merged / rel) >= len(names) + 5 * len(families)
    grid = "reports/corruptions.png"
    assert (merged / grid).read_bytes() == Path(grid).read_bytes()  # drawn from the files, both ways
    assert "data:image/png;base64," in (tmp_path / "kfp/merged/grid").read_text()


def test_a_corrupt_merge_without_one_conditions_part_stops(split_done, tmp_path):
    text = params_json(load_params())
    keys = plan("corrupt", text)
    parts = [run_part("corrupt", text, key, tmp_path, split_done) for key in keys[1:]]
    with pytest.raises(DataError, match=f"corrupt part {keys[0]}: .* holds 0 file"):
        merge("corrupt", text, parts, tmp_path, split_done)
    with pytest.raises(DataError, match="no such condition"):
        run_part("corrupt", text, "fog", tmp_path, split_done)


def test_a_parts_rows_are_plain_json(project, tmp_path):
    text = params_json(load_params(overrides=["data.parts=2"]))
    part = run_part("ingest", text, "1", tmp_path, {})
    record = json.loads((part / "data/parts/ingest/1.json").read_text())
    assert record["key"] == "1" and len(record["rows"]) == 6 * 12 // 2
    assert {"path", "label", "sha256", "phash", "brightness"} <= set(record["rows"][0])
