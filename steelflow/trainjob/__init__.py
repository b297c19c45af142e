"""The pipeline's train task as a Kubeflow Trainer v2 TrainJob: ``steelflow train`` on several GPU nodes.

Switched by ``kubeflow.trainer.enabled`` (params.yaml). Off, the train task trains in its own pod on one
GPU node, as every other step runs. On, the train task is a *launcher* on the CPU image that

1. uploads the workspace the train component would have had (the run's params as ``params.yaml``, the
   ``manifest``, ``splits`` and ``tuning`` artifacts: the shard sets under ``data/cache/splits/``, the
   tuned values in ``reports/tuning/``) to ``<kubeflow.trainer.workdir>/<job>/inputs/``;
2. submits a TrainJob (:mod:`~steelflow.trainjob.manifest`) on the ``torch-distributed`` runtime and
   polls its status conditions until ``Complete`` or ``Failed``, or the timeout
   (:mod:`~steelflow.trainjob.cluster`);
3. downloads what rank 0 pushed to ``<job>/outputs/`` (``models/``, ``metrics/``: the train step's declared
   outputs) into the workspace, from which the component fills its ``model`` and ``metrics`` artifacts as
   the single-pod train component does.

Each of the job's pods runs ``steelflow trainjob run <job url> -- <torchrun line>``
(:mod:`~steelflow.trainjob.exchange`): it pulls the inputs into a fresh folder, runs the same torchrun line
as ``steelflow train --nproc N`` (:func:`steelflow.training.torchrun.train_command`, nodes, processes,
rank and master from the runtime's ``PET_*`` variables), and the pod that holds rank 0's model pushes the
outputs back. Rank 0 tracks to MLflow (the server from ``kubeflow.secrets``), as a single train pod would.

Why the CRD through the ``kubernetes`` client, not the Kubeflow SDK (``kubeflow`` on PyPI): the SDK's
``TrainerClient`` adds two packages to both images (``kubeflow-trainer-api``, ``kubeflow-katib-api``) to
build what is here a plain dictionary; its trainers are built around a Python function it ships into the
pod, where ours is a fixed command line; and a dictionary can be checked offline against the TrainJob CRD
(vendored in ``pipelines/crds/``), which is what the tests do. ``kubernetes`` is already in the lock (kfp
depends on it); ``CustomObjectsApi`` creates, reads and deletes the object with ``fieldValidation=Strict``,
so a field the installed Trainer does not know fails the submit instead of being dropped.
"""

from __future__ import annotations

from steelflow.trainjob.launch import TrainJobRun, launch
from steelflow.trainjob.manifest import LAUNCHED_STEP

__all__ = ["LAUNCHED_STEP", "TrainJobRun", "launch"]
