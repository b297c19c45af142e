"""Finding images and their classes in a source folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from steelflow.data import s3
from steelflow.data.sources import FOLDER_PER_CLASS, NEU_FLAT, discover
from steelflow.errors import DataError
from tests.support.helpers import write_image


def test_folder_per_class_takes_the_label_from_the_folder_only(tmp_path):
    # File names that look like NEU names, and odd extensions, must not decide the label.
    write_image(tmp_path / "dent" / "Cr_1.png", 1)
    write_image(tmp_path / "dent" / "x.BMP", 2)
    write_image(tmp_path / "rust" / "scratches_3.tif", 3)
    (tmp_path / "rust" / "notes.txt").write_text("not an image")
    result = discover(tmp_path)
    layout, found = result.layout, result.images
    assert layout == FOLDER_PER_CLASS
    assert [(p.name, label) for p, label in ((s.path, s.label) for s in found)] == [
        ("Cr_1.png", "dent"),
        ("x.BMP", "dent"),
        ("scratches_3.tif", "rust"),
    ]


def test_neu_flat_names_map_to_classes_case_insensitively(tmp_path):
    names = ["Cr_2.bmp", "Cr_10.bmp", "ps_3.BMP", "RS_1.bmp", "crazing_12.jpg", "Rolled-in_Scale_4.jpg"]
    for seed, name in enumerate(names):
        write_image(tmp_path / name, seed)
    result = discover(tmp_path)
    layout, found = result.layout, result.images
    assert layout == NEU_FLAT
    labels = {s.path.name: s.label for s in found}
    assert labels == {
        "Cr_2.bmp": "crazing",
        "Cr_10.bmp": "crazing",
        "ps_3.BMP": "pitted_surface",
        "RS_1.bmp": "rolled-in_scale",
        "crazing_12.jpg": "crazing",
        "Rolled-in_Scale_4.jpg": "rolled-in_scale",
    }
    # natural order: Cr_2 before Cr_10
    names = [s.path.name for s in found]
    assert names.index("Cr_2.bmp") < names.index("Cr_10.bmp")


def test_flat_folder_with_an_unknown_name_names_the_file(tmp_path):
    write_image(tmp_path / "Cr_1.bmp", 1)
    write_image(tmp_path / "holiday.png", 2)
    with pytest.raises(DataError, match=r"holiday\.png: cannot tell its class"):
        discover(tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    write_image(tmp_path / "dent" / "a.png", 1)
    (tmp_path / "rust").mkdir()
    with pytest.raises(DataError, match=r"class folder .*rust has no images"):
        discover(tmp_path)


def test_missing_source_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"data\.source: folder not found: .*nowhere"):
        discover(tmp_path / "nowhere")


def test_loose_image_beside_class_folders_is_an_error(tmp_path):
    write_image(tmp_path / "dent" / "a.png", 1)
    write_image(tmp_path / "stray.png", 2)
    with pytest.raises(DataError, match=r"stray\.png: image outside any class folder"):
        discover(tmp_path)


def _outside_and_source(tmp_path):
    """A source folder of two classes, and beside it a folder it must not reach into."""
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "secret.png", 99)
    write_image(elsewhere / "dent" / "x.png", 98)
    source = tmp_path / "source"
    write_image(source / "dent" / "a.png", 1)
    write_image(source / "rust" / "b.png", 2)
    return source, elsewhere


def test_a_link_to_a_file_outside_the_source_folder_is_refused_naming_where_it_points(tmp_path):
    source, elsewhere = _outside_and_source(tmp_path)
    (source / "dent" / "c.png").symlink_to(elsewhere / "secret.png")
    with pytest.raises(
        DataError, match=r"1 link\(s\) point outside .*source: dent/c\.png → .*elsewhere/secret\.png"
    ):
        discover(source)


def test_a_class_folder_linked_from_outside_the_source_is_refused_too(tmp_path):
    source, elsewhere = _outside_and_source(tmp_path)
    (source / "pits").symlink_to(elsewhere / "dent", target_is_directory=True)
    with pytest.raises(DataError, match=r"pits → .*elsewhere/dent; nothing outside the source folder"):
        discover(source)


def test_with_outside_links_skip_such_links_are_left_out_and_listed(tmp_path):
    source, elsewhere = _outside_and_source(tmp_path)
    (source / "dent" / "c.png").symlink_to(elsewhere / "secret.png")
    (source / "pits").symlink_to(elsewhere / "dent", target_is_directory=True)
    result = discover(source, outside_links="skip")
    assert [(s.path.name, s.label) for s in result.images] == [("a.png", "dent"), ("b.png", "rust")]
    assert sorted(p.name for p in result.outside) == ["c.png", "pits"]


def test_links_that_stay_inside_the_source_folder_keep_working(tmp_path):
    source, _ = _outside_and_source(tmp_path)
    write_image(source / "originals" / "r.png", 3)
    (source / "rust" / "r.png").symlink_to(Path("..") / "originals" / "r.png")
    (source / "pits").symlink_to(source / "originals", target_is_directory=True)
    result = discover(source)
    assert ("r.png", "rust") in [(s.path.name, s.label) for s in result.images]
    assert ("r.png", "pits") in [(s.path.name, s.label) for s in result.images]
    assert result.outside == []


class _Bucket:
    """boto3's S3 client as ingest uses it, over a dict of key → bytes; records what it downloads."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects, self.downloaded = objects, []

    def get_paginator(self, _name):
        return self

    def paginate(self, Bucket, Prefix):  # noqa: N803 - boto3's argument names
        return [{"Contents": [{"Key": k} for k in self.objects if k.startswith(Prefix)]}]

    def download_file(self, bucket, key, filename):
        self.downloaded.append(key)
        Path(filename).write_bytes(self.objects[key])


@pytest.mark.parametrize(
    "key", ["data/../../escaped.png", "data//tmp/escaped.png", "data/dent/../../../x.png"]
)
def test_an_s3_key_that_would_land_outside_the_download_folder_is_never_written(tmp_path, monkeypatch, key):
    import boto3

    bucket = _Bucket({"data/dent/a.png": b"png", key: b"not yours"})
    monkeypatch.setattr(boto3, "client", lambda *a, **k: bucket)
    dest = tmp_path / "deep" / "download"
    dest.mkdir(parents=True)

    with pytest.raises(
        DataError, match=r"1 object key\(s\) would land outside the download folder: " + re.escape(key)
    ):
        s3.download("s3://bucket/data", dest, attempts=1)
    assert bucket.downloaded == []

    assert s3.download("s3://bucket/data", dest, attempts=1, outside_links="skip") == [key]
    assert bucket.downloaded == ["data/dent/a.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        "deep/download/dent/a.png"
    ]
