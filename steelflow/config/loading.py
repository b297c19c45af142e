"""Loading params.yaml: read, apply ``--set`` overrides, validate, read the environment's overrides; and
the later edits of a loaded tree (tuned values, a search space's edges)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from steelflow.config.messages import one_line
from steelflow.config.params import ENV_OVERRIDES, Params
from steelflow.config.tree import apply_override, flatten_tree, set_key, subtree
from steelflow.config.tune import TUNABLE_SECTIONS
from steelflow.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read ``path``, apply ``dotted.key=value`` overrides, and validate into :class:`Params`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    sources = dict.fromkeys(flatten_tree(raw), str(path.name))
    for item in overrides:
        key = apply_override(raw, item)
        sources |= dict.fromkeys(flatten_tree(subtree(raw, key), key), "--set")
    params = parse_params(raw, source=str(path))
    params._sources = sources
    return params


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params tree into :class:`Params`; the environment's overrides (:data:`ENV_OVERRIDES`) are
    read here."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {one_line(e)}") from None
    for name, (section, _key) in ENV_OVERRIDES.items():
        cfg = getattr(params, section)
        if cfg is not None:
            cfg._from_env = os.environ.get(name) or None
    return params


def check_search_space(params: Params) -> None:
    """Every ``tune.space`` entry must name a model/train key that accepts both ends of its range."""
    if params.tune is None:
        return
    base = params.raw()
    base["tune"] = None
    for key, spec in params.tune.space.items():
        where = f"tune.space.{key}"
        if not key.startswith(TUNABLE_SECTIONS) or key in ("train.use_tuned", "train.epochs"):
            raise ConfigError(
                f"'{where}': only model.* and train.* keys (but train.epochs and "
                f"train.use_tuned) can be tuned"
            )
        for value in spec.values():
            tree = copy.deepcopy(base)
            try:
                set_key(tree, key, value)
                parse_params(tree)
            except ConfigError as e:
                raise ConfigError(f"'{where}': {value!r} is not a valid value for {key}: {e}") from None


def with_overrides(params: Params, values: dict[str, Any]) -> Params:
    """``params`` with dotted keys set to ``values``, validated again."""
    tree = params.raw()
    for key, value in values.items():
        set_key(tree, key, value)
    return parse_params(tree, source="tuned params")


def with_tuned(params: Params, path: Path) -> Params:
    """Apply ``best_params.yaml`` (written by ``steelflow tune``) when ``train.use_tuned`` is on."""
    if not params.train.use_tuned:
        return params
    if not path.is_file():
        raise ConfigError(f"train.use_tuned is true but {path} does not exist: run `steelflow tune` first")
    try:
        best = (yaml.safe_load(path.read_text()) or {}).get("params")
    except (yaml.YAMLError, AttributeError) as e:
        raise ConfigError(f"{path}: not a best-params file: {e}") from None
    if not isinstance(best, dict):
        raise ConfigError(f"{path}: expected a 'params' mapping of dotted keys to values")
    return with_overrides(params, best)
