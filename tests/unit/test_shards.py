"""The cache's shard sets: WebDataset tar shards with an index, written streaming and atomically."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steelflow.config import load_params
from steelflow.data import cache, shards
from steelflow.data.shards import Record
from steelflow.errors import ConfigError, DataError
from tests.support.helpers import repo_params, write_params

CLASSES = ["crazing", "inclusion", "patches"]


def _cached(n: int, channels: int = 1, seed: int = 0) -> cache.CachedSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 12, 12, channels), dtype=np.uint8)
    labels = rng.integers(0, len(CLASSES), n).astype(np.int64)
    # the first digest ends in 00: numpy's bytes dtype would drop it, the set must not
    sha = np.array(["ab" * 31 + "00", *(hashlib.sha256(bytes([i])).hexdigest() for i in range(1, n))])[:n]
    return cache.CachedSet(images, labels, list(CLASSES), sha)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("channels", [1, 3])
def test_a_set_round_trips_images_labels_sha256_and_classes(tmp_path, channels):
    written = _cached(23, channels)
    cache.save(written, tmp_path / "train", shard_size=7)
    read = cache.load(tmp_path / "train")
    np.testing.assert_array_equal(read.images, written.images)
    np.testing.assert_array_equal(read.labels, written.labels)
    assert read.labels.dtype == np.int64 and read.images.dtype == np.uint8
    assert read.sha256.tolist() == written.sha256.tolist()
    assert read.classes == CLASSES
    opened = cache.open(tmp_path / "train")
    ids = np.array([22, 0, 9, 9])  # any order, repeats: each one seek and one read
    np.testing.assert_array_equal(opened.read(ids), written.images[ids])
    opened.close()


def test_shards_hold_shard_size_images_and_the_index_counts_each_class(tmp_path):
    written = _cached(25)
    index = cache.save(written, tmp_path / "s", shard_size=10)
    opened = cache.open(tmp_path / "s")
    assert opened.counts == [10, 10, 5] and len(opened) == 25
    assert [s["file"] for s in index["shards"]] == [f"shard-00000{i}.tar" for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "index.json",
        "index.npz",
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    for k, shard in enumerate(index["shards"]):
        part = written.labels[10 * k : 10 * (k + 1)]
        assert shard["classes"] == {c: int((part == i).sum()) for i, c in enumerate(CLASSES)}
        assert sum(shard["classes"].values()) == shard["count"]
    assert index["counts"] == {c: int((written.labels == i).sum()) for i, c in enumerate(CLASSES)}
    assert index["total"] == 25 and index["classes"] == CLASSES and index["image_shape"] == [12, 12, 1]
    assert json.loads((tmp_path / "s" / shards.INDEX).read_text()) == index


def test_the_index_holds_each_shards_sha256_and_verify_names_a_changed_shard(tmp_path):
    index = cache.save(_cached(25), tmp_path / "s", shard_size=10)
    for shard in index["shards"]:
        data = (tmp_path / "s" / shard["file"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)
    cache.open(tmp_path / "s").verify()  # untouched: passes

    changed = tmp_path / "s" / "shard-000001.tar"
    data = bytearray(changed.read_bytes())
    data[700] ^= 0xFF  # inside the first member's PNG
    changed.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"shard-000001\.tar changed since it was written"):
        cache.open(tmp_path / "s").verify()
    changed.unlink()
    with pytest.raises(DataError, match=r"shard-000001\.tar is missing"):
        cache.open(tmp_path / "s").verify()


def test_the_same_records_give_the_same_bytes(tmp_path):
    written = _cached(25, channels=3)
    cache.save(written, tmp_path / "a", shard_size=10)
    cache.write(written.records(), tmp_path / "b", CLASSES, 10)  # streamed, the same records
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert shards.digest(tmp_path / "a") == shards.digest(tmp_path / "b")
    cache.save(_cached(25, channels=3, seed=1), tmp_path / "c", shard_size=10)
    assert shards.digest(tmp_path / "c") != shards.digest(tmp_path / "a")


def test_a_bad_label_names_the_set_and_leaves_no_folder(tmp_path):
    good = _cached(5)
    records = [*good.records(), Record(good.images[0], "rust", good.sha256[0])]
    with pytest.raises(DataError, match=r"bad.*'rust' is not one of the classes"):
        cache.write(records, tmp_path / "bad", CLASSES, 2)
    assert list(tmp_path.iterdir()) == []  # nothing: no folder, no temporary


def test_mixed_image_shapes_name_the_set_and_leave_the_previous_one_intact(tmp_path):
    good = _cached(5)
    cache.save(good, tmp_path / "set", shard_size=2)
    before = _files(tmp_path / "set")
    odd = Record(np.zeros((10, 10, 1), dtype=np.uint8), CLASSES[0], good.sha256[0])
    with pytest.raises(DataError, match=r"set: every image of a shard set has one shape"):
        cache.write([*good.records(), odd], tmp_path / "set", CLASSES, 2)
    assert _files(tmp_path / "set") == before  # the set written before, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_a_shard_size_below_one_names_the_key_and_writes_nothing(tmp_path):
    with pytest.raises(DataError, match=r"data\.shard_size must be at least 1, got 0"):
        cache.save(_cached(3), tmp_path / "s", shard_size=0)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_set_round_trips(tmp_path):
    index = cache.write([], tmp_path / "val", CLASSES, 10)
    assert index["total"] == 0 and index["shards"] == [] and index["counts"] == dict.fromkeys(CLASSES, 0)
    assert cache.exists(tmp_path / "val")
    read = cache.load(tmp_path / "val")
    assert len(read) == 0 and read.classes == CLASSES and read.sha256.tolist() == []
    assert len(cache.open(tmp_path / "val")) == 0


def test_a_missing_set_says_to_run_split(tmp_path):
    assert not cache.exists(tmp_path / "train")
    with pytest.raises(DataError, match=r"train not found: run `steelflow split` first"):
        cache.load(tmp_path / "train")
    with pytest.raises(DataError, match=r"not a shard set"):
        cache.open(tmp_path / "train")


def test_shards_are_plain_tar_of_webdataset_png_and_json_pairs(tmp_path):
    written = _cached(7, channels=3)
    cache.save(written, tmp_path / "s", shard_size=4)
    samples = []
    for shard in sorted((tmp_path / "s").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:  # stdlib tar, no steelflow: what webdataset, timm or DALI see
            members = tar.getmembers()
            names = [m.name for m in members]
            keys = [n.removesuffix(".png") for n in names[::2]]
            assert names == [f"{k}{ext}" for k in keys for ext in (".png", ".json")]
            assert all(m.isfile() and m.mtime == 0 for m in members)
            for key in keys:
                image = np.asarray(Image.open(io.BytesIO(tar.extractfile(f"{key}.png").read())))
                meta = json.loads(tar.extractfile(f"{key}.json").read())
                samples.append((key, image, meta))
    assert [key for key, *_ in samples] == [f"{i:09d}" for i in range(7)]  # unique keys, in order
    for i, (_, image, meta) in enumerate(samples):
        np.testing.assert_array_equal(image, written.images[i])
        assert meta == {"label": CLASSES[written.labels[i]], "sha256": written.sha256[i]}


def test_a_shard_size_of_zero_in_params_fails_validation_naming_the_key(tmp_path):
    write_params(tmp_path, repo_params(data={"shard_size": 0}))
    with pytest.raises(ConfigError, match=r"'data\.shard_size'.*greater than or equal to 1"):
        load_params(tmp_path / "params.yaml")
    write_params(tmp_path, repo_params())
    assert load_params(tmp_path / "params.yaml").data.shard_size == 1000  # params.yaml's value
