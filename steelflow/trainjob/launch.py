"""The launcher: what the pipeline's train task runs when ``kubeflow.trainer.enabled`` is on.

It runs in a workspace (:mod:`steelflow.workspace`), as the train component would, and leaves there what
the train step would have written; the component fills its artifacts from it as usual.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from steelflow.config import Params
from steelflow.errors import ConfigError
from steelflow.trainjob import exchange, manifest
from steelflow.trainjob.cluster import Cluster


@dataclasses.dataclass(frozen=True)
class TrainJobRun:
    name: str
    namespace: str
    nodes: int
    procs_per_node: int
    seconds: float
    outputs: list[Path]

    def lines(self) -> list[str]:
        return [
            f"train: TrainJob {self.name} in {self.namespace} complete after {self.seconds:.0f} s on "
            f"{self.nodes} node(s) × {self.procs_per_node} process(es); outputs: "
            + ", ".join(map(str, self.outputs))
        ]


def launch(
    p: Params, pipeline_run: str = "", image: str | None = None, cluster: Cluster | None = None
) -> TrainJobRun:
    """Train with ``p`` as a TrainJob from the current folder (a workspace): its inputs up to
    ``kubeflow.trainer.workdir``, the job submitted on ``image`` (default ``kubeflow.gpu_image``) and
    awaited, its outputs down into this folder. ``pipeline_run`` (the Kubeflow run's id) names and labels
    the job, so a retried launcher finds it again."""
    kf = p.kubeflow
    if kf is None or not kf.trainer.enabled:
        raise ConfigError("kubeflow.trainer.enabled is false: train runs in its own pod, not as a TrainJob")
    t = kf.trainer
    name = manifest.job_name(pipeline_run)
    forwarded = {k: os.environ[k] for k in manifest.FORWARDED if os.environ.get(k)}
    job = manifest.build(p, name, image=image, pipeline_run=pipeline_run, env=forwarded)
    url, attempts, here = manifest.job_url(t.workdir, name), p.data.s3_retries, Path.cwd()
    cluster = cluster or Cluster.connect(t.namespace)  # first: no cluster, nothing uploaded
    sent = exchange.send_inputs(here, url, attempts)
    how = cluster.submit(job)
    procs = job["spec"]["trainer"]["numProcPerNode"]
    print(
        f"train: TrainJob {name} {how} in {cluster.namespace} ({t.num_nodes} node(s) × {procs} process(es) "
        f"on {job['spec']['trainer']['image']}; {sent} input file(s) in {url}/{exchange.INPUTS}/)"
    )
    outcome = cluster.wait(name, t.timeout, t.poll_seconds)
    got = exchange.fetch_outputs(here, url, attempts, name)
    return TrainJobRun(name, cluster.namespace, t.num_nodes, procs, outcome.seconds, got)
