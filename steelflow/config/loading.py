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
from steelflow.config.tree import apply_override, flatten_tree, lookup, set_key, subtree
from steelflow.config.tune import TUNABLE_SECTIONS, SearchParam
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
    """Every ``tune.space`` entry must name a model/train key that accepts both ends of its range.

    A range in params (``train.robust.noise.snr_db: [12, 40]``) is searched one end at a time, by index
    (``train.robust.noise.snr_db.0``, the low end); where both ends are searched, their ranges must not
    cross, or a trial could draw a low end above its high end. ``train.robust.*`` keys need the robust or
    pareto objective: scored on clean validation alone, the weakest augmentation would win.
    """
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
        try:
            hand_set = lookup(base, key)
        except ConfigError as e:
            raise ConfigError(f"'{where}': {e}") from None
        if isinstance(hand_set, list):
            raise ConfigError(
                f"'{where}': {key} holds a list ({hand_set}); search one item of it by index, "
                f"{key}.0 to {key}.{len(hand_set) - 1} (of a range, .0 is the low end and .1 the high)"
            )
        if key.startswith("train.robust.") and params.tune.objective == "accuracy":
            raise ConfigError(
                f"'{where}': tune.objective accuracy scores clean validation only, where the weakest "
                "robust training wins; search train.robust.* with tune.objective robust or pareto"
            )
        for value in spec.values():
            tree = copy.deepcopy(base)
            try:
                set_key(tree, key, value)
                parse_params(tree)
            except ConfigError as e:
                raise ConfigError(f"'{where}': {value!r} is not a valid value for {key}: {e}") from None
    _ends_apart(params.tune.space)


def _ends_apart(space: dict[str, SearchParam]) -> None:
    """Both ends of one range searched: the low end's values must stay at or below the high end's."""
    for key, spec in space.items():
        low_key = f"{key.removesuffix('.1')}.0"
        if (
            not key.endswith(".1")
            or low_key not in space
            or "categorical" in (spec.kind, space[low_key].kind)
        ):
            continue
        below = max(space[low_key].values())
        if below > min(spec.values()):
            raise ConfigError(
                f"'tune.space.{low_key}' reaches {below:g}, above the lowest {min(spec.values()):g} of "
                f"'tune.space.{key}': a trial could draw a range whose low end is above its high end"
            )


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


def changed_values(before: Params, after: Params) -> list[str]:
    """``key: old → new`` for every key whose value ``after`` changed (what ``with_tuned`` replaced)."""
    old, new = flatten_tree(before.raw()), flatten_tree(after.raw())
    return [f"{k}: {old.get(k)!r} → {v!r}" for k, v in new.items() if old.get(k) != v]
