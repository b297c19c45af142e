"""The steelflow steps as Kubeflow Pipelines v2 components (``components.steps`` holds their code).

:func:`make_components` turns each function of :mod:`components.steps` into a Python-function component
whose base image is the steelflow image (CPU or GPU, from ``kubeflow`` in params.yaml). The image already
holds steelflow and kfp, so nothing is pip-installed when a step starts.
"""

from __future__ import annotations

import dataclasses

from kfp import dsl

from components import steps

GPU_STEPS = ("tune_worker", "train")  # run on the GPU image, on GPU nodes


@dataclasses.dataclass(frozen=True)
class Components:
    settings: dsl.base_component.BaseComponent
    ingest: dsl.base_component.BaseComponent
    validate: dsl.base_component.BaseComponent
    split: dsl.base_component.BaseComponent
    corrupt: dsl.base_component.BaseComponent
    tune_start: dsl.base_component.BaseComponent
    tune_worker: dsl.base_component.BaseComponent
    tune_finish: dsl.base_component.BaseComponent
    train: dsl.base_component.BaseComponent
    evaluate: dsl.base_component.BaseComponent
    gate: dsl.base_component.BaseComponent
    register: dsl.base_component.BaseComponent


def make_components(image: str, gpu_image: str) -> Components:
    """Every step as a component on ``image`` (the GPU steps on ``gpu_image``)."""
    made = {
        field.name: dsl.component(
            getattr(steps, field.name),
            base_image=gpu_image if field.name in GPU_STEPS else image,
            install_kfp_package=False,  # the image has kfp: no pip at start-up, no network needed
        )
        for field in dataclasses.fields(Components)
    }
    return Components(**made)
