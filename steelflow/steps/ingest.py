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
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from steelflow import atomic, paths
from steelflow.config import DataConfig
from steelflow.data import images, manifest, s3, sources, synthetic
from steelflow.errors import DataError
from steelflow.progress import track
from steelflow.step import Produces, Step, shown


@dataclass(frozen=True)
class IngestResult:
    layout: str
    n_images: int
    per_class: dict[str, int]
    skipped: list[str]  # non-image files left out, relative to the source folder
    outside: list[str] = field(default_factory=list)  # links (or s3 keys) out of the source, left out
    expanded: dict[str, int] = field(default_factory=dict)  # multi-frame file → its frames, one image each


def ingest(
    data: DataConfig, manifest_path: Path = paths.MANIFEST, images_dir: Path = paths.IMAGES
) -> IngestResult:
    """Materialise ``data.source`` under ``images_dir`` and write the manifest for it."""
    manifest_path, images_dir = Path(manifest_path), Path(images_dir)
    notes: dict[Path, str] = {}
    skipped: list[str] = []
    outside: list[str] = []
    expanded: dict[str, int] = {}
    with atomic.atomic_path(images_dir) as staged:
        if data.is_synthetic:
            layout = "synthetic"
            generated = synthetic.generate(staged, data.synthetic)
            found = [sources.SourceImage(p.relative_to(staged), label) for p, label in generated]
        else:
            with _local_copy(data, staged.parent / "s3-download", outside) as root:
                discovered = sources.discover(root, data.outside_links)
                layout = discovered.layout
                skipped = [p.relative_to(root).as_posix() for p in discovered.skipped]
                outside += [
                    f"{p.relative_to(root).as_posix()} → {os.path.realpath(p)}" for p in discovered.outside
                ]
                found, frames = _copy(discovered.images, staged, data, notes)
                expanded = {p.relative_to(root).as_posix(): n for p, n in frames.items()}
        table = _describe(found, staged, images_dir, manifest_path.parent, data, notes)
        if s3.is_s3(data.source):
            _verify(table, manifest_path, data.source)
    manifest.write(table, manifest_path)
    per_class = table.groupby("label").size().to_dict()
    return IngestResult(layout, len(table), per_class, skipped, outside, expanded)


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
) -> pd.DataFrame:
    prefix = Path(os.path.relpath(images_dir.resolve(), root.resolve()))
    rows = []
    for img in track(found, "inspect images"):
        meta = images.inspect(staged / img.path, data.max_pixels, data.white_level)
        if img.path in notes:
            meta["decode_note"] = "; ".join(n for n in (notes[img.path], meta["decode_note"]) if n)
        rows.append({"path": (prefix / img.path).as_posix(), "label": img.label, **meta})
    return pd.DataFrame(rows, columns=manifest.COLUMNS)


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
    outs=(paths.IMAGES, paths.MANIFEST),
    summary=summary,
    # the manifest alone: later steps read it for the data version they record
    produces=(Produces("dataset", "Dataset"), Produces("manifest", keep=(paths.MANIFEST,))),
    retries=True,  # an s3:// source
)
