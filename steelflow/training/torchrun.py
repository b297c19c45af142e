"""The one command line that runs ``steelflow train`` on several processes, wherever they are.

torchrun starts the processes; each is the ordinary ``steelflow train``, which joins the process group
from the environment torchrun gives it. Two places start torchrun, with the same line:

- ``steelflow train --nproc N`` on one machine: ``--standalone --nproc-per-node N`` (a rendezvous of its
  own on a free local port);
- a Kubeflow Trainer TrainJob's pods (:mod:`steelflow.trainjob`): no launch arguments at all. The torch
  runtime sets ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and
  ``PET_MASTER_PORT`` in every pod, and torchrun reads ``PET_<ARGUMENT>`` as the default of each argument.

So what trains is the same module and arguments in both; only the machines differ.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

LAUNCHER = ("-m", "torch.distributed.run")  # torchrun, as a module: the interpreter's own torch


def train_command(
    params_file: str, args: Sequence[str] = (), nproc: int | None = None, python: str = sys.executable
) -> list[str]:
    """``torchrun -m steelflow train --params <params_file> <args>``.

    ``nproc``: one machine, that many processes; None: nodes, processes, rank and master come from
    torchrun's ``PET_*`` environment (a TrainJob's pods). ``python``: the interpreter that runs torchrun
    (this one locally; the image's ``python`` in a pod).
    """
    where = ["--standalone", "--nproc-per-node", str(nproc)] if nproc is not None else []
    return [python, *LAUNCHER, *where, "-m", "steelflow", "train", "--params", params_file, *args]
