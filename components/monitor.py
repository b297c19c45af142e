"""The drift watch's one task: ``steelflow monitor`` on a batch folder, as a Kubeflow component.

Hand-written like :mod:`components.settings` (the watch is no pipeline step: it runs on images that arrive
after the pipeline); its body is one call to :func:`steelflow.workspace.run_monitor`, so no logic lives here.
kfp copies this function's source into its container, whose image holds steelflow and kfp. (No ``from
__future__ import annotations``: kfp reads the annotations as types.)
"""

from kfp.dsl import HTML, Metrics, Output


def monitor(  # noqa: PLR0913 (one argument per run parameter)
    params: str,
    overrides: list,
    batch: str,
    reference: str,
    model: str,
    fail_on_drift: bool,
    verdict: Output[Metrics],
    report: Output[HTML],
) -> bool:
    """Compare the images under ``batch`` with the reference on the quality measures and the model's
    confidence (``monitor`` params); fail (exit 15) when they drifted and ``fail_on_drift``, else answer
    whether they did."""
    from steelflow.workspace import run_monitor

    return run_monitor(locals())
