"""Run tracking: what every train and evaluate run records, and the MLflow adapter that records it.

The steps talk to a :class:`~steelflow.tracking.tracker.Tracker`; the CLI hands them an
:class:`~steelflow.tracking.tracker.MlflowTracker` (or a ``NullTracker`` with ``--no-track``), so training
itself never imports MLflow. The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else
``mlflow.tracking_uri`` from params (default: ``mlflow.db``, a SQLite file at the project root that
``mlflow ui`` opens with no server). A relative SQLite URI is anchored at the project root
(:mod:`steelflow.project`), so ``dvc exp run --temp`` / ``--queue`` log into the project's store, not into
the temporary clone DVC deletes.

By job:

- :mod:`~steelflow.tracking.tracker`: a step's run (open, log, close), the guarded client tune uses, and
  ending a run a killed ``train`` left;
- :mod:`~steelflow.tracking.retry`: how long a server that does not answer is waited for (tenacity), and
  MLflow's own HTTP settings;
- :mod:`~steelflow.tracking.lineage`: what identifies a run and its model (params hash, data version,
  commit, tags, name);
- :mod:`~steelflow.tracking.relocate`: moving a project with its local store.

Everything is importable from here as well: ``from steelflow.tracking import MlflowTracker``.
"""

from steelflow.errors import ServerUnreachable
from steelflow.tracking.lineage import (
    LINEAGE_SECTIONS,
    data_version,
    device_name,
    git_state,
    identity_tags,
    lineage_hash,
    lineage_params,
    params_hash,
    run_name,
    run_tags,
)
from steelflow.tracking.relocate import relocate_artifacts
from steelflow.tracking.retry import (
    RetryBudget,
    bound_mlflow_requests,
    mlflow_http,
    scoped_environ,
    unreachable,
)
from steelflow.tracking.tracker import (
    GuardedClient,
    MlflowTracker,
    NullTracker,
    Tracker,
    dataset,
    dataset_digest,
    dataset_tags,
    end_interrupted,
    ensure_experiment,
    experiment_link,
    file_md5,
    run_link,
    run_params,
    tracking_uri,
)

__all__ = [
    "LINEAGE_SECTIONS",
    "GuardedClient",
    "MlflowTracker",
    "NullTracker",
    "RetryBudget",
    "ServerUnreachable",
    "Tracker",
    "bound_mlflow_requests",
    "data_version",
    "dataset",
    "dataset_digest",
    "dataset_tags",
    "device_name",
    "end_interrupted",
    "ensure_experiment",
    "experiment_link",
    "file_md5",
    "git_state",
    "identity_tags",
    "lineage_hash",
    "lineage_params",
    "mlflow_http",
    "params_hash",
    "relocate_artifacts",
    "run_link",
    "run_name",
    "run_params",
    "run_tags",
    "scoped_environ",
    "tracking_uri",
    "unreachable",
]
