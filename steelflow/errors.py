"""The exception types every layer shares: bad config (2), bad data (3), failed validation (4), failed
tuning (6), tracking (10) and outputs (12).

The rest live beside the code that raises them: :class:`~steelflow.training.loop.TrainingDiverged` (5),
:class:`~steelflow.registry.RegistryError` (7), :class:`~steelflow.registry.GateFailed` (8, the gate step's
refusal and failed promotions), :class:`~steelflow.serving.onnx_export.ParityFailed` (9) and
:class:`~steelflow.serving.predict.PredictionsFailed` (13). The CLI turns each into one clear line on
stderr and its exit code; tracebacks only with ``--debug``.
"""


class SteelflowError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1


class ConfigError(SteelflowError):
    """params.yaml (or a ``--set`` override) is missing a key, has an unknown key, or a bad value."""

    exit_code = 2


class DataError(SteelflowError):
    """The input data is unusable: a missing folder, an unreadable image, a leak between splits."""

    exit_code = 3


class ValidationFailed(SteelflowError):
    """Great Expectations found data that breaks an expectation; the reports say which rows."""

    exit_code = 4


class TuningFailed(SteelflowError):
    """No trial of the study completed, so there are no best parameters to hand to training."""

    exit_code = 6


class OutputError(SteelflowError):
    """An output cannot be written: its folder is read-only or not ours, or the disk is full."""

    exit_code = 12


class TrackingError(SteelflowError):
    """The tracking server (or the artifact store behind it) failed while a step logged to it."""

    exit_code = 10
