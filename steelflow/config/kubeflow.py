"""``kubeflow``: images, resources, GPU placement, secrets and retries of a `steelflow pipeline` run, and
``kubeflow.trainer``: its train task as a Kubeflow Trainer TrainJob on several GPU nodes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

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


class TrainerConfig(Section):
    """The train task as a Kubeflow Trainer v2 TrainJob (:mod:`steelflow.trainjob`): off, the task trains in
    its own pod on one GPU node; on, a CPU launcher submits the job to ``num_nodes`` GPU nodes and waits."""

    enabled: bool = Field(default=False, description="train as a TrainJob; false = one train pod")
    runtime: str = Field(default="torch-distributed", min_length=1, description="training runtime's name")
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    num_nodes: int = Field(default=1, ge=1, description="GPU nodes (pods) of the job")
    procs_per_node: int | None = Field(
        default=None, ge=1, description="training processes per node; null = kubeflow.gpu.count"
    )
    namespace: str | None = Field(default=None, description="null = the launcher pod's own namespace")
    workdir: str | None = Field(
        default=None,
        validate_default=True,
        pattern=r"^s3://[^/]+(/.*)?$",
        description="s3://bucket/prefix the job reads its inputs from and writes its outputs to",
    )
    poll_seconds: float = Field(default=15.0, gt=0, description="how often the launcher reads the job status")
    timeout: int | None = Field(
        default=86400, ge=1, description="seconds the job may take, queueing included; null = no limit"
    )

    @field_validator("workdir")
    @classmethod
    def _workdir_when_enabled(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("enabled"):
            raise ValueError(
                "an s3://bucket/prefix is needed when kubeflow.trainer.enabled is true (the job's pods "
                "share no disk with the launcher: inputs and outputs travel through it)"
            )
        return v


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
    trainer: TrainerConfig = TrainerConfig()
