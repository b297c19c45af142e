"""``deploy``: the KServe InferenceService ``steelflow deploy`` writes for a registry alias
(:mod:`steelflow.deploy`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from steelflow.config.section import Section

# Kubernetes' resource quantity (the pattern the InferenceService CRD puts on requests and limits)
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"
DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class DeployConfig(Section):
    """The InferenceService of a registered version: its name, where it runs, the image, the resources and
    the share of traffic a challenger gets as a canary."""

    name: str = Field(
        default="steel-defect-classifier",
        pattern=DNS_LABEL,
        max_length=45,  # KServe and Knative append -predictor and a revision to it in 63-character names
        description="the InferenceService's name (a DNS label); the champion and its canary share it",
    )
    namespace: str | None = Field(
        default=None, pattern=DNS_LABEL, max_length=63, description="null = kubectl's current namespace"
    )
    canary_traffic_percent: int = Field(
        default=10, ge=0, le=100, description="`--alias challenger`: its share of the traffic, in percent"
    )
    image: str = Field(
        default="ghcr.io/steelflow/steelflow:0.1.0",
        min_length=1,
        description="the serving container: the CPU image (docker/Dockerfile, `make image`)",
    )
    cpu: str = Field(
        default="2",
        pattern=QUANTITY,
        description="CPU request of the predictor (registry.serving.intra_op_threads: 2)",
    )
    memory: str = Field(default="2Gi", pattern=QUANTITY, description="memory request of the predictor")
    cpu_limit: str | None = Field(default=None, pattern=QUANTITY, description="null = the request")
    memory_limit: str | None = Field(default=None, pattern=QUANTITY, description="null = the request")
    min_replicas: int = Field(
        default=1, ge=0, description="0 lets KServe scale to zero (the first request then waits for a load)"
    )
    max_replicas: int | None = Field(default=None, ge=1, description="null = KServe's default")
    service_account: str | None = Field(
        default=None,
        min_length=1,
        description="the service account whose secret the storage initializer reads the model with "
        "(S3 keys, endpoint); null = the namespace's default",
    )
    artifacts_destination: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9+.-]*://.+",
        description="the tracking server's --artifacts-destination (s3://bucket/prefix): where a "
        "version's mlflow-artifacts:/ location really is; null = versions must have a direct location",
    )
    output: Path = Field(
        default=Path("deploy/inferenceservice.yaml"),
        description="the manifest, a .yaml file inside the project",
    )

    @field_validator("output")
    @classmethod
    def _yaml_file(cls, v: Path) -> Path:
        if v.suffix not in (".yaml", ".yml"):
            raise ValueError("the manifest is a .yaml (or .yml) file")
        return v
