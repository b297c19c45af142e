"""One Kubeflow component per pipeline step: thin adapters over the same functions ``steelflow <step>`` calls.

Every function here becomes a KFP v2 Python-function component (see ``components.make_components``):
kfp copies its source into the container command and runs it with the steelflow image's Python, so each
body imports what it needs and does nothing but move paths. It opens a
:func:`steelflow.workspace.workspace` from the run's params (a params tree as JSON text, plus
``dotted.key=value`` overrides), links its input artifacts into it, calls the step, and copies the step's
outputs (:func:`steelflow.contract.outputs`, the same table dvc.yaml is generated from) into its output
artifacts. Every Dataset / Model / Artifact folder is laid out as a slice of the project root
(``data/…``, ``reports/…``, ``models/…``), exactly where ``dvc repro`` keeps the same files.
(No ``from __future__ import annotations``: kfp reads the annotations as types.)

Names below (Input, Output, Dataset, …) come from ``kfp.dsl``; kfp puts ``from kfp.dsl import *`` above
each function in the container, and this module imports them for the same reason.
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def settings(
    params: str,
    overrides: list,
    data_source: str,
    variant: str,
    epochs: int,
    n_trials: int,
    image_size: int,
) -> list:
    """The run's typed parameters (what people change per run, editable one by one in the KFP UI) as
    ``dotted.key=value`` overrides, the run's own ``overrides`` after them (so those win); checked against
    the params here, so a bad value fails this first step naming its key."""
    import tempfile
    from pathlib import Path

    from steelflow import config

    typed = [
        f"data.source={data_source}",
        f"model.variant={variant}",
        f"train.epochs={epochs}",
        f"tune.n_trials={n_trials}",
        f"model.image_size={image_size}",
    ]
    merged = typed + list(overrides)
    with tempfile.TemporaryDirectory(prefix="steelflow-settings-") as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(params)
        config.load_params(path, merged)  # a bad value fails here, naming its key
    return merged


def ingest(params: str, overrides: list, dataset: Output[Dataset], manifest: Output[Artifact]):
    """data.source → ``dataset`` (data/images + data/manifest.csv) and ``manifest`` (the manifest alone,
    which later steps read for the data version they record)."""
    from steelflow import paths
    from steelflow.contract import outputs
    from steelflow.steps.ingest import ingest as step
    from steelflow.workspace import workspace

    with workspace(params, overrides) as ws:
        step(ws.params.data)
        ws.keep(dataset.path, *outputs("ingest"))
        ws.keep(manifest.path, paths.MANIFEST)


def validate(
    params: str,
    overrides: list,
    dataset: Input[Dataset],
    report: Output[Artifact],
    metrics: Output[Metrics],
    data_docs: Output[HTML],
) -> bool:
    """Great Expectations on the manifest → ``report`` (validation.json), Data Docs, and whether it passed.

    A failed expectation does not fail the task: the pipeline skips every later step (``dsl.If``) and the
    reports say why.
    """
    from steelflow import paths
    from steelflow.contract import outputs
    from steelflow.errors import ValidationFailed
    from steelflow.steps.validate import validate as step
    from steelflow.workspace import workspace

    with workspace(params, overrides, [dataset.path]) as ws:
        try:
            for line in step(paths.MANIFEST, ws.params.data, ws.params.validate_).warnings:
                print(f"validate: warning: {line}")
            passed = True
        except ValidationFailed as e:
            print(f"validate: {e}")
            passed = False
        ws.keep(report.path, *outputs("validate"))
        ws.copy(paths.VALIDATION_DOCS, data_docs.path)
        ws.log_metrics(metrics, paths.VALIDATION_JSON)
    return passed


def split(
    params: str,
    overrides: list,
    dataset: Input[Dataset],
    report: Input[Artifact],
    splits: Output[Dataset],
    metrics: Output[Metrics],
):
    """Stratified train/val/test split of the validated manifest, with the decoded cache → ``splits``."""
    from steelflow import paths
    from steelflow.contract import outputs
    from steelflow.steps.split import split as step
    from steelflow.workspace import workspace

    with workspace(params, overrides, [dataset.path, report.path]) as ws:
        step(ws.params.data, ws.params.split)
        ws.keep(splits.path, *outputs("split"))
        ws.log_metrics(metrics, paths.SPLIT_JSON)


def corrupt(
    params: str,
    overrides: list,
    dataset: Input[Dataset],
    splits: Input[Dataset],
    corrupted: Output[Dataset],
    grid: Output[HTML],
):
    """The six corrupted copies of the test split (images, index, cache) → ``corrupted``; a picture grid."""
    from steelflow import paths
    from steelflow.contract import outputs
    from steelflow.steps.corrupt import corrupt as step
    from steelflow.workspace import png_page, workspace

    with workspace(params, overrides, [dataset.path, splits.path]) as ws:
        step(ws.params.data, ws.params.corrupt)
        ws.keep(corrupted.path, *outputs("corrupt"))
        png_page(paths.CORRUPTIONS_PNG, grid.path, "Corrupted test images: one row per condition")


def tune_start(
    params: str,
    overrides: list,
    manifest: Input[Artifact],
    splits: Input[Dataset],
    study: Output[Artifact],
) -> list:
    """Create (or continue) the Optuna study and queue its missing trials; returns the worker indices."""
    from steelflow.steps import tune
    from steelflow.workspace import workspace

    with workspace(params, overrides, [manifest.path, splits.path]) as ws:
        ref = tune.start(ws.params, track=True)
        ref.save(study.path)
        return ref.worker_indices()


def tune_worker(
    params: str,
    overrides: list,
    worker: int,
    manifest: Input[Artifact],
    splits: Input[Dataset],
    study: Input[Artifact],
):
    """One worker pod: claim queued trials of the shared study and run them until none is left."""
    from steelflow.steps import tune
    from steelflow.workspace import workspace

    with workspace(params, overrides, [manifest.path, splits.path]):
        tune.work(tune.StudyRef.load(study.path), worker)


def tune_finish(
    params: str,
    overrides: list,
    manifest: Input[Artifact],
    splits: Input[Dataset],
    study: Input[Artifact],
    tuning: Output[Artifact],
    metrics: Output[Metrics],
):
    """Best params, trials table and plots of the finished study → ``tuning``; closes its MLflow run."""
    from steelflow.contract import outputs
    from steelflow.steps import tune
    from steelflow.workspace import workspace

    with workspace(params, overrides, [manifest.path, splits.path]) as ws:
        result = tune.finish(ws.params, tune.StudyRef.load(study.path))
        ws.keep(tuning.path, *outputs("tune"))
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)


def train(
    params: str,
    overrides: list,
    manifest: Input[Artifact],
    splits: Input[Dataset],
    tuning: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train with the tuned params, tracked in MLflow → ``model`` (weights, history, the MLflow run id)."""
    from steelflow import paths, runs
    from steelflow.contract import outputs
    from steelflow.workspace import workspace

    with workspace(params, overrides, [manifest.path, splits.path, tuning.path]) as ws:
        runs.train(ws.params, track=True)
        ws.keep(model.path, *outputs("train"))
        ws.log_metrics(metrics, paths.TRAIN_METRICS)


def evaluate(
    params: str,
    overrides: list,
    manifest: Input[Artifact],
    splits: Input[Dataset],
    corrupted: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    robustness: Output[Markdown],
):
    """Clean and corrupted test sets → ``evaluation`` (metrics, details, plots), the robustness table."""
    from steelflow import paths, runs
    from steelflow.contract import outputs
    from steelflow.workspace import workspace

    with workspace(params, overrides, [manifest.path, splits.path, corrupted.path, model.path]) as ws:
        runs.evaluate(ws.params, track=True)
        ws.keep(evaluation.path, *outputs("evaluate"))
        ws.copy(paths.ROBUSTNESS_MD, robustness.path)
        ws.log_metrics(metrics, paths.EVALUATE_METRICS)


def gate(
    params: str,
    overrides: list,
    splits: Input[Dataset],
    corrupted: Input[Dataset],
    model: Input[Model],
    evaluation: Input[Artifact],
    verdict: Output[Artifact],
    gates: Output[Markdown],
) -> bool:
    """registry.gates on the evaluation (and against the champion, if any) → ``verdict``; whether register
    goes ahead (every gate passed, or registry.challenger: always)."""
    from steelflow import paths
    from steelflow.contract import outputs
    from steelflow.steps.gate import gate as step
    from steelflow.workspace import workspace

    with workspace(params, overrides, [splits.path, corrupted.path, model.path, evaluation.path]) as ws:
        result = step(ws.params)
        ws.keep(verdict.path, *outputs("gate"))
        ws.copy(paths.GATES_MD, gates.path)
    return result.register


def register(
    params: str,
    overrides: list,
    manifest: Input[Artifact],
    splits: Input[Dataset],
    corrupted: Input[Dataset],
    tuning: Input[Artifact],
    model: Input[Model],
    evaluation: Input[Artifact],
    verdict: Input[Artifact],
    registration: Output[Artifact],
    model_card: Output[Markdown],
) -> str:
    """Register the model as a new version with alias ``challenger``, as the gate's verdict allows; returns
    the version number."""
    from steelflow import paths
    from steelflow.contract import outputs
    from steelflow.registry import register as step
    from steelflow.steps.gate import load_verdict
    from steelflow.workspace import workspace

    inputs = [
        manifest.path,
        splits.path,
        corrupted.path,
        tuning.path,
        model.path,
        evaluation.path,
        verdict.path,
    ]
    with workspace(params, overrides, inputs) as ws:
        result = step(ws.params, verdict=load_verdict())
        ws.keep(registration.path, *outputs("register"))
        ws.copy(paths.MODEL_CARD, model_card.path)
    return str(result["version"])
