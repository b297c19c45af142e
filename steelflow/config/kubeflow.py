"""``kubeflow``: images, resources, GPU placement, secrets and retries of a `steelflow pipeline` run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steelflow.config.section import Section


class Toleration(Section):
    key: str = Field(min_length=1)
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class GpuConfig(Section):
    """Where the GPU steps (tune workers, train) run: the resource they request and the nodes they fit."""

    accelerator: str = Field(default="nvidia.com/gpu", min_length=1, description="resource name requested")
    count: int = Field(default=1, ge=1, description="GPUs per pod")
    node_selector: dict[str, str] = Field(default_factory=dict, description="node label → value")
    tolerations: list[Toleration] = Field(default_factory=list)
    cpu: str = Field(default="4", description="CPU request of a GPU step")
    memory: str = Field(default="16Gi", description="memory request of a GPU step")
    cpu_limit: str | None = Field(default=None, description="CPU limit of a GPU step; null = the request")
    memory_limit: str | None = Field(
        default=None, description="memory limit of a GPU step; null = the request"
    )


class SecretEnv(Section):
    """A Kubernetes secret whose keys become environment variables in every step (never literals)."""

    name: str = Field(min_length=1, description="secret name in the run's namespace")
    env: dict[str, str] = Field(min_length=1, description="environment variable → key in the secret")


class KubeflowConfig(Section):
    """The Kubeflow run: images, resources, GPU placement, secrets and retries (`steelflow pipeline`)."""

    image: str = Field(min_length=1, description="image of the CPU steps (docker/Dockerfile)")
    gpu_image: str = Field(min_length=1, description="image of the GPU steps (docker/Dockerfile.gpu)")
    experiment: str = Field(default="steelflow", min_length=1, description="Kubeflow experiment")
    cpu: str = Field(default="1", description="CPU request of a CPU step")
    memory: str = Field(default="4Gi", description="memory request of a CPU step")
    cpu_limit: str | None = Field(default=None, description="CPU limit of a CPU step; null = the request")
    memory_limit: str | None = Field(
        default=None, description="memory limit of a CPU step; null = the request"
    )
    gpu: GpuConfig = GpuConfig()
    secrets: list[SecretEnv] = Field(default_factory=list)
    retries: int = Field(default=2, ge=0, description="retries of the steps that talk to servers")
    pipeline_root: str | None = Field(
        default=None, description="where artifacts go (s3://...); null = the cluster's default"
    )
