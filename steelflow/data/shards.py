"""Shard sets: a split or an evaluation condition as WebDataset tar shards, with an index.

A shard set is a folder::

    <set>/shard-000000.tar   WebDataset samples: <key>.png (uint8, the cache size) and <key>.json
    <set>/shard-000001.tar   ({"label": class, "sha256": of the source file}), ``data.shard_size`` a shard
    <set>/index.json         format, classes, image shape, total, and per shard: file, count, counts per
                             class, bytes and sha256 (what ``dvc`` and a reader check)
    <set>/index.npz          per sample, in order: shard, byte offset and size of its PNG, label index,
                             and the source file's sha256 (raw 32 bytes)

Why WebDataset: it is plain POSIX tar, the format timm, DALI, torchdata and the ``webdataset`` package read
as they are, it streams from local disk or S3 one shard at a time, and DVC tracks a few hundred shard files
where it struggles with millions of images. Mosaic Streaming and LitData bring their own formats and
samplers; we need neither (the sample order and its partition over ranks and workers are ours,
:mod:`steelflow.training.stream`). The ``webdataset`` package is not needed to write or read: tar is in the
standard library, and the index's byte offsets give each sample by one seek and one read, so a rank reads
exactly its own samples.

Writing streams (one image in memory at a time, and the per-sample index packed: 56 bytes an image) and is
atomic: the folder appears whole or not at all. Reading keeps only the per-sample index in memory.
"""

from __future__ import annotations

import array
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from steelflow import atomic
from steelflow.data import s3
from steelflow.errors import DataError

FORMAT = "steelflow-shards/1 (webdataset tar: <key>.png, <key>.json)"
INDEX = "index.json"
SAMPLES = "index.npz"
DEFAULT_SIZE = 1000


@dataclass(frozen=True)
class Record:
    """One image of a set: uint8 (H, W, C), its class name and its source file's sha256."""

    image: np.ndarray
    label: str
    sha256: str


def write(
    records: Iterable[Record], path: str | Path, classes: list[str], shard_size: int = DEFAULT_SIZE
) -> dict:
    """Write ``records`` as a shard set at ``path`` (replaced whole, atomically); returns its index."""
    if shard_size < 1:
        raise DataError(f"{path}: data.shard_size must be at least 1, got {shard_size}")
    index_of = {c: i for i, c in enumerate(classes)}
    with atomic.atomic_path(path) as staged:
        staged.mkdir()
        writer = _Writer(staged, classes, shard_size)
        try:
            for record in records:
                if record.label not in index_of:
                    raise DataError(f"{path}: label {record.label!r} is not one of the classes {classes}")
                try:
                    writer.add(record, index_of[record.label])
                except DataError as e:  # what is wrong with a record: named with the set it was for
                    raise DataError(f"{path}: {e}") from None
        except BaseException:
            writer.discard()
            raise
        index = writer.close()
    return index


class _Writer:
    def __init__(self, folder: Path, classes: list[str], shard_size: int):
        self.folder, self.classes, self.shard_size = folder, classes, shard_size
        self.shards: list[dict[str, Any]] = []
        # the per-sample index as packed arrays (26 bytes an image), not Python objects
        self.samples = {
            "shard": array.array("i"),
            "offset": array.array("q"),
            "size": array.array("i"),
            "label": array.array("q"),
        }
        self.digests = bytearray()
        self.shape: tuple[int, ...] | None = None
        self._tar: tarfile.TarFile | None = None
        self._counts: list[int] = []

    def add(self, record: Record, label: int) -> None:
        image = record.image if record.image.ndim == 3 else record.image[:, :, None]
        if image.dtype != np.uint8:
            raise DataError(f"shard images are uint8, got {image.dtype}")
        if self.shape is None:
            self.shape = image.shape
        elif image.shape != self.shape:
            raise DataError(f"every image of a shard set has one shape: {image.shape} after {self.shape}")
        if self._tar is None or self._counts_total() >= self.shard_size:
            self._next_shard()
        n = len(self.samples["label"])
        key = f"{n:09d}"
        png = _encode(image)
        meta = json.dumps({"label": record.label, "sha256": record.sha256}).encode()
        offset = self._add_member(f"{key}.png", png)
        self._add_member(f"{key}.json", meta)
        for name, value in (
            ("shard", len(self.shards) - 1),
            ("offset", offset),
            ("size", len(png)),
            ("label", label),
        ):
            self.samples[name].append(value)
        self.digests += bytes.fromhex(record.sha256)
        self._counts[label] += 1

    def _counts_total(self) -> int:
        return sum(self._counts)

    def _add_member(self, name: str, data: bytes) -> int:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: same data, same bytes
        assert self._tar is not None
        self._tar.addfile(info, io.BytesIO(data))
        return self._tar.offset - tarfile.BLOCKSIZE * -(-len(data) // tarfile.BLOCKSIZE)

    def _next_shard(self) -> None:
        self._finish_shard()
        name = f"shard-{len(self.shards):06d}.tar"
        self._tar = tarfile.open(self.folder / name, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - closed by _finish_shard
        self.shards.append({"file": name})
        self._counts = [0] * len(self.classes)

    def _finish_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        shard = self.shards[-1]
        data = (self.folder / shard["file"]).read_bytes()
        shard |= {
            "count": sum(self._counts),
            "classes": dict(zip(self.classes, self._counts, strict=True)),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._tar = None

    def discard(self) -> None:
        """Close the shard being written (a failed write: the folder goes with its atomic write)."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def close(self) -> dict:
        self._finish_shard()
        shape = list(self.shape) if self.shape else None
        index = {
            "format": FORMAT,
            "classes": self.classes,
            "image_shape": shape,
            "total": len(self.samples["label"]),
            "counts": {c: int(sum(s["classes"][c] for s in self.shards)) for c in self.classes},
            "shards": self.shards,
        }
        atomic.write_json(self.folder / INDEX, index)
        with (self.folder / SAMPLES).open("wb") as f:
            np.savez(
                f,
                shard=np.frombuffer(self.samples["shard"], dtype=np.int32),
                offset=np.frombuffer(self.samples["offset"], dtype=np.int64),
                size=np.frombuffer(self.samples["size"], dtype=np.int32),
                label=np.frombuffer(self.samples["label"], dtype=np.int64),
                sha256=np.frombuffer(self.digests, dtype="S32").reshape(-1),
            )
        return index


def _encode(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


class ShardSet:
    """A shard set opened for reading: its index in memory, its samples read on demand.

    ``path`` is a folder, or ``s3://bucket/prefix/<set>`` (credentials and endpoint from the environment,
    :mod:`steelflow.data.s3`): then the index is fetched once and each shard when a reader first needs it,
    checked against the index's sha256, into a temporary folder of this process that keeps only the
    shards open now (16 at most), so disk use stays flat however large the set.
    """

    def __init__(self, path: str | Path, attempts: int = 5):
        self.remote = s3.is_s3(str(path))
        self.location = str(path).rstrip("/") if self.remote else str(path)
        self.path = None if self.remote else Path(path)
        self.attempts = attempts
        self._scratch: Path | None = None
        self._owner = False
        self._open: dict[int, Any] = {}
        self.index: dict[str, Any] = {"shards": []}  # until read
        try:
            index_file = self._fetch(INDEX)
        except DataError:
            index_file = None
        if index_file is None or not index_file.is_file():
            raise DataError(f"{self.location} is not a shard set (no {INDEX}): run `steelflow split` first")
        try:
            self.index = json.loads(index_file.read_text())
            with np.load(self._fetch(SAMPLES), allow_pickle=False) as z:
                self.shard, self.offset, self.size = z["shard"], z["offset"], z["size"]
                self.labels = z["label"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{self.location}: unreadable shard index: {e}") from None
        self.classes: list[str] = list(self.index["classes"])
        shape = self.index["image_shape"]
        self.image_shape: tuple[int, int, int] | None = tuple(shape) if shape else None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def counts(self) -> list[int]:
        """Samples per shard, in shard order."""
        return [s["count"] for s in self.index["shards"]]

    def read(self, ids: np.ndarray) -> np.ndarray:
        """The images ``ids`` (sample numbers), uint8 (n, H, W, C), in that order."""
        h, w, c = self.image_shape or (0, 0, 1)
        out = np.empty((len(ids), h, w, c), dtype=np.uint8)
        for row, i in enumerate(ids):
            f = self._file(int(self.shard[i]))
            f.seek(int(self.offset[i]))
            data = f.read(int(self.size[i]))
            image = np.asarray(Image.open(io.BytesIO(data)))
            out[row] = image.reshape(h, w, c)
        return out

    def sha256(self) -> np.ndarray:
        """The source files' sha256 (hex), in sample order (loaded on demand: 64 bytes an image)."""
        with np.load(self._fetch(SAMPLES), allow_pickle=False) as z:
            # numpy's S32 drops trailing zero bytes on the way out: a digest ending in 00 is padded back
            return np.array([d.ljust(32, b"\0").hex() for d in z["sha256"]], dtype=str)

    def verify(self) -> None:
        """Every shard file against the sha256 in the index; a DataError names the first that differs."""
        for shard in self.index["shards"]:
            f = self._fetch(shard["file"], check=False)
            if not f.is_file():
                raise DataError(f"{self.location}/{shard['file']} is missing (listed in its {INDEX})")
            self._check(f, shard)
            if self.remote:
                f.unlink()

    def _check(self, f: Path, shard: dict) -> None:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if digest != shard["sha256"]:
            raise DataError(
                f"{self.location}/{shard['file']} changed since it was written "
                f"(sha256 {digest[:12]}…, {INDEX} says {shard['sha256'][:12]}…)"
            )

    def _fetch(self, name: str, check: bool = True) -> Path:
        """The local path of the set's file ``name``: itself, or (S3) a checked copy in the scratch folder
        that this process and its DataLoader workers share (a shard is fetched once for them all)."""
        if not self.remote:
            assert self.path is not None
            return self.path / name
        if self._scratch is None:  # this process made it, and removes it
            self._scratch = Path(tempfile.mkdtemp(prefix="steelflow-shards-"))
            self._owner = True
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
        local = self._scratch / name
        if not local.is_file():
            part = local.with_name(f"{name}.{os.getpid()}.part")
            s3.get(f"{self.location}/{name}", part, self.attempts)
            shard = next((s for s in self.index["shards"] if s["file"] == name), None) if check else None
            if shard is not None:
                try:
                    self._check(part, shard)
                except DataError:
                    part.unlink(missing_ok=True)
                    raise
            os.replace(part, local)  # whole and checked, or not there: another worker may be reading
        return local

    def _file(self, shard: int) -> Any:
        f = self._open.get(shard)
        if f is None:
            if len(self._open) >= 16:  # a worker reads a window of shards at a time
                old = self._open.pop(next(iter(self._open)))
                old.close()
                if self.remote:  # done with it: disk stays flat (a reader that still has it open keeps it)
                    Path(old.name).unlink(missing_ok=True)
            f = self._open[shard] = self._fetch(self.index["shards"][shard]["file"]).open("rb")
        return f

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()
        if self._scratch is not None and self._owner:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __getstate__(self) -> dict:  # open files stay in their process; the scratch folder is shared
        return {**self.__dict__, "_open": {}, "_owner": False}


def exists(path: str | Path) -> bool:
    """Whether a shard set is at ``path`` (an ``s3://`` one is taken to be there: opening it tells)."""
    return s3.is_s3(str(path)) or (Path(path) / INDEX).is_file()


def digest(path: str | Path) -> str:
    """A content hash of a shard set: the sha256 of its index (which holds every shard's sha256)."""
    return hashlib.sha256((Path(path) / INDEX).read_bytes()).hexdigest()
