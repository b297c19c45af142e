"""Step 1, ingest: bring the dataset into the workspace and describe every image in the manifest.

Reads params section ``data``. Writes ``data/images/<class>/<file>`` (the source files byte for byte, or
re-encoded as PNG with ``data.reencode: png``; for the ``synthetic`` source, freshly generated PNGs) and
``data/manifest.csv`` (see :mod:`steelflow.data.manifest`). Manifest paths are relative to the manifest's
folder. Undecodable files (and those over ``data.max_pixels``, of which only the header is read) are
recorded with their error, not skipped: ``validate`` reports them. Files that are not images by extension
are skipped and counted in the result.

Nothing outside the source folder is read: a link pointing out of it is refused or, with
``data.outside_links: skip``, left out and listed (:mod:`steelflow.data.sources`); an s3:// object whose key
would land outside the download folder likewise. A file of several frames (multi-page TIFF, animated
GIF/PNG/WebP) is refused, or with ``data.multi_frame: expand`` stored as one PNG per frame,
``<name>_p<N>.png`` under the same label, each frame's ``decode_note`` saying which frame of which file it is.

Under Kubeflow ingest runs in ``data.parts`` parts, one pod each (:func:`ingest_part`): every part lists the
source, stores its contiguous slice of the listing (copying, decoding, hashing and measuring those images
only) and keeps its manifest rows; :func:`ingest_merge` writes the manifest from them in part order, which
is byte for byte the manifest :func:`ingest` writes in one process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelflow import atomic, paths
from steelflow.config import DataConfig
from steelflow.data import images, manifest, s3, sources, synthetic
from steelflow.errors import DataError
from steelflow.progress import track
from steelflow.step import Parts, Produces, Step, shown

PARTS = paths.DATA / "parts" / "ingest"  # under Kubeflow: each part's manifest rows, <key>.json


@dataclass(frozen=True)
class IngestResult:
    layout: str
    n_images: int
    per_class: dict[str, int]
    skipped: list[str]  # non-image files left out, relative to the source folder
    outside: list[str] = field(default_factory=list)  # links (or s3 keys) out of the source, left out
    expanded: dict[str, int] = field(default_factory=dict)  # multi-frame file → its frames, one image each


@dataclass(frozen=True)
class Listing:
    """What the source holds, in manifest order, before anything is stored: the list the parts cut."""

    layout: str
    images: list[sources.SourceImage]  # a folder's files; for the synthetic source, the paths to generate
    skipped: list[str]
    outside: list[str]
    root: Path | None  # the folder ``images`` are in (an s3:// source's download); None: generated

    @property
    def fingerprint(self) -> str:
        """The listing's sha256, by paths relative to the source: every part must have cut the same one
        (each pod downloads an s3:// source into a folder of its own)."""
        names = [img.path.relative_to(self.root) if self.root else img.path for img in self.images]
        lines = [
            self.layout,
            *(f"{img.label}\t{n.as_posix()}" for img, n in zip(self.images, names, strict=True)),
        ]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class Piece:
    """A slice of the listing, stored: its manifest rows and the multi-frame files among its sources."""

    rows: list[dict[str, Any]]
    expanded: dict[str, int]


def ingest(
    data: DataConfig, manifest_path: Path = paths.MANIFEST, images_dir: Path = paths.IMAGES
) -> IngestResult:
    """Materialise ``data.source`` under ``images_dir`` and write the manifest for it.

    One process stores the whole listing; under Kubeflow :func:`ingest_part` stores each slice of it in its
    own pod and :func:`ingest_merge` writes the same manifest from their rows.
    """
    manifest_path, images_dir = Path(manifest_path), Path(images_dir)
    with atomic.atomic_path(images_dir) as staged:
        staged.mkdir()
        with _listing(data, staged.parent / "s3-download") as listing:
            piece = _store(listing, slice(None), staged, images_dir, manifest_path.parent, data)
        table = _table(piece.rows)
        if s3.is_s3(data.source):
            _verify(table, manifest_path, data.source)
    manifest.write(table, manifest_path)
    return _result(listing.layout, table, listing.skipped, listing.outside, piece.expanded)


def part_keys(data: DataConfig) -> list[str]:
    """The parts a Kubeflow ingest runs, ``data.parts`` of them: ``0`` … ``<parts - 1>``."""
    return [str(k) for k in range(data.parts)]


def cut(n: int, key: str, parts: int) -> slice:
    """Part ``key`` of ``parts`` of a listing of ``n`` images: contiguous, sizes differing by one at most,
    together every image once, in order (so the parts' rows, in key order, are the manifest's)."""
    k = int(key)
    if not 0 <= k < parts:
        raise DataError(f"ingest part {key!r}: data.parts is {parts}, so the parts are 0 … {parts - 1}")
    return slice(n * k // parts, n * (k + 1) // parts)


def ingest_part(
    data: DataConfig,
    key: str,
    manifest_path: Path = paths.MANIFEST,
    images_dir: Path = paths.IMAGES,
    parts_dir: Path = PARTS,
) -> list[Path]:
    """One part of a Kubeflow ingest (its own pod): list the source, store the part's slice of the listing
    under ``images_dir`` and its manifest rows in ``parts_dir/<key>.json``. Returns the paths written."""
    manifest_path, images_dir = Path(manifest_path), Path(images_dir)
    with atomic.atomic_path(images_dir) as staged:
        staged.mkdir()
        with _listing(data, staged.parent / "s3-download") as listing:
            where = cut(len(listing.images), key, data.parts)
            piece = _store(listing, where, staged, images_dir, manifest_path.parent, data)
    record = {
        "key": key,
        "listing": listing.fingerprint,
        "layout": listing.layout,
        "skipped": listing.skipped,
        "outside": listing.outside,
        "expanded": piece.expanded,
        "rows": piece.rows,
    }
    atomic.write_json(Path(parts_dir) / f"{key}.json", record)
    return [images_dir, Path(parts_dir) / f"{key}.json"]


def ingest_merge(
    data: DataConfig,
    keys: list[str],
    manifest_path: Path = paths.MANIFEST,
    images_dir: Path = paths.IMAGES,
    parts_dir: Path = PARTS,
) -> IngestResult:
    """The fan-in of a Kubeflow ingest: the parts' rows, in key order, as the manifest (the parts' images
    are already in ``images_dir``, linked in from their artifacts). Every part must be there, each having
    cut the same listing, and no two may have stored an image at the same path."""
    records = []
    for key in keys:
        path = Path(parts_dir) / f"{key}.json"
        if not path.is_file():
            raise DataError(f"ingest part {key} of {len(keys)} is missing ({path}): did its task run?")
        records.append(json.loads(path.read_text()))
    if len({r["listing"] for r in records}) > 1:
        raise DataError(
            f"the ingest parts listed different contents of {data.source} (it changed during the run): "
            "run again"
        )
    table = _table([row for r in records for row in r["rows"]])
    twice = table.loc[table["path"].duplicated(), "path"].tolist()
    if twice:
        raise DataError(
            f"{len(twice)} image path(s) stored by two parts: {shown(twice)} (data.reencode: "
            f"{data.reencode}, data.multi_frame: {data.multi_frame}): rename the source files"
        )
    missing = [p for p in table["path"] if not (Path(manifest_path).parent / p).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) of the parts' manifest rows are not in {images_dir}: {shown(missing)}"
        )
    if s3.is_s3(data.source):
        _verify(table, Path(manifest_path), data.source)
    manifest.write(table, manifest_path)
    first = records[0] if records else {"layout": "", "skipped": [], "outside": []}
    expanded = {name: n for r in records for name, n in r["expanded"].items()}
    return _result(first["layout"], table, first["skipped"], first["outside"], expanded)


def _result(
    layout: str, table: pd.DataFrame, skipped: list[str], outside: list[str], expanded: dict[str, int]
) -> IngestResult:
    per_class = table.groupby("label").size().to_dict()
    return IngestResult(layout, len(table), per_class, skipped, outside, expanded)


@contextlib.contextmanager
def _listing(data: DataConfig, scratch: Path) -> Iterator[Listing]:
    """The source's listing; its files (an s3:// source's download) are there while the context is open."""
    if data.is_synthetic:
        found = [sources.SourceImage(rel, label) for rel, label in synthetic.listing(data.synthetic)]
        yield Listing("synthetic", found, [], [], None)
        return
    outside: list[str] = []
    with _local_copy(data, scratch, outside) as root:
        discovered = sources.discover(root, data.outside_links)
        skipped = [p.relative_to(root).as_posix() for p in discovered.skipped]
        outside += [f"{p.relative_to(root).as_posix()} → {os.path.realpath(p)}" for p in discovered.outside]
        yield Listing(discovered.layout, discovered.images, skipped, outside, root)


def _store(
    listing: Listing,
    where: slice,
    staged: Path,
    images_dir: Path,
    manifest_dir: Path,
    data: DataConfig,
) -> Piece:
    """Store the images ``where`` of the listing under ``staged`` (to become ``images_dir``) and describe
    each for the manifest (paths relative to ``manifest_dir``)."""
    notes: dict[Path, str] = {}
    expanded: dict[str, int] = {}
    if listing.root is None:
        generated = synthetic.generate(staged, data.synthetic, where)
        found = [sources.SourceImage(p.relative_to(staged), label) for p, label in generated]
    else:
        found, frames = _copy(listing.images[where], staged, data, notes)
        expanded = {p.relative_to(listing.root).as_posix(): n for p, n in frames.items()}
    return Piece(_describe(found, staged, images_dir, manifest_dir, data, notes), expanded)


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The manifest of these rows, in their order: one ingest and the merge of its parts build it alike."""
    return pd.DataFrame(rows, columns=manifest.COLUMNS)


@contextlib.contextmanager
def _local_copy(data: DataConfig, scratch: Path, outside: list[str]) -> Iterator[Path]:
    """The source as a local folder: itself, or an s3:// prefix downloaded into ``scratch`` (inside the
    staged output's own temporary folder, so a killed ingest leaves nothing the next run does not remove).
    Keys that would land outside ``scratch`` are added to ``outside`` (``data.outside_links: skip``)."""
    if not s3.is_s3(data.source):
        yield Path(data.source)
        return
    scratch.mkdir()
    try:
        outside += s3.download(data.source, scratch, data.s3_retries, data.outside_links)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
) -> tuple[list[sources.SourceImage], dict[Path, int]]:
    """Copy each image into ``staged/<label>/``; with ``data.reencode``, as PNG (noting it in ``notes``).

    Returns the stored images and the files of several frames with their frame count: refused together
    (``data.multi_frame: refuse``), or each frame stored as ``<stem>_p<N>.png`` (``expand``).
    """
    frames = {src.path: images.frames_in(src.path) for src in track(originals, "count frames")}
    multi = {path: n for path, n in frames.items() if n > 1}
    if multi and data.multi_frame == "refuse":
        shown = [f"{p} ({n} frames)" for p, n in list(multi.items())[: sources.SHOWN]]
        more = ", …" if len(multi) > sources.SHOWN else ""
        raise DataError(
            f"{len(multi)} file(s) hold several images (multi-page TIFF, animation): "
            f"{', '.join(shown)}{more}; ingesting only the first frame would lose the others: set "
            "data.multi_frame: expand to store each frame as its own image, or split the files yourself"
        )
    copied: dict[Path, Path] = {}
    stored: list[sources.SourceImage] = []
    for src in track(originals, "copy images"):
        n_frames = frames[src.path]
        if n_frames > 1:
            rels = [Path(src.label) / f"{src.path.stem}_p{i}.png" for i in range(1, n_frames + 1)]
        else:
            rels = [Path(src.label) / src.path.name]
            if data.reencode:
                rels = [rels[0].with_suffix(".png")]
        for rel in rels:
            if rel in copied:
                raise DataError(
                    f"{src.path} and {copied[rel]} would both be stored as {rel} (data.reencode: "
                    f"{data.reencode}, data.multi_frame: {data.multi_frame}): rename one of them"
                )
            copied[rel] = src.path
        (staged / rels[0]).parent.mkdir(parents=True, exist_ok=True)
        if n_frames > 1:
            frame_notes = images.expand_frames(
                src.path, [staged / r for r in rels], data.max_pixels, data.white_level
            )
            notes.update(zip(rels, frame_notes, strict=True))
        elif data.reencode:
            notes[rels[0]] = images.reencode_png(
                src.path, staged / rels[0], data.max_pixels, data.white_level
            )
        else:
            shutil.copyfile(src.path, staged / rels[0])
        stored.extend(sources.SourceImage(rel, src.label) for rel in rels)
    return stored, multi


def _describe(
    found: list[sources.SourceImage],
    staged: Path,
    images_dir: Path,
    root: Path,
    data: DataConfig,
    notes: dict[Path, str],
) -> list[dict[str, Any]]:
    """The manifest rows of the stored images, as plain values (a part keeps them as JSON)."""
    prefix = Path(os.path.relpath(images_dir.resolve(), root.resolve()))
    rows = []
    for img in track(found, "inspect images"):
        meta = images.inspect(staged / img.path, data.max_pixels, data.white_level)
        if img.path in notes:
            meta["decode_note"] = "; ".join(n for n in (notes[img.path], meta["decode_note"]) if n)
        plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in meta.items()}
        rows.append({"path": (prefix / img.path).as_posix(), "label": img.label, **plain})
    return rows


def summary(result: IngestResult) -> list[str]:
    lines = [
        f"ingest: {result.n_images} images, {len(result.per_class)} classes ({result.layout}) "
        f"→ {paths.MANIFEST}"
    ]
    if result.skipped:
        lines.append(
            f"warning: ingest: skipped {len(result.skipped)} file(s) that are not images: "
            f"{shown(result.skipped)}"
        )
    if result.outside:
        lines.append(
            f"warning: ingest: left out {len(result.outside)} link(s) pointing outside data.source: "
            f"{shown(result.outside)}"
        )
    if result.expanded:
        files = [f"{name} ({n} frames)" for name, n in result.expanded.items()]
        lines.append(
            f"ingest: {len(files)} multi-frame file(s) stored as {sum(result.expanded.values())} images, "
            f"one per frame (data.multi_frame: expand): {shown(files)}"
        )
    return lines


STEP = Step(
    "ingest",
    run=ingest,
    help="Bring data.source into data/images and write data/manifest.csv.",
    sections=("data",),
    params=(
        "data.source",
        "data.synthetic",
        "data.max_pixels",
        "data.white_level",
        "data.reencode",
        "data.outside_links",
        "data.multi_frame",
    ),
    uncached=(paths.IMAGES,),
    outs=(paths.MANIFEST,),
    summary=summary,
    # the manifest alone: later steps read it for the data version they record
    produces=(Produces("dataset", "Dataset"), Produces("manifest", keep=(paths.MANIFEST,))),
    retries=True,  # an s3:// source
    # data.parts is not in `params`: how the work is cut changes no output, so DVC need not rerun for it
    parts=Parts(keys=part_keys, part=ingest_part, merge=ingest_merge),
)
