"""``drift_watch_pipeline``: ``steelflow monitor`` on one batch folder, as a one-task Kubeflow pipeline.

For a recurring run (the cluster's scheduler): each run compares the folder ``batch`` (a path the pod sees,
or ``s3://bucket/prefix``) with the reference file ``reference`` (``steelflow monitor --build-reference``
wrote it, once per champion) and fails when the batch drifted, as ``steelflow monitor`` exits 15; with
``fail_on_drift`` false it succeeds and answers ``drifted`` instead (for a graph that branches on it). Its
params are the project's, as the main pipeline carries them (``params``, ``overrides``); the task gets the
same image, resources and secrets as a CPU step (:func:`pipelines.steel_defect._setup`), never its cache
(the folder's images change under the same name) and no retries (a drifted batch would run again).
(No ``from __future__ import annotations``: kfp reads the pipeline function's annotations as types.)
"""

from kfp import dsl

from components.monitor import monitor
from pipelines.steel_defect import _setup, images
from steelflow.config import Params
from steelflow.errors import ConfigError

NAME = "steelflow-drift-watch"


def define_monitor_pipeline(
    params: Params, params_text: str, image_tag: str | None = None
) -> dsl.graph_component.GraphComponent:
    """The drift watch for ``params`` (``params_text``: that tree as JSON, the run's default), on the CPU
    image (its tag replaced by ``image_tag`` when given)."""
    kf = params.kubeflow
    if kf is None:
        raise ConfigError("params has no 'kubeflow' section: add one (see params.yaml)")
    cpu_image, _ = images(kf, image_tag)
    component = dsl.component(monitor, base_image=cpu_image, install_kfp_package=False)

    @dsl.pipeline(
        name=NAME,
        description="Steel-surface images: has a batch drifted from what the champion was tested on? "
        "Fails on drift (steelflow monitor's exit 15).",
        pipeline_root=kf.pipeline_root,
    )
    def drift_watch_pipeline(  # noqa: PLR0913 (one argument per run parameter)
        batch: str,
        reference: str,
        params: str = params_text,
        overrides: list = [],  # noqa: B006 (kfp default)
        model: str = "",
        fail_on_drift: bool = True,
    ):
        task = component(
            params=params,
            overrides=overrides,
            batch=batch,
            reference=reference,
            model=model,
            fail_on_drift=fail_on_drift,
        )
        _setup(task, "monitor", kf).set_caching_options(False)

    return drift_watch_pipeline
