"""The pipeline's first task: the run's parameters as the validated params tree every step reads.

kfp copies this function's source into its container. (No ``from __future__ import annotations``: kfp
reads the annotations as types.)
"""


def settings(
    params: str,
    overrides: list,
    data_source: str,
    variant: str,
    epochs: int,
    n_trials: int,
    image_size: int,
) -> str:
    """The params tree (JSON) with the run's typed parameters (what people change per run, editable one
    by one in the KFP UI) set as the values they are (a ``data_source`` of ``on`` or ``null`` stays that
    text), then the run's ``overrides`` (``dotted.key=value``, read as ``--set`` reads them; they win).
    Validated here, so a bad value fails this first task naming its key."""
    import tempfile
    from pathlib import Path

    from steelflow import config
    from steelflow.workspace import params_json

    with tempfile.TemporaryDirectory(prefix="steelflow-settings-") as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(params)
        tree = config.load_params(path).raw()
    typed = {
        "data.source": data_source,
        "model.variant": variant,
        "train.epochs": epochs,
        "tune.n_trials": n_trials,
        "model.image_size": image_size,
    }
    for key, value in typed.items():
        config.set_key(tree, key, value)
    for item in overrides:
        config.apply_override(tree, item)
    return params_json(config.parse_params(tree, source="the run's parameters"))
