"""The named variants — the four rows of the paper's Table 1 — and the one factory that builds them.

A variant is a :class:`~steelflow.models.casinet.CASINetConfig`; adding one is adding an entry here. The
factory passes every other argument through to :class:`~steelflow.models.casinet.CASINet`, which declares
them once.
"""

from __future__ import annotations

from typing import Any

from steelflow.models.casinet import CASINet, CASINetConfig

_VARIANTS: dict[str, CASINetConfig] = {
    cfg.name: cfg
    for cfg in (
        CASINetConfig("blfe_mlp", "BLFE + MLP", attention=False, interaction=False),
        CASINetConfig("blfe_si_mlp", "BLFE + SI + MLP", attention=False, interaction=True),
        CASINetConfig("blfe_ca_mlp", "BLFE + CA + MLP", attention=True, interaction=False),
        CASINetConfig("casinet", "BLFE + CA + SI + MLP", attention=True, interaction=True),
    )
}


def list_models() -> list[str]:
    """Variant names, in the order of the paper's Table 1 (baseline first, full CASI-Net last)."""
    return list(_VARIANTS)


def get_config(name: str) -> CASINetConfig:
    """The config of variant ``name``; ``ValueError`` naming the known variants if there is none."""
    try:
        return _VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model variant {name!r}; known: {', '.join(_VARIANTS)}") from None


def create_model(name: str, *args: Any, **kwargs: Any) -> CASINet:
    """Build variant ``name`` with freshly initialised weights, from :class:`CASINet`'s own arguments after
    its config (``num_classes``, ``image_size``, ``in_chans``, ``dropout``, ``input_norm``,
    ``input_norm_sigma``), passed through. Raises ``ValueError`` for an unknown name or a size/count the
    network cannot take.
    """
    return CASINet(get_config(name), *args, **kwargs)
