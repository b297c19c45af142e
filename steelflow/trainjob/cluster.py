"""Submit a TrainJob, follow its status conditions to the end, delete it: the cluster side of the launcher.

Through ``kubernetes.client.CustomObjectsApi`` (in-cluster credentials in the launcher's pod, else
``~/.kube/config``). What each outcome means:

- the job exists already (``409``): the launcher was retried within the same pipeline run. A job still
  running, or complete, is taken up again; a failed one is deleted and submitted anew (a retry means try
  again);
- ``Complete``: done; ``Failed``: a :class:`~steelflow.errors.PipelineError` naming the job and the
  condition's reason and message (the pods are left for ``kubectl logs``);
- ``Suspended`` (e.g. Kueue holding it until GPUs are free): reported once, and waited for;
- no end within ``kubeflow.trainer.timeout`` seconds, queueing included: the job is deleted (nobody would
  collect its outputs, and its GPUs are wanted) and the error says so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steelflow.errors import PipelineError
from steelflow.trainjob.manifest import GROUP, PLURAL, VERSION

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_GONE_SECONDS = 300  # how long a deleted job may take to disappear before it is submitted again


class TimedOut(PipelineError):
    """The job did not end within the timeout (it has been deleted)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a job ended: ``Complete`` (or the error said otherwise), after ``seconds`` of waiting."""

    name: str
    condition: str
    seconds: float
    status: dict[str, Any]


class Cluster:
    """The TrainJobs of one namespace, through ``api`` (a ``CustomObjectsApi``, or a stand-in in tests)."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = print,
    ):
        self.api, self.namespace = api, namespace
        self.clock, self.sleep, self.say = clock, sleep, say

    @classmethod
    def connect(cls, namespace: str | None = None) -> Cluster:
        """In the launcher's pod: its service account and namespace; elsewhere: the kubeconfig's context."""
        from kubernetes import client, config
        from kubernetes.config import ConfigException

        try:
            config.load_incluster_config()
            here = NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.is_file() else "default"
        except ConfigException:
            try:
                config.load_kube_config()
            except (ConfigException, OSError) as e:
                raise PipelineError(
                    "kubeflow.trainer.enabled, but no Kubernetes cluster to submit the TrainJob to (no "
                    f"in-cluster service account, no kubeconfig: {e}); for a local run set "
                    "kubeflow.trainer.enabled=false"
                ) from None
            _, context = config.list_kube_config_contexts()
            here = context.get("context", {}).get("namespace", "default")
        return cls(client.CustomObjectsApi(), namespace or here)

    def submit(self, manifest: dict[str, Any]) -> str:
        """Create the job; returns ``submitted``, ``resubmitted`` (a failed one of that name was replaced) or
        ``taken up`` (one of that name is running or complete)."""
        name = manifest["metadata"]["name"]
        try:
            self._create(manifest)
            return "submitted"
        except _Conflict:
            pass
        if _condition(self.get(name), "Failed") is None:
            return "taken up"
        self.delete(name)
        self._wait_gone(name)
        self._create(manifest)
        return "resubmitted"

    def wait(self, name: str, timeout: float | None, poll: float) -> Outcome:
        """Poll the job's conditions every ``poll`` seconds until it is ``Complete``; raise when it failed,
        vanished or outlived ``timeout`` (then it is deleted first)."""
        start, said = self.clock(), set()
        while True:
            job = self.get(name)
            status = job.get("status") or {}
            if _condition(job, "Complete"):
                return Outcome(name, "Complete", self.clock() - start, status)
            failed = _condition(job, "Failed")
            if failed:
                raise PipelineError(
                    f"TrainJob {name} in {self.namespace} failed ({failed.get('reason', 'no reason')}): "
                    f"{failed.get('message', '')} — its pods' logs: kubectl -n {self.namespace} logs "
                    f"-l jobset.sigs.k8s.io/jobset-name={name} --prefix"
                )
            suspended = _condition(job, "Suspended")
            if suspended and "Suspended" not in said:
                said.add("Suspended")
                self.say(f"train: TrainJob {name} is suspended: {suspended.get('message', '')}; waiting")
            waited = self.clock() - start
            if timeout is not None and waited >= timeout:
                self.delete(name)
                raise TimedOut(
                    f"TrainJob {name} in {self.namespace} did not finish within kubeflow.trainer.timeout = "
                    f"{timeout:g} s (queueing included); it has been deleted"
                )
            self.sleep(poll if timeout is None else min(poll, max(timeout - waited, 0.0)))

    def get(self, name: str) -> dict[str, Any]:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except _api_errors() as e:
            if _status(e) == 404:
                gone = f"TrainJob {name} is gone from {self.namespace} (deleted by someone)"
                raise PipelineError(gone) from None
            raise self._error(e, f"read TrainJob {name}") from None

    def delete(self, name: str) -> None:
        try:
            self.api.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except _api_errors() as e:
            if _status(e) != 404:
                raise self._error(e, f"delete TrainJob {name}") from None

    def _create(self, manifest: dict[str, Any]) -> None:
        try:
            self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, manifest, field_validation="Strict"
            )
        except _api_errors() as e:
            if _status(e) == 409:
                raise _Conflict from None
            raise self._error(e, f"create TrainJob {manifest['metadata']['name']}") from None

    def _wait_gone(self, name: str) -> None:
        start = self.clock()
        while self.clock() - start < _GONE_SECONDS:
            try:
                self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
            except _api_errors() as e:
                if _status(e) == 404:
                    return
                raise self._error(e, f"read TrainJob {name}") from None
            self.sleep(2.0)
        raise PipelineError(f"the failed TrainJob {name} was not deleted within {_GONE_SECONDS} s")

    def _error(self, e: Exception, doing: str) -> PipelineError:
        status = _status(e)
        if status is None:  # not an answer of the API server: unreachable, TLS, ...
            return PipelineError(f"could not {doing} in {self.namespace}: {e}")
        hint = {
            403: f"; the launcher's service account needs create, get and delete on {PLURAL}.{GROUP} "
            f"in {self.namespace} (docs/kubeflow.md, Distributed training on a cluster)",
            404: f"; is Kubeflow Trainer installed (the {PLURAL}.{GROUP} CRD)?",
        }.get(status, "")
        reason = getattr(e, "reason", "")
        body = str(getattr(e, "body", "") or "")[:500]
        return PipelineError(f"could not {doing} in {self.namespace}: {status} {reason} {body}{hint}".strip())


class _Conflict(Exception):
    pass


def _api_errors() -> tuple[type[Exception], ...]:
    """What a call to the API server raises: its answer (``ApiException``) or no answer at all (imported
    here: ``kubernetes.client`` takes half a second, and every component imports this package)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return ApiException, HTTPError, OSError


def _status(e: Exception) -> int | None:
    """The HTTP status of a ``kubernetes.client.ApiException`` (None for any other exception)."""
    status = getattr(e, "status", None)
    return status if isinstance(status, int) else None


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition ``kind`` of the job's status when it is ``True``, else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None
