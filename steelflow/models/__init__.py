"""CASI-Net and its ablation variants (paper Table 1), built by name: ``create_model("casinet", ...)``.

``blocks`` holds the building blocks, ``casinet`` the network and its config, ``registry`` the named
variants and the factory, ``summary`` parameter and FLOP counts.
"""

from steelflow.models.casinet import CASINet, CASINetConfig
from steelflow.models.variants import create_model, get_config, list_models

__all__ = ["CASINet", "CASINetConfig", "create_model", "get_config", "list_models"]
