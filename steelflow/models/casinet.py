"""CASI-Net (paper §3, Fig. 1) and its ablation variants (Table 1), one class built from a small config.

BLFE → [coordinate attention] → [self-interaction] → MLP head. Each variant of Table 1 is a
:class:`CASINetConfig` that switches the two bracketed stages on or off; :mod:`steelflow.models.variants`
names them and builds them. The blocks, and the paper sentences behind each choice, are in
:mod:`steelflow.models.blocks`.

Input contract: float ``(N, C, H, W)`` in [0, 1] (the cache's uint8 images divided by 255). The model
does the rest itself:

- a 1-channel (grayscale) input to a model built with ``in_chans=3`` is repeated to 3 channels;
- an input whose side is not ``image_size`` is resized to it (bilinear, no antialias) — the paper
  "resize[s] the input images to 300×300×3";
- then the input stage ``input_norm`` (:mod:`steelflow.models.input_norm`): ``none`` is the paper's (the
  first layer, a bias-free 1×1 conv and batch norm, absorbs any fixed per-channel affine normalisation),
  the others normalise each image on its own, per image or per neighbourhood, against lighting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from steelflow.models.blocks import BLFE, POOLS, CoordinateAttention, MLPHead, SelfInteraction
from steelflow.models.input_norm import build_input_norm


@dataclass(frozen=True)
class CASINetConfig:
    """One variant: which of CA and SI sit between the BLFE and the MLP, and the (shared) widths."""

    name: str
    label: str  # the row of the paper's Table 1
    attention: bool
    interaction: bool
    widths: tuple[int, ...] = (64, 128, 256)  # BLFE block outputs, §4.3
    mlp_hidden: tuple[int, ...] = (1280, 1280)  # see MLPHead
    ca_reduction: int = 32  # Hou et al.'s default

    def __post_init__(self) -> None:
        if len(self.widths) != POOLS or min(self.widths) < 1:
            raise ValueError(f"{self.name}: widths must be {POOLS} positive ints, got {self.widths}")
        if self.mlp_hidden and min(self.mlp_hidden) < 1:
            raise ValueError(f"{self.name}: mlp_hidden must be positive, got {self.mlp_hidden}")

    @property
    def min_image_size(self) -> int:
        """Smallest side that leaves a 1×1 map after the BLFE's max-pools (8 for three)."""
        return 2 ** len(self.widths)


class CASINet(nn.Module):
    """CASI-Net or one of its ablation variants, by ``config``.

    ``forward(x) = forward_head(forward_features(x))``. ``forward_features`` returns the map the head
    reads: Z = SI(CA(BLFE(x))), or whichever stages the variant has, ``(N, 256, s, s)`` with
    ``s = image_size // 8`` (37 at 300). ``attention_maps(x)`` exists only on variants with coordinate
    attention (see its docstring).
    """

    def __init__(
        self,
        config: CASINetConfig,
        num_classes: int,
        image_size: int,
        in_chans: int = 3,
        dropout: float = 0.0,
        input_norm: str = "none",
        input_norm_sigma: float = 0.1,
    ) -> None:
        super().__init__()
        if image_size < config.min_image_size:
            raise ValueError(
                f"image_size {image_size} is too small for {config.name}: its {POOLS} 2×2 max-pools "
                f"need image_size >= {config.min_image_size}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = config
        self.num_classes = num_classes
        self.image_size = image_size
        self.in_chans = in_chans
        self.feature_size = image_size // 2**POOLS

        self.input_norm = build_input_norm(input_norm, image_size, input_norm_sigma)
        self.input_norm_kind = input_norm
        self.backbone = BLFE(in_chans, config.widths)
        channels = self.backbone.out_chans
        self.attention = (
            CoordinateAttention(channels, reduction=config.ca_reduction)
            if config.attention
            else nn.Identity()
        )
        self.interaction = SelfInteraction() if config.interaction else nn.Identity()
        self.head = MLPHead(channels, config.mlp_hidden, num_classes, dropout)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to ``image_size`` if needed, apply the input stage, repeat a grayscale channel."""
        if x.ndim != 4:
            raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
        if x.shape[-2] != self.image_size or x.shape[-1] != self.image_size:
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
        x = self.input_norm(x)  # on the channels given: a grayscale image is normalised once, then repeated
        if x.shape[1] != self.in_chans:
            if x.shape[1] != 1:
                raise ValueError(f"expected 1 or {self.in_chans} input channels, got {x.shape[1]}")
            x = x.expand(-1, self.in_chans, -1, -1)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.interaction(self.attention(self.backbone(self.prepare(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def attention_maps(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``attention_maps(x) -> (g_h, g_w)``: the coordinate-attention gates for a batch ``x``.

        Shapes ``(N, C, s, 1)`` and ``(N, C, 1, s)`` at the feature-map side ``s``, values in (0, 1); their
        product is the weight CA puts on each position of each channel (the paper's Fig. 7 picture).
        Only variants with CA have this attribute, so ``hasattr(model, "attention_maps")`` says whether
        there is an attention picture to draw (``steelflow.steps.evaluate`` relies on that).
        """
        if not isinstance(self.attention, CoordinateAttention):
            raise AttributeError(f"{self.config.name} has no coordinate attention")
        return self._attention_maps

    def _attention_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention.gates(self.backbone(self.prepare(x)))

    def extra_repr(self) -> str:
        return (
            f"variant={self.config.name}, num_classes={self.num_classes}, image_size={self.image_size}, "
            f"input_norm={self.input_norm_kind}"
        )
