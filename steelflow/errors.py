"""Every error steelflow reports to its user, and the exit code each one ends a command with.

The CLI turns a :class:`SteelflowError` into one clear line on stderr and its ``exit_code``; tracebacks only
with ``--debug``. The codes, one per kind of failure, so a script or CI job can tell them apart:

| code | error | raised when |
| ---: | --- | --- |
| 1 | :class:`SteelflowError` | (the base class: an expected failure of no more specific kind) |
| 2 | :class:`ConfigError` | params.yaml or a ``--set`` override has a missing, unknown or bad key |
| 3 | :class:`DataError` | the input data is unusable (a missing folder, an unreadable image, a leak) |
| 4 | :class:`ValidationFailed` | Great Expectations found data that breaks an expectation |
| 5 | :class:`TrainingDiverged` | the training loss became NaN or infinite |
| 6 | :class:`TuningFailed` | no trial of the study reached the top rung |
| 7 | :class:`RegistryError` | the model registry is unreachable or lacks what a command needs |
| 8 | :class:`GateFailed` | a candidate failed a promotion gate |
| 9 | :class:`ParityFailed` | the ONNX export disagrees with the PyTorch model |
| 10 | :class:`TrackingError` | the tracking server failed while a step logged to it |
| 11 | :class:`PipelineError` | a pipeline run failed, or Kubeflow Pipelines refused or could not be reached |
| 12 | :class:`OutputError` | an output cannot be written (read-only folder, full disk) |
| 13 | :class:`PredictionsFailed` | some files could not be classified (every other row was written) |
| 14 | :class:`TrainingFailed` | a process of a distributed training died (killed, out of memory, crashed) |
| 15 | :class:`DriftDetected` | ``steelflow monitor``: a batch drifted from the reference (retrain cue) |

:class:`ServerUnreachable` is no user-facing error: the MLflow clients' retry helper
(:mod:`steelflow.tracking.retry`) raises it when a server stayed away for its whole budget, and each
client turns it into its own error above (a step's run: :class:`TrackingError`; the registry:
:class:`RegistryError`). Low in the import graph: no imports at all.
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


class TrainingDiverged(SteelflowError):
    """The loss became NaN or infinite. ``reason`` says where (loss, epoch, batch, lr); the message adds
    ``where`` (the last good checkpoint), which a caller whose checkpoint is temporary leaves out."""

    exit_code = 5

    def __init__(self, reason: str, where: str = ""):
        super().__init__(f"{reason}; {where}" if where else reason)
        self.reason = reason


class TuningFailed(SteelflowError):
    """No trial of the study completed, so there are no best parameters to hand to training."""

    exit_code = 6


class RegistryError(SteelflowError):
    """The tracking server is unreachable, or the registry lacks what a command needs."""

    exit_code = 7


class GateFailed(SteelflowError):
    """A candidate failed a promotion gate; the table says which."""

    exit_code = 8


class ParityFailed(SteelflowError):
    """The exported ONNX model's predictions differ from the PyTorch model's beyond the tolerance."""

    exit_code = 9


class TrackingError(SteelflowError):
    """The tracking server (or the artifact store behind it) failed while a step logged to it."""

    exit_code = 10


class PipelineError(SteelflowError):
    """A local run failed, or a Kubeflow Pipelines server could not be reached or refused the run."""

    exit_code = 11


class OutputError(SteelflowError):
    """An output cannot be written: its folder is read-only or not ours, or the disk is full."""

    exit_code = 12


class PredictionsFailed(SteelflowError):
    """Some files could not be classified; their rows say why, and every other row was written."""

    exit_code = 13


class TrainingFailed(SteelflowError):
    """A process of a multi-process training died; the message names its rank and how it ended."""

    exit_code = 14


class DriftDetected(SteelflowError):
    """A monitored batch differs from the reference on some measure; drift.json says which. Not a failure
    of steelflow: the exit code a scheduler starts retraining (or a look at the camera) on."""

    exit_code = 15


class ServerUnreachable(Exception):  # noqa: N818 (what the caller reports: the server is not there)
    """A tracking server stayed unreachable for a client's whole retry budget; the text says how long."""
