"""CASI-Net's building blocks, one small ``nn.Module`` each; :mod:`steelflow.models.casinet` composes them.

Source: "CASI-Net: A Novel and Effect Steel Surface Defect Classification Method Based on Coordinate
Attention and Self-Interaction Mechanism", Mathematics 2022, 10, 963, Section 3. Where the paper leaves a
detail open, the docstring of the block that decides it quotes the sentence and says what we chose.

Every block takes and returns float ``(N, C, H, W)`` tensors, uses only ops that ``torch.compile``,
``channels_last`` and ONNX all support (1×1/1×k/k×1 convolutions, batch norm, ReLU, max-pool, constant
pad, means, sigmoid, transpose, products), and has no data-dependent control flow.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

POOLS = 3  # BLFE's three 2×2 max-pools: the feature map is the input side // 2**3


class ConvBNReLU(nn.Module):
    """Convolution (no bias: the BN after it has one) → batch norm → ReLU, the unit of a BLFE block."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: tuple[int, int],
        padding: tuple[int, int] = (0, 0),
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class BLFEBlock(nn.Module):
    """One depth-wise separable block of the basic lightweight feature extractor (paper §3.1, Fig. 2).

    "Each module consists of four convolution layers, four ReLu layers, four batch normalization (BN)
    layers, and a Max pool layer." — each conv is a :class:`ConvBNReLU`, then a 2×2 max-pool, stride 2
    (floor), which gives the paper's §4.3 sizes 300 → 150 → 75 → 37.

    "In block i, the traditional 3×3 deep convolution is decomposed into 1×3 convolution kernel Conv2 and
    3×1 convolution kernel Conv3, and finally, the feature map X is obtained by 1×2 convolution kernel
    Conv4." The paper does not name Conv1 or the groups, stride and padding of Conv4. Our reading:

    - Conv1 is a pointwise (1×1) conv ``in_chans → out_chans``: it makes the block's channels, as the
      expansion step of a depth-wise separable block does, and is the only place the width changes.
    - Conv2 (1×3) and Conv3 (3×1) are depthwise (``groups = out_chans``), padded to keep the size: the
      factorised "3×3 deep [depthwise] convolution".
    - Conv4 (1×2) is a full conv (``groups = 1``), ``out_chans → out_chans``, stride 1: after the
      depthwise pair it is the only layer that can mix channels, which is what makes the block
      depth-wise *separable*. A 2-wide kernel cannot be padded symmetrically, so one zero column is
      added on the right only (``ZeroPad2d``) to keep the width; any other padding breaks §4.3's sizes
      (symmetric padding gives 38 × 38 after block 3; none gives non-square maps, which SI cannot take).
    """

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_chans, out_chans, (1, 1))
        self.conv2 = ConvBNReLU(out_chans, out_chans, (1, 3), padding=(0, 1), groups=out_chans)
        self.conv3 = ConvBNReLU(out_chans, out_chans, (3, 1), padding=(1, 0), groups=out_chans)
        self.pad4 = nn.ZeroPad2d((0, 1, 0, 0))  # (left, right, top, bottom)
        self.conv4 = ConvBNReLU(out_chans, out_chans, (1, 2))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.pool(self.conv4(self.pad4(x)))


class BLFE(nn.Module):
    """Basic lightweight feature extractor: three :class:`BLFEBlock` s (paper §3.1).

    "The dimension W1×H1×C1 of the output in block 1 is 150×150×64 ... block 2 is 75×75×128 ... block 3
    is 37×37×256" (§4.3, for a 300×300×3 input) — hence ``widths = (64, 128, 256)``. ``blocks[i]`` is
    block i + 1, so callers can inspect the intermediate maps.
    """

    def __init__(self, in_chans: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(BLFEBlock(a, b) for a, b in pairwise((in_chans, *widths))))
        self.out_chans = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou, Zhou & Feng, CVPR 2021), as CASI-Net uses it (paper §3.2, Fig. 3).

    Average-pool along W (→ ``(N, C, H, 1)``) and along H (→ ``(N, C, 1, W)``), concatenate the two along
    the spatial axis, a shared 1×1 conv ``C → mid`` + BN + non-linearity, split again, one 1×1 conv
    ``mid → C`` + sigmoid per direction: the gates ``g_h`` ``(N, C, H, 1)`` and ``g_w`` ``(N, C, 1, W)``,
    each in (0, 1). Output ``y = x * g_h * g_w``.

    - "f = δ(F1([z^h, z^w])) where ... δ is the ReLU function" — we follow the paper and use ReLU (Hou et
      al. use h-swish; pass ``act_layer=nn.Hardswish`` to get theirs).
    - The paper gives no reduction for F1; we take Hou et al.'s: ``mid = max(min_mid, channels //
      reduction)`` with reduction 32 and minimum 8, i.e. 256 → 8 in CASI-Net.

    :meth:`gates` returns the two gates without applying them (the attention picture, like the paper's
    Fig. 7).
    """

    def __init__(
        self, channels: int, reduction: int = 32, min_mid: int = 8, act_layer: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        mid = max(min_mid, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mid, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act = act_layer()
        self.conv_h = nn.Conv2d(mid, channels, kernel_size=1)
        self.conv_w = nn.Conv2d(mid, channels, kernel_size=1)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g_h, g_w)``: shapes ``(N, C, H, 1)`` and ``(N, C, 1, W)``, values in (0, 1)."""
        h, w = x.shape[-2:]
        z_h = x.mean(dim=3, keepdim=True)  # (N, C, H, 1): "Wd Avg Pool", the (1, W) kernel
        z_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (N, C, W, 1): "Hd Avg Pool", the (H, 1) kernel
        f = self.act(self.bn1(self.conv1(torch.cat([z_h, z_w], dim=2))))
        f_h, f_w = torch.split(f, [h, w], dim=2)
        return torch.sigmoid(self.conv_h(f_h)), torch.sigmoid(self.conv_w(f_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g_h, g_w = self.gates(x)
        return x * g_h * g_w


class SelfInteraction(nn.Module):
    """Self-interaction (paper §3.3, Fig. 4): ``Z = Yᵀ ⊙ Y``, no parameters.

    "After transposing the feature maps Y and obtaining Yᵀ, the new feature map Z is obtained through
    interactive operation ... Z = M(Yᵀ, Y) = (y_cᵀ(i, j) ⊙ y_c(i, j)) where M represents the Hadamard
    product of Y and Yᵀ." We read the transpose as swapping the two spatial axes of each channel's map,
    so ``Z[n, c, i, j] = Y[n, c, i, j] · Y[n, c, j, i]``: Z is symmetric in (i, j) and needs square maps.
    """

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-1] != y.shape[-2]:
            raise ValueError(f"self-interaction needs square feature maps, got {tuple(y.shape[-2:])}")
        return y * y.transpose(-1, -2)


class MLPHead(nn.Module):
    """Global average pool, then an MLP to ``num_classes`` logits (paper §3: "Finally, CASI-Net connects
    to the Multilayer Perceptron (MLP) to obtain the category of an input defect image").

    - Reduction before the MLP (the paper does not say): a global average over H × W, ``(N, C, H, W) →
      (N, C)``. It keeps the head's size independent of the input size, exports to ONNX as a plain mean,
      and on the SI map is the second-order statistic ``mean_ij y(i, j)·y(j, i)`` per channel. Flattening
      the 37×37×256 map instead would put 350 k inputs into the first linear layer.
    - Widths (not given either): two hidden layers of 1280 (MobileNetV2's head width), Linear → ReLU each,
      chosen so the whole network lands on Table 2's 2.22 M parameters for 6 classes (it is 2.20 M).
    - A BatchNorm1d on the pooled features (ours, not the paper's): the pooled SI statistics are all
      positive and large, and without it the MLP sat near chance for a dozen epochs of plain SGD on the CI
      profile; with it, 48-px synthetic data reaches ~93 % test accuracy in 25 epochs (it adds 512
      parameters).
    - Dropout (``params.yaml`` ``model.dropout``) before the last linear layer only.
    """

    def __init__(
        self, in_features: int, hidden: tuple[int, ...], num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in pairwise((in_features, *hidden)):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.norm = nn.BatchNorm1d(in_features)
        self.mlp = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden[-1] if hidden else in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.mlp(self.norm(features.mean(dim=(2, 3))))))
