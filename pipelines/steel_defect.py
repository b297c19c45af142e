"""``steel_defect_pipeline``: the steelflow steps as one Kubeflow Pipelines v2 run.

ingest (plan → a ParallelFor of ``data.parts`` part pods → merge) → validate → [if the data passed]
split → corrupt (plan → a ParallelFor with a pod per condition → merge) → tune (start → a ParallelFor of
``tune.workers`` worker pods on one Optuna study → finish) → train with the best params → evaluate → gate →
[if every gate passed] register (a new version, alias ``challenger``). A ParallelFor's parts fan in by
``dsl.Collected`` (the merge task gets every part's artifact); validate runs once, on the merged manifest.

This graph is the one hand-written part: the components and each task's runtime needs (GPU image and
nodes, caching, retries) come from the steps' declarations (:mod:`steelflow.step`). The run's parameters
are the params file itself (``params``: its tree as JSON text), ``overrides`` (``dotted.key=value``, as
``--set`` takes them), and beside them the few values people change per run as typed parameters
(``data_source``, ``variant``, ``epochs``, ``n_trials``, ``image_size``; defaults from the params), which
a first ``settings`` task sets into the tree as the typed values they are; every step reads that validated
tree. A DVC experiment and a Kubeflow run with the same params are the same experiment. What only
Kubernetes needs (images, GPU placement, secrets, retry counts) is read from the ``kubeflow`` section when
the pipeline is built. (No ``from __future__ import annotations``: kfp reads the pipeline function's
annotations as types.)
"""

from kfp import dsl, kubernetes

import components
from steelflow import steps
from steelflow.config import KubeflowConfig, Params
from steelflow.errors import ConfigError

NAME = "steel-defect-pipeline"


def define_pipeline(
    params: Params, params_text: str, image_tag: str | None = None
) -> dsl.graph_component.GraphComponent:
    """The pipeline for ``params``; ``params_text`` (that params tree as JSON) is the default run argument;
    ``image_tag`` replaces the tag of both images (e.g. ``0.1.0-1a2b3c4``, what `make image` also tags)."""
    kf = params.kubeflow
    if kf is None:
        raise ConfigError("params has no 'kubeflow' section: add one (see params.yaml)")
    if params.tune is None or params.registry is None:
        raise ConfigError("the Kubeflow pipeline needs the 'tune' and 'registry' sections of params")
    cpu_image, gpu_image = images(kf, image_tag)
    c = components.make_components(cpu_image, gpu_image)
    # A folder source can change under the same params; only generated data is safe to take from the cache.
    cache_ingest = params.data.is_synthetic

    @dsl.pipeline(
        name=NAME,
        description="Steel-surface defect classifier: validated data → tuned, robustness-checked CASI-Net → "
        "MLflow registry (challenger).",
        pipeline_root=kf.pipeline_root,
    )
    def steel_defect_pipeline(  # noqa: PLR0913 (one argument per typed run parameter)
        params: str = params_text,
        overrides: list = [],  # noqa: B006 (kfp default)
        data_source: str = params.data.source,
        variant: str = params.model.variant,
        epochs: int = params.train.epochs,
        n_trials: int = params.tune.n_trials,
        image_size: int = params.model.image_size,
    ):
        settings = c.settings(
            params=params,
            overrides=overrides,
            data_source=data_source,
            variant=variant,
            epochs=epochs,
            n_trials=n_trials,
            image_size=image_size,
        )
        _setup(settings, "settings", kf)
        run = {"params": settings.output}
        ingest = _in_parts(c, "ingest", kf, run, cache=cache_ingest)
        validate = _setup(c.validate(**run, dataset=ingest.outputs["dataset"]), "validate", kf)
        with dsl.If(validate.outputs["Output"] == True, name="data-valid"):  # noqa: E712 (a kfp condition)
            manifest = ingest.outputs["manifest"]
            split = _setup(
                c.split(**run, dataset=ingest.outputs["dataset"], report=validate.outputs["report"]),
                "split",
                kf,
            )
            splits = split.outputs["splits"]
            corrupt = _in_parts(c, "corrupt", kf, run, dataset=ingest.outputs["dataset"], splits=splits)
            corrupted = corrupt.outputs["corrupted"]

            start = _setup(c.tune_start(**run, manifest=manifest, splits=splits), "tune_start", kf)
            study = start.outputs["study"]
            with dsl.ParallelFor(items=start.outputs["Output"], name="tune-workers") as worker:
                tune_worker = c.tune_worker(
                    **run, worker=worker, manifest=manifest, splits=splits, study=study
                )
                _setup(tune_worker, "tune_worker", kf)
            finish = c.tune_finish(**run, manifest=manifest, splits=splits, study=study).after(tune_worker)
            tuning = _setup(finish, "tune_finish", kf).outputs["tuning"]

            train = _train(c, kf, run, gpu_image, manifest=manifest, splits=splits, tuning=tuning)
            model = train.outputs["model"]
            evaluate = _setup(
                c.evaluate(**run, manifest=manifest, splits=splits, corrupted=corrupted, model=model),
                "evaluate",
                kf,
            )
            evaluation = evaluate.outputs["evaluation"]
            gate = _setup(
                c.gate(**run, splits=splits, corrupted=corrupted, model=model, evaluation=evaluation),
                "gate",
                kf,
            )
            with dsl.If(gate.outputs["Output"] == True, name="gates-passed"):  # noqa: E712
                register = c.register(
                    **run,
                    manifest=manifest,
                    splits=splits,
                    corrupted=corrupted,
                    tuning=tuning,
                    model=model,
                    evaluation=evaluation,
                    verdict=gate.outputs["verdict"],
                )
                _setup(register, "register", kf)

    return steel_defect_pipeline


def _in_parts(c, name: str, kf: KubeflowConfig, run: dict, cache: bool = True, **inputs) -> dsl.PipelineTask:
    """A step cut into parts (its ``parts`` declaration): ``<name>_plan`` lists them, a ParallelFor runs
    ``<name>_part`` on each, and ``<name>_merge`` fans in (``dsl.Collected`` of every part's files).
    Returns the merge task, whose outputs are the step's."""
    plan = _setup(getattr(c, f"{name}_plan")(**run), f"{name}_plan", kf, cache)
    with dsl.ParallelFor(items=plan.output, name=f"{name}-parts") as key:
        part = _setup(getattr(c, f"{name}_part")(**run, key=key, **inputs), f"{name}_part", kf, cache)
    merge = getattr(c, f"{name}_merge")(**run, parts=dsl.Collected(part.outputs["part"]), **inputs)
    return _setup(merge, f"{name}_merge", kf, cache)


def _train(c, kf: KubeflowConfig, run: dict, gpu_image: str, **inputs) -> dsl.PipelineTask:
    """The train task: the step in its own GPU pod, or (``kubeflow.trainer.enabled``) ``train_trainjob``, a
    CPU launcher that runs it as a Kubeflow Trainer TrainJob on ``kubeflow.trainer.num_nodes`` GPU nodes
    (:mod:`steelflow.trainjob`) and waits; either way its outputs are the step's ``model`` and ``metrics``."""
    if not kf.trainer.enabled:
        return _setup(c.train(**run, **inputs), "train", kf)
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    launcher = c.train_trainjob(**run, pipeline_run=run_id, image=gpu_image, **inputs)
    return _setup(launcher, "train_trainjob", kf)


def images(kf: KubeflowConfig, tag: str | None) -> tuple[str, str]:
    """The CPU and GPU images, their tags replaced by ``tag`` when given (a digest is left as it is)."""
    if not tag:
        return kf.image, kf.gpu_image
    return tuple(_retag(image, tag) for image in (kf.image, kf.gpu_image))


def _retag(image: str, tag: str) -> str:
    if "@" in image:  # pinned by digest already
        return image
    name, _, last = image.rpartition("/")
    repo = last.split(":", 1)[0]
    return f"{name}/{repo}:{tag}" if name else f"{repo}:{tag}"


def _setup(task: dsl.PipelineTask, name: str, kf: KubeflowConfig, cache: bool = True) -> dsl.PipelineTask:
    """Name, resources, placement, secrets, caching and retries of one task (``name``: its component's),
    as its step declares them."""
    step = _step_of(name)
    task.set_display_name(name.replace("_", "-"))
    task.set_caching_options(cache and (step is None or step.cache))
    if step is not None and step.retries and kf.retries:
        task.set_retry(num_retries=kf.retries, backoff_duration="30s", backoff_factor=2)
    gpu_task = step is not None and components.on_gpu(step, name)
    if gpu_task:
        gpu = kf.gpu
        task.set_cpu_request(gpu.cpu).set_memory_request(gpu.memory)
        task.set_accelerator_type(gpu.accelerator).set_accelerator_limit(gpu.count)
        for key, value in gpu.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for t in gpu.tolerations:
            kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        task.set_cpu_limit(gpu.cpu_limit or gpu.cpu).set_memory_limit(gpu.memory_limit or gpu.memory)
    else:
        task.set_cpu_request(kf.cpu).set_memory_request(kf.memory)
        # limits too: a step without one may take a node's every core and its memory from the others
        task.set_cpu_limit(kf.cpu_limit or kf.cpu).set_memory_limit(kf.memory_limit or kf.memory)
    for secret in kf.secrets:
        kubernetes.use_secret_as_env(
            task, secret_name=secret.name, secret_key_to_env={key: env for env, key in secret.env.items()}
        )
    return task


def _step_of(name: str) -> steps.Step | None:
    """The step a task runs (``tune_worker`` → tune); None for ``settings``."""
    for step in steps.registry().values():
        if name in components.task_names(step):
            return step
    return None
