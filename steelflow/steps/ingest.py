"""Step 1, ingest: bring the dataset into the workspace and describe every image in the manifest.

Reads params section ``data``. Writes ``data/images/<class>/<file>`` (the source files byte for byte, or
re-encoded as PNG with ``data.reencode: png``; for the ``synthetic`` source, freshly generated PNGs) and
``data/manifest.csv`` (see :mod:`steelflow.data.manifest`). Manifest paths are relative to the manifest's
folder. Undecodable files (and those over ``data.max_pixels``, of which only the header is read) are
recorded with their error, not skipped: ``validate`` reports them. Files that are not images by extension
are skipped and counted in the result.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from steelflow import atomic, paths
from steelflow.config import DataConfig
from steelflow.data import images, manifest, s3, sources, synthetic
from steelflow.errors import DataError
from steelflow.progress import track


@dataclass(frozen=True)
class IngestResult:
    layout: str
    n_images: int
    per_class: dict[str, int]
    skipped: list[str]  # non-image files left out, relative to the source folder


def ingest(
    data: DataConfig, manifest_path: Path = paths.MANIFEST, images_dir: Path = paths.IMAGES
) -> IngestResult:
    """Materialise ``data.source`` under ``images_dir`` and write the manifest for it."""
    manifest_path, images_dir = Path(manifest_path), Path(images_dir)
    notes: dict[Path, str] = {}
    skipped: list[str] = []
    with atomic.atomic_path(images_dir) as staged:
        if data.is_synthetic:
            layout = "synthetic"
            generated = synthetic.generate(staged, data.synthetic)
            found = [sources.SourceImage(p.relative_to(staged), label) for p, label in generated]
        else:
            with _local_copy(data) as root:
                discovered = sources.discover(root)
                layout = discovered.layout
                skipped = [p.relative_to(root).as_posix() for p in discovered.skipped]
                found = _copy(discovered.images, staged, data, notes)
        table = _describe(found, staged, images_dir, manifest_path.parent, data, notes)
        if s3.is_s3(data.source):
            _verify(table, manifest_path, data.source)
    manifest.write(table, manifest_path)
    return IngestResult(layout, len(table), table.groupby("label").size().to_dict(), skipped)


@contextlib.contextmanager
def _local_copy(data: DataConfig) -> Iterator[Path]:
    """The source as a local folder: itself, or an s3:// prefix downloaded into a temporary one."""
    if not s3.is_s3(data.source):
        yield Path(data.source)
        return
    with tempfile.TemporaryDirectory(prefix="steelflow-s3-") as tmp:
        s3.download(data.source, Path(tmp), data.s3_retries)
        yield Path(tmp)


def _verify(table: pd.DataFrame, manifest_path: Path, source: str) -> None:
    """Objects that the existing manifest knows must still have its sha256."""
    if not manifest_path.is_file():
        return
    known = manifest.read(manifest_path).set_index("path")["sha256"].to_dict()
    for row in table.itertuples():
        if row.path in known and known[row.path] != row.sha256:
            raise DataError(
                f"{source}: {row.path} has sha256 {row.sha256[:12]}…, but {manifest_path} records "
                f"{known[row.path][:12]}… (the object changed; delete the manifest to accept the new data)"
            )


def _copy(
    originals: list[sources.SourceImage], staged: Path, data: DataConfig, notes: dict[Path, str]
) -> list[sources.SourceImage]:
    """Copy each image into ``staged/<label>/``; with ``data.reencode``, as PNG (noting it in ``notes``)."""
    copied: dict[Path, Path] = {}
    for src in track(originals, "copy images"):
        rel = Path(src.label) / src.path.name
        if data.reencode:
            rel = rel.with_suffix(".png")
        if rel in copied:
            raise DataError(
                f"{src.path} and {copied[rel]} would both be stored as {rel} (data.reencode: "
                f"{data.reencode}): rename one of them"
            )
        copied[rel] = src.path
        (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        if data.reencode:
            notes[rel] = images.reencode_png(src.path, staged / rel, data.max_pixels, data.white_level)
        else:
            shutil.copyfile(src.path, staged / rel)
    return [sources.SourceImage(rel, src.label) for rel, src in zip(copied, originals, strict=True)]


def _describe(
    found: list[sources.SourceImage],
    staged: Path,
    images_dir: Path,
    root: Path,
    data: DataConfig,
    notes: dict[Path, str],
) -> pd.DataFrame:
    prefix = Path(os.path.relpath(images_dir.resolve(), root.resolve()))
    rows = []
    for img in track(found, "inspect images"):
        meta = images.inspect(staged / img.path, data.max_pixels, data.white_level)
        if img.path in notes:
            meta["decode_note"] = "; ".join(n for n in (notes[img.path], meta["decode_note"]) if n)
        rows.append({"path": (prefix / img.path).as_posix(), "label": img.label, **meta})
    return pd.DataFrame(rows, columns=manifest.COLUMNS)
