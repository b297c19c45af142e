"""How a TrainJob's inputs reach its pods and its outputs come back: one S3 prefix per job.

The pods share no disk with the launcher, and the pipeline's artifacts are not theirs to read, so
everything travels through ``<kubeflow.trainer.workdir>/<job>/`` (credentials from the environment, as for
an ``s3://`` data source: :mod:`steelflow.data.s3`):

- ``inputs/``: the launcher's workspace, laid out like the project (``params.yaml``, ``data/cache/splits/``
  with the shard sets, ``reports/tuning/best_params.yaml``, ...), uploaded by :func:`send_inputs`;
- ``outputs/``: the train step's declared outputs (``models/model.pt``, ``metrics/train.json``, ...),
  uploaded by the pod where rank 0 wrote them (:func:`run_in_pod`) and fetched by :func:`fetch_outputs`.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from steelflow import paths, steps
from steelflow.data import s3
from steelflow.errors import DataError, PipelineError
from steelflow.trainjob.manifest import LAUNCHED_STEP

INPUTS, OUTPUTS = "inputs", "outputs"


def outputs() -> tuple[Path, ...]:
    """What the job must hand back: the train step's declared outputs (its component's artifacts)."""
    return steps.get(LAUNCHED_STEP).outputs


def send_inputs(workspace: Path, url: str, attempts: int) -> int:
    """Upload every file of ``workspace`` (the launcher's project-shaped folder) to ``<url>/inputs/``."""
    files = sorted(p.relative_to(workspace) for p in workspace.rglob("*") if p.is_file())
    return len(s3.upload(workspace, files, f"{url}/{INPUTS}", attempts))


def fetch_outputs(workspace: Path, url: str, attempts: int, job: str) -> list[Path]:
    """Download ``<url>/outputs/`` into ``workspace``; every declared output must have come back."""
    try:
        s3.download(f"{url}/{OUTPUTS}", workspace, attempts)
    except DataError as e:  # nothing pushed, or S3 failing
        raise PipelineError(f"TrainJob {job} completed, but its outputs could not be fetched: {e}") from None
    missing = [str(o) for o in outputs() if not (workspace / o).exists()]
    if missing:
        raise PipelineError(
            f"TrainJob {job} completed but left no {', '.join(missing)} under {url}/{OUTPUTS}/ "
            "(rank 0's pod pushes them when its torchrun succeeds)"
        )
    return list(outputs())


def run_in_pod(url: str, command: Sequence[str], attempts: int, root: Path | None = None) -> int:
    """A TrainJob pod's life: pull ``<url>/inputs/`` into a fresh folder (or ``root``), run ``command``
    (the torchrun line) there, and, when it succeeded and this pod's rank 0 wrote the model, push the
    train step's outputs to ``<url>/outputs/``. Returns ``command``'s exit status."""
    root = root or Path(tempfile.mkdtemp(prefix="steelflow-trainjob-"))
    s3.download(f"{url}/{INPUTS}", root, attempts)
    code = subprocess.call(list(command), cwd=root)
    if code != 0:
        return code
    if (root / paths.MODEL).is_file():  # only the pod that held rank 0 has it
        written = [o for o in outputs() if (root / o).exists()]
        s3.upload(root, written, f"{url}/{OUTPUTS}", attempts)
        print(f"trainjob: pushed {', '.join(map(str, written))} to {url}/{OUTPUTS}/")
    return 0
