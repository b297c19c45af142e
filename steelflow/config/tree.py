"""Dotted keys over a raw params tree (a dict as YAML reads it): flatten, look up and set, a ``--set``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from steelflow.errors import ConfigError, DataError


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key → leaf value (lists are leaves)."""
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out |= flatten_tree(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def scalar_metrics(path: str | Path) -> dict[str, float]:
    """The numbers in a metrics JSON, flattened to dotted names (what a KFP Metrics artifact shows, and a
    step's run under a parent run logs)."""
    try:
        tree = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a metrics file: {e}") from None
    # numbers only (bool is an int too): a Metrics artifact shows nothing else
    return {k: float(v) for k, v in flatten_tree(tree).items() if isinstance(v, int | float)}


def apply_override(tree: dict[str, Any], item: str) -> str:
    """Set ``a.b.c=value`` (a ``--set``) in ``tree``; the value is parsed as YAML (``3``, ``0.5``, ``[a, b]``,
    ``null``). Returns the dotted key."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        reason = str(getattr(e, "problem", None) or e).strip()
        raise ConfigError(f"--set {key.strip()}: {value!r} is not a YAML value ({reason})") from None
    set_key(tree, key.strip(), parsed)
    return key.strip()


def set_key(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set the typed ``value`` at the dotted ``key`` in ``tree`` (validation comes after, on the tree).

    Keys that themselves hold dots (the entries of ``tune.space``) are matched whole:
    ``tune.space.train.lr.high``.
    """
    parts = key.split(".")
    node: Any = tree
    i = 0
    while True:
        if isinstance(node, list) and parts[i].isdigit() and int(parts[i]) < len(node):
            j = i + 1
            if j == len(parts):
                node[int(parts[i])] = value
                return
            node = node[int(parts[i])]
        elif isinstance(node, dict):
            # the longest run of parts that is a key here (a plain key is a run of one)
            j = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in node), i + 1)
            name = ".".join(parts[i:j])
            if j == len(parts):
                node[name] = value  # unknown leaf keys are reported by validation
                return
            if name not in node:
                raise ConfigError(f"--set {key}: unknown key {'.'.join(parts[:j])!r}")
            node = node[name]
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])!r} is not a section")
        i = j


def subtree(tree: dict[str, Any], key: str) -> Any:
    """The value at a dotted key that :func:`set_key` just set (keys with dots are matched whole)."""
    node: Any = tree
    parts, i = key.split("."), 0
    while i < len(parts):
        if isinstance(node, list):
            node, i = node[int(parts[i])], i + 1
            continue
        j = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in node), i + 1)
        node, i = node[".".join(parts[i:j])], j
    return node


def lookup(tree: Any, key: str) -> Any:
    """The value at a dotted ``key`` of a raw tree, as :func:`set_key` finds it (keys with dots matched
    whole, list items by index: ``train.robust.noise.snr_db.0``); :class:`ConfigError` naming the first part
    that is not there and what is."""
    node: Any = tree
    parts, i = key.split("."), 0
    while i < len(parts):
        if isinstance(node, list) and parts[i].isdigit() and int(parts[i]) < len(node):
            node, i = node[int(parts[i])], i + 1
            continue
        if isinstance(node, dict):
            j = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in node), None)
            if j is not None:
                node, i = node[".".join(parts[i:j])], j
                continue
            allowed = f"(allowed: {', '.join(map(str, node))})" if node else "(an empty section)"
        elif isinstance(node, list):
            allowed = f"(a list of {len(node)}: index 0..{len(node) - 1})"
        else:
            allowed = "(its parent holds a value, not a section)"
        raise ConfigError(f"unknown key {'.'.join(parts[: i + 1])!r} {allowed}")
    return node
