"""``steelflow monitor``: is a batch of incoming images unlike the images the model was tested on?

Reads params sections ``monitor``, ``data`` (decoding limits), ``predict`` (``batch_size``,
``outside_links``), ``registry`` (the champion's name) and ``mlflow``. Two entry functions:

- :func:`build_reference` writes ``monitor.reference`` once: the per-image measures of the
  ``monitor.reference_split`` split (quality from its manifest rows, confidence from the model on its
  images), or of a folder of known-good images, and which model gave the confidences;
- :func:`monitor` measures a batch folder the same way, compares it with the reference on every measure of
  ``monitor.measures`` (:mod:`steelflow.monitor.drift`) and writes ``<monitor.output>/drift.json`` (each
  measure: statistic, threshold, drifted) and ``drift.html``. Bad input (no folder, no images, a file that
  does not decode) is a :class:`DataError` naming it, raised before anything is written.

:func:`track` logs a verdict to MLflow as a run tagged with the model version, and tags the version.
:func:`check` is both, what every way of running the watch calls: ``steelflow monitor``, its DVC stage
(``monitor/dvc.yaml``) and its Kubeflow task (:func:`steelflow.workspace.run_monitor`); the caller
turns a drifted verdict into its failure (:meth:`MonitorResult.alarm`, exit 15).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelflow import atomic, paths
from steelflow.config import ConfigError, MonitorConfig, Params
from steelflow.data import manifest
from steelflow.errors import DataError, DriftDetected, SteelflowError
from steelflow.monitor import drift, measures
from steelflow.monitor.report import page

FORMAT = 1  # of the reference file


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    result: dict[str, Any]  # drift.json's content
    json_path: Path
    html_path: Path
    warnings: tuple[str, ...] = ()  # e.g. the verdict could not be logged to MLflow

    @property
    def drifted(self) -> list[str]:
        return [name for name, m in self.result["measures"].items() if m["drifted"]]

    def lines(self) -> list[str]:
        """One line per measure (statistic, threshold, verdict), then the verdict when there is no drift."""
        lines = [
            f"  {name:<11} {m['test']} {m['statistic']:.4f}  threshold {m['threshold']:.4f}  "
            + ("DRIFT" if m["drifted"] else "ok")
            for name, m in self.result["measures"].items()
        ]
        if not self.drifted:
            r = self.result
            lines.append(f"monitor: no drift in {r['images']} images of {r['batch']} → {self._files}")
        return lines

    def alarm(self) -> DriftDetected:
        """The error a drifted verdict is (exit 15): the batch, the measures and where the report is."""
        r = self.result
        return DriftDetected(
            f"monitor: {r['batch']} drifted from the reference on {', '.join(self.drifted)} "
            f"({r['images']} images; false-alarm rate {r['false_alarm_rate']}) → {self._files}"
        )

    @property
    def _files(self) -> str:
        return f"{self.json_path}, {self.html_path}"


def check(
    params: Params, batch_dir: Path, model_uri: str | None, use_model: bool, tracked: bool
) -> MonitorResult:
    """:func:`monitor`, then (``tracked``) :func:`track`, best effort: a tracking store that fails is a
    warning on the result, and the verdict stands (it is what a scheduler acts on)."""
    outcome = monitor(params, batch_dir, model_uri, use_model)
    if tracked:
        try:
            track(params, outcome)
        except SteelflowError as e:
            outcome = dataclasses.replace(outcome, warnings=(f"monitor: not logged to MLflow ({e})",))
    return outcome


def build_reference(params: Params, source: Path | None, model_uri: str | None, use_model: bool) -> Path:
    """Write ``monitor.reference`` from the reference split (``source`` None) or a folder of good images."""
    cfg = params.monitor
    target = _inside(cfg.reference, "monitor.reference")
    if source is None:
        split = paths.SPLITS / f"{cfg.reference_split}.csv"
        if not split.is_file():
            raise DataError(
                f"{split} not found: run `steelflow split` first, or give a folder of good images"
            )
        rows = manifest.read(split)
        files = [paths.DATA / p for p in rows["path"]]  # split rows are relative to the manifest's folder
        table, origin = measures.from_manifest(rows), str(split)
    else:
        files = _batch_files(params, source)
        table, origin = measures.quality(files, params.data), str(source)
    model = None
    if use_model:
        loaded = _load_model(params, model_uri)
        table = pd.concat([table, measures.confidence(loaded, files, params.predict.batch_size)], axis=1)
        model = model_identity(params, model_uri)
    document = {
        "format": FORMAT,
        "source": origin,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": model,
        "images": table.to_dict(orient="records"),
    }
    atomic.write_json(target, document)
    return target


def monitor(params: Params, batch_dir: Path, model_uri: str | None, use_model: bool) -> MonitorResult:
    """Compare the images under ``batch_dir`` with the reference; write drift.json and drift.html."""
    cfg = params.monitor
    out_dir = _inside(cfg.output, "monitor.output")
    reference, ref_model = read_reference(cfg.reference)
    wanted = [m for m in cfg.measures if use_model or m != "confidence"]
    files = _batch_files(params, batch_dir)
    batch = measures.quality(files, params.data)
    model = None
    if "confidence" in wanted:
        if ref_model is None:
            raise DataError(
                f"{cfg.reference} holds no model confidences: rebuild it with a model "
                "(`steelflow monitor --build-reference`), or pass --no-model"
            )
        loaded = _load_model(params, model_uri)
        model = model_identity(params, model_uri)
        if model != ref_model:
            raise DataError(
                f"{cfg.reference} holds the confidences of {_shown(ref_model)}, not of {_shown(model)}: "
                "rebuild it (`steelflow monitor --build-reference`) after a new champion"
            )
        answers = measures.confidence(loaded, files, params.predict.batch_size)
        column = measures.CONFIDENCE[cfg.confidence]
        batch["confidence"] = answers[column].to_numpy()
        reference["confidence"] = reference[column]
    ref_values = {m: reference[m].to_numpy() for m in wanted}
    batch_values = {m: batch[m].to_numpy() for m in wanted}
    result = judged(batch_values, ref_values, cfg) | {
        "batch": str(batch_dir),
        "reference": str(cfg.reference),
        "model": model,
        "confidence": cfg.confidence if "confidence" in wanted else None,
    }
    json_path, html_path = out_dir / "drift.json", out_dir / "drift.html"
    atomic.write_text(html_path, page(result, batch_values, ref_values))
    atomic.write_json(json_path, result)
    return MonitorResult(result, json_path, html_path)


def judged(
    batch: dict[str, np.ndarray], reference: dict[str, np.ndarray], cfg: MonitorConfig
) -> dict[str, Any]:
    """The verdict on one batch's measures against the reference's (``monitor``'s rate, calibration
    batches and seed): drifted or not, the calibration, and each measure's statistic and threshold."""
    images = len(next(iter(batch.values())))
    calibration = drift.calibrate(reference, images, cfg.false_alarm_rate, cfg.calibration_batches, cfg.seed)
    verdicts = drift.judge(batch, reference, calibration)
    return {
        "drifted": any(v.drifted for v in verdicts),
        "images": images,
        "reference_images": len(next(iter(reference.values()))),
        "false_alarm_rate": cfg.false_alarm_rate,
        "calibration": {
            "batches": calibration.batches,
            "seed": cfg.seed,
            "tail": calibration.tail,
            "false_alarm_rate": calibration.false_alarm_rate,
        },
        "measures": {
            v.measure: {
                "test": v.test,
                "statistic": round(v.statistic, 6),
                "threshold": round(v.threshold, 6),
                "drifted": v.drifted,
                **_medians(v.measure, batch[v.measure], reference[v.measure]),
            }
            for v in verdicts
        },
    }


def read_reference(path: Path) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The reference's per-image measures, and the model that gave its confidences (None: none did)."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: write it once with `steelflow monitor --build-reference`")
    try:
        document = json.loads(Path(path).read_text())
        table = pd.DataFrame(document["images"])
        table["mode"] = table["mode"].astype(str)
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"{path} is not a monitor reference ({e}): rebuild it with --build-reference"
        ) from None
    if document.get("format") != FORMAT or table.empty:
        raise DataError(
            f"{path}: an empty reference or one of another format: rebuild it with --build-reference"
        )
    return table, document.get("model")


def model_identity(params: Params, model_uri: str | None) -> dict[str, Any]:
    """The model's URI, and for a registered one its name and version (an alias resolved), best effort:
    an unreachable registry leaves the version out."""
    from steelflow.serving.predict import default_model_uri

    uri = model_uri or default_model_uri(params)
    identity: dict[str, Any] = {"uri": uri}
    if not uri.startswith("models:/"):
        return identity
    name, _, rest = uri.removeprefix("models:/").partition("@")
    if rest:
        identity.update(name=name, version=_alias_version(params, name, rest))
    else:
        name, _, version = name.partition("/")
        identity.update(name=name, version=version or None)
    return identity


def track(params: Params, outcome: MonitorResult) -> str | None:
    """Log the verdict to MLflow (a run named ``monitor``, tagged with the model version; metrics per
    measure; drift.json and drift.html) and tag the model version with it; returns the run id."""
    import mlflow

    from steelflow.tracking import MlflowTracker

    result = outcome.result
    model = result["model"] or {}
    tags = {"steelflow.step": "monitor", "drift": str(result["drifted"]).lower()}
    tags.update({f"model_{k}": str(v) for k, v in model.items() if v is not None})
    params_logged = {"batch": result["batch"], "images": result["images"], "reference": result["reference"]}
    params_logged["false_alarm_rate"] = result["false_alarm_rate"]
    with MlflowTracker(params.mlflow, "monitor", params_logged, tags) as tracker:
        metrics = {"drifted": float(result["drifted"])}
        for name, m in result["measures"].items():
            metrics.update({f"{name}.statistic": m["statistic"], f"{name}.threshold": m["threshold"]})
            metrics[f"{name}.drifted"] = float(m["drifted"])
        tracker.log_metrics(metrics)
        tracker.log_artifact(outcome.json_path, "monitor")
        tracker.log_artifact(outcome.html_path, "monitor")
        run_id = tracker.run_id
    if model.get("name") and model.get("version"):
        client = mlflow.MlflowClient(tracker.uri)
        client.set_model_version_tag(model["name"], str(model["version"]), "monitor.drift", tags["drift"])
        client.set_model_version_tag(model["name"], str(model["version"]), "monitor.run_id", str(run_id))
    return run_id


def _batch_files(params: Params, folder: Path) -> list[Path]:
    from steelflow.serving.predict import image_files

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: not a folder (monitor compares a folder of images)")
    return image_files([folder], params.predict.outside_links).files


def _load_model(params: Params, model_uri: str | None) -> Any:
    from steelflow.serving.predict import load_model

    return load_model(params, model_uri)


def _alias_version(params: Params, name: str, alias: str) -> str | None:
    import mlflow

    from steelflow.tracking import tracking_uri

    try:
        client = mlflow.MlflowClient(tracking_uri(params.mlflow), tracking_uri(params.mlflow))
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:  # noqa: BLE001 - best effort: the URI alone still names the model
        return None


def _inside(path: Path, key: str) -> Path:
    """``path`` under the project root; one that leaves it (absolute, ``..``, a link) is refused."""
    base = Path.cwd().resolve()
    target = (base / path).resolve()
    if target == base or not target.is_relative_to(base):
        raise ConfigError(f"{key}: {path} is outside the project ({base}); give a path inside it")
    return target


def _medians(measure: str, batch: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    if measure in drift.CATEGORICAL:
        return {
            "batch_modes": sorted(set(map(str, batch))),
            "reference_modes": sorted(set(map(str, reference))),
        }
    return {"batch_median": float(np.median(batch)), "reference_median": float(np.median(reference))}


def _shown(model: dict[str, Any] | None) -> str:
    if not model:
        return "no model"
    return f"{model.get('name')} version {model['version']}" if model.get("version") else model["uri"]
