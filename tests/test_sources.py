"""Finding images and their classes in a source folder."""

from __future__ import annotations

import pytest

from steelflow.data.sources import FOLDER_PER_CLASS, NEU_FLAT, discover
from steelflow.errors import DataError
from tests.helpers import write_image


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
