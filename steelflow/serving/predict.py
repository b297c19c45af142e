"""`steelflow predict`: classify image files or folders with a registered model (default: the champion).

Reads ``predict.batch_size`` files at a time (memory stays bounded however large the folder), runs the
registered model on them, and writes one row per file: ``path``, ``label``, ``p_<class>`` for every class
and ``error`` (empty, or why the file could not be classified: unreadable, not an image, too large). One
bad file never stops the others. Paths resolve from the current folder, as a shell user expects. The
output is CSV, or Parquet when ``--out`` ends in ``.parquet``, written whole or not at all.

A folder is searched recursively, following links that stay inside it; a file or folder under it whose
real path lies outside it is never opened: refused (``predict.outside_links: refuse``, exit 3, naming the
link and where it points) or left out with a warning (``skip``). A file named on the command line is read
wherever it is: naming it is the user's choice. A multi-page or animated file is a row with its error (one
row is one image), never classified by its first frame.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from steelflow import atomic
from steelflow.config import Params, RegistryConfig
from steelflow.data.sources import IMAGE_SUFFIXES, is_inside, links_outside
from steelflow.errors import ConfigError, DataError, PredictionsFailed, RegistryError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclasses.dataclass
class PredictResult:
    frame: pd.DataFrame
    out_path: Path
    outside: list[Path] = dataclasses.field(default_factory=list)  # links left out (outside_links: skip)

    @property
    def failed(self) -> pd.DataFrame:
        return self.frame[self.frame["error"] != ""]

    def raise_for_failures(self) -> None:
        bad = self.failed
        if len(bad):
            first = bad.iloc[0]
            raise PredictionsFailed(
                f"{len(bad)} of {len(self.frame)} files could not be classified (the 'error' column of "
                f"{self.out_path} says why); first: {first['path']}: {first['error']}"
            )


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    files: list[Path]  # what to classify, in a stable order
    outside: list[Path]  # links under a folder named that point outside it, left out (outside_links: skip)


def image_files(inputs: list[Path], outside_links: str = "refuse") -> ImageFiles:
    """The images named, and every image under the folders named, in a stable order (relative paths are
    taken from the current folder).

    Under a folder, a file or folder whose real path is outside that folder is a :class:`DataError`
    (``outside_links: refuse``) or left out and listed (``skip``); it is never opened. Files named
    themselves are taken wherever they point.
    """
    files: list[Path] = []
    outside: list[Path] = []
    for path in inputs:
        path = Path(path).expanduser()
        if path.is_dir():
            found, out = _folder_images(path)
            if out and outside_links == "refuse":
                raise DataError(
                    f"{links_outside(out, path)}; predict opens nothing outside a folder it is given "
                    "(name such a file on its own, or set predict.outside_links: skip to leave them out "
                    "with a warning)"
                )
            files.extend(found)
            outside.extend(out)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder (from {Path.cwd()})")
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    return ImageFiles(files, outside)


def _folder_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every image under ``folder``, links followed while they stay inside it (a link back to a folder
    above is not followed: it would loop), and the files and folders whose real path is outside it."""
    real_root = folder.resolve()
    found: list[Path] = []
    outside: list[Path] = []
    chains = {os.fspath(folder): (str(real_root),)}  # the real paths from folder down to each folder walked
    for here, dirs, names in os.walk(folder, followlinks=True):
        chain = chains.pop(here)
        kept = []
        for name in sorted(dirs):
            path, real = Path(here) / name, os.path.realpath(os.path.join(here, name))
            if not is_inside(path, real_root):
                outside.append(path)
            elif real not in chain:
                kept.append(name)
                chains[os.path.join(here, name)] = (*chain, real)
        dirs[:] = kept
        for name in names:
            path = Path(here) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                (found if is_inside(path, real_root) else outside).append(path)
    return sorted(found), sorted(outside)


def default_model_uri(params: Params) -> str:
    name = params.registry.name if params.registry else RegistryConfig.model_fields["name"].default
    return f"models:/{name}@champion"


def output_format(out_path: Path) -> str:
    suffix = Path(out_path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--out {out_path}: the file must end in {', '.join(FORMATS)}")
    return FORMATS[suffix]


def predict(
    params: Params,
    inputs: list[Path],
    model_uri: str | None,
    out_path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> PredictResult:
    """One row per file (path, label, p_<class>…, error), also written to ``out_path``.

    ``progress(done, total)`` is called after every batch.
    """
    fmt = output_format(out_path)
    found = image_files(inputs, params.predict.outside_links)
    files = found.files
    model = load_model(params, model_uri)
    frame = classify(model, files, params.predict.batch_size, progress)
    with atomic.atomic_path(out_path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return PredictResult(frame, Path(out_path), found.outside)


def classify(
    model: Any, files: list[Path], batch_size: int, progress: Callable[[int, int], None] | None = None
) -> pd.DataFrame:
    """One row per file (path, label, p_<class>…, error), ``batch_size`` files read at a time;
    ``progress(done, total)`` after every batch."""
    frames = []
    done = 0
    for chunk in _chunks(files, batch_size):
        frames.append(_classify(model, chunk))
        done += len(chunk)
        if progress is not None:
            progress(done, len(files))
    return pd.concat(frames, ignore_index=True)


def load_model(params: Params, model_uri: str | None) -> Any:
    """The registered pyfunc; a missing version or alias, or an unreachable registry, is exit 7."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from steelflow.tracking import tracking_uri

    uri = model_uri or default_model_uri(params)
    where = tracking_uri(params.mlflow)
    mlflow.set_tracking_uri(where)
    mlflow.set_registry_uri(where)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as e:
        text = str(e)
        if "pickle" in text.lower():
            raise RegistryError(
                f"{uri} was registered before steelflow's models-from-code pyfunc (a pickled Python "
                "object, which MLflow no longer loads by default): register it again with `steelflow "
                "register`, or load it as before with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true"
            ) from None
        hint = ""
        if uri.endswith("@champion"):
            hint = " (promote a version with `steelflow promote`, or pass --model)"
        raise RegistryError(f"cannot load model {uri} from {where}{hint}: {' '.join(text.split())}") from None
    except OSError as e:
        raise RegistryError(f"cannot load model {uri} from {where}: {e}") from None


def _chunks(files: list[Path], size: int) -> Iterator[list[Path]]:
    for i in range(0, len(files), size):
        yield files[i : i + size]


def _classify(model: Any, files: list[Path]) -> pd.DataFrame:
    """The model's rows for ``files``; a file that cannot be read or classified gets its error instead."""
    errors = [""] * len(files)
    cells: dict[int, bytes] = {}
    for i, f in enumerate(files):
        try:
            cells[i] = f.read_bytes()
        except OSError as e:
            errors[i] = f"cannot read: {e.strerror or e}"
    answers: dict[int, pd.DataFrame] = {}
    batch = _answer(model, list(cells.values())) if cells else None
    if isinstance(batch, pd.DataFrame):
        answers = {i: batch.iloc[[k]] for k, i in enumerate(cells)}
    else:  # some file is bad: classify one by one to find it (rare, so the cost is fine)
        for i, cell in cells.items():
            one = _answer(model, [cell])
            if isinstance(one, pd.DataFrame):
                answers[i] = one
            else:
                errors[i] = one
    frame = pd.DataFrame({"path": [str(f) for f in files], "label": ""})
    if answers:
        rows = pd.concat(answers.values(), ignore_index=True)
        for column in rows.columns:
            if column != "label":  # probabilities, or text: `warning` (registry.serving.small_images: flag)
                frame[column] = float("nan") if pd.api.types.is_numeric_dtype(rows[column]) else ""
            frame.loc[list(answers), column] = rows[column].to_numpy()
    frame["error"] = errors
    return frame


def _answer(model: Any, cells: list[bytes]) -> pd.DataFrame | str:
    """The model's rows for ``cells``, or why it refused them (one line)."""
    from mlflow.exceptions import MlflowException

    try:
        return model.predict(pd.DataFrame({"image": cells}))
    except (MlflowException, ValueError) as e:  # a bad file: BadRequest / BadInput (ValueError, older)
        message = " ".join(str(getattr(e, "message", None) or e).split())
        return message.removeprefix("row 0: ")
