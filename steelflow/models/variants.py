"""The named variants — the four rows of the paper's Table 1 — and the one factory that builds them.

A variant is a :class:`~steelflow.models.casinet.CASINetConfig`; adding one is adding an entry here.
"""

from __future__ import annotations

from torch import nn

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


def create_model(
    name: str,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    dropout: float = 0.0,
    input_norm: str = "none",
    input_norm_sigma: float = 0.1,
) -> nn.Module:
    """Build variant ``name`` with freshly initialised weights.

    ``image_size`` is the side the model resizes every input to (the paper: 300); ``in_chans`` the
    channels its first conv takes (a 1-channel input is repeated to them); ``dropout`` sits before the
    last linear layer; ``input_norm`` is the input stage (:mod:`steelflow.models.input_norm`), with its
    low-pass width ``input_norm_sigma`` as a fraction of ``image_size``. Raises ``ValueError`` for an
    unknown name or a size/count the network cannot take.
    """
    return CASINet(
        get_config(name),
        num_classes,
        image_size,
        in_chans=in_chans,
        dropout=dropout,
        input_norm=input_norm,
        input_norm_sigma=input_norm_sigma,
    )
