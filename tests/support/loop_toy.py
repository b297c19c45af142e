"""A three-task pipeline that shows kfp.local's ParallelFor input bug (see pipelines.loop_inputs_kept).

No ``from __future__ import annotations``: kfp reads the components' annotations as types.
"""

from kfp import dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def settings() -> str:
    return "the run's params"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def plan(params: str) -> list:
    return ["0", "1"]


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def part(params: str, key: str) -> str:
    if params != "the run's params":
        raise ValueError(f"the part got {params!r} as its params")
    return key


@dsl.pipeline(name="loop-inputs")
def loop_pipeline():
    """settings → plan → a ParallelFor of parts that read settings' output, as ingest's parts do."""
    params = settings().output
    with dsl.ParallelFor(plan(params=params).output) as key:
        part(params=params, key=key)
