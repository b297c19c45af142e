"""Drift watch: is a batch of incoming images unlike the reference the model was tested on?

:mod:`~steelflow.monitor.measures` (per-image quality and confidence), :mod:`~steelflow.monitor.drift`
(statistics and their calibrated thresholds), :mod:`~steelflow.monitor.report` (the page) and
:mod:`~steelflow.monitor.watch` (``steelflow monitor``: the reference, the verdict, MLflow).
"""

from steelflow.monitor.watch import MonitorResult, build_reference, check, monitor, track

__all__ = ["MonitorResult", "build_reference", "check", "monitor", "track"]
