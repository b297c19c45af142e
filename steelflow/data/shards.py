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

Writing streams (one image in memory at a time) and is atomic: the folder appears whole or not at all.
Reading keeps only the per-sample index (18 bytes an image) in memory, whatever the set's size.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from steelflow import atomic
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
        self.samples: dict[str, list] = {"shard": [], "offset": [], "size": [], "label": [], "sha256": []}
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
            ("sha256", bytes.fromhex(record.sha256)),
        ):
            self.samples[name].append(value)
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
        self._tar = tarfile.open(self.folder / name, "w", format=tarfile.USTAR_FORMAT)
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
                shard=np.array(self.samples["shard"], dtype=np.int32),
                offset=np.array(self.samples["offset"], dtype=np.int64),
                size=np.array(self.samples["size"], dtype=np.int32),
                label=np.array(self.samples["label"], dtype=np.int64),
                sha256=np.array(self.samples["sha256"], dtype="S32").reshape(-1),
            )
        return index


def _encode(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


class ShardSet:
    """A shard set opened for reading: its index in memory, its samples read on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index_file = self.path / INDEX
        if not index_file.is_file():
            raise DataError(f"{self.path} is not a shard set (no {INDEX}): run `steelflow split` first")
        try:
            self.index = json.loads(index_file.read_text())
            with np.load(self.path / SAMPLES, allow_pickle=False) as z:
                self.shard, self.offset, self.size = z["shard"], z["offset"], z["size"]
                self.labels = z["label"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{self.path}: unreadable shard index: {e}") from None
        self.classes: list[str] = list(self.index["classes"])
        shape = self.index["image_shape"]
        self.image_shape: tuple[int, int, int] | None = tuple(shape) if shape else None
        self.files = [self.path / s["file"] for s in self.index["shards"]]
        self._open: dict[int, Any] = {}

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
        with np.load(self.path / SAMPLES, allow_pickle=False) as z:
            # numpy's S32 drops trailing zero bytes on the way out: a digest ending in 00 is padded back
            return np.array([d.ljust(32, b"\0").hex() for d in z["sha256"]], dtype=str)

    def verify(self) -> None:
        """Every shard file against the sha256 and size in the index; a DataError names the first that differs."""
        for shard, f in zip(self.index["shards"], self.files, strict=True):
            if not f.is_file():
                raise DataError(f"{f} is missing (listed in {self.path / INDEX})")
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            if digest != shard["sha256"]:
                raise DataError(
                    f"{f} changed since it was written (sha256 {digest[:12]}…, index says {shard['sha256'][:12]}…)"
                )

    def _file(self, shard: int) -> Any:
        f = self._open.get(shard)
        if f is None:
            if len(self._open) >= 16:  # a worker reads a window of shards at a time
                self._open.pop(next(iter(self._open))).close()
            f = self._open[shard] = self.files[shard].open("rb")
        return f

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()

    def __getstate__(self) -> dict:  # open files stay in the process that opened them (DataLoader workers)
        return {**self.__dict__, "_open": {}}


def exists(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


def digest(path: str | Path) -> str:
    """A content hash of a shard set: the sha256 of its index (which holds every shard's sha256)."""
    return hashlib.sha256((Path(path) / INDEX).read_bytes()).hexdigest()
