"""CASI-Net and its ablation variants (paper Table 1), built by name: ``create_model("casinet", ...)``.

``blocks`` holds the building blocks, ``casinet`` the network and its config, ``variants`` the named
variants and the factory, ``meta`` what a trained network is beside its weights, ``input_norm`` the input
stages, ``summary`` parameter and FLOP counts.
"""

from steelflow.models.casinet import CASINet, CASINetConfig
from steelflow.models.meta import ModelMeta
from steelflow.models.variants import create_model, get_config, list_models

__all__ = ["CASINet", "CASINetConfig", "ModelMeta", "create_model", "get_config", "list_models"]
