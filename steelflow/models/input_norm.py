"""The network's input stage (``model.input_norm``): what a batch goes through before the BLFE sees it.

A camera's lighting is a smooth *gain* on the surface: ``I = R · g(x, y)``, with ``R`` the steel's
reflectance (what the defect is) and ``g`` the lamp, the auto-exposure and the optics' fall-off. The stages:

- ``none``: the paper's behaviour, the [0, 1] image as it is.
- ``standardize``: per image and channel, ``(x − mean) / std``. Removes a global gain and offset (exposure,
  contrast), not a smooth field.
- ``flatfield``: flat-field correction. ``x / (blur(x) + ε)``, the image divided by its own low-pass
  estimate (a Gaussian of ``σ = input_norm_sigma · side``), then standardised. A gain ``g`` that varies
  slowly against ``σ`` cancels: ``R g / blur(R g) ≈ R / blur(R)``.
- ``local``: local contrast normalisation, ``(x − μ_σ) / sqrt(v_σ + ε²)`` with ``μ_σ`` and ``v_σ`` the
  Gaussian-weighted local mean and variance. Cancels a smooth gain *and* a smooth offset, and evens out
  local contrast, so a dim corner and a lit centre reach the network at the same scale.

Each stage is declared by name in :data:`steelflow.config.INPUT_STAGES` (what ``model.input_norm``
accepts), and its builder registers against that name at the end of this module. Every stage is a plain
module of convolutions, pads and reductions, so it exports to ONNX with the rest of the network and the
pyfunc and ``mlflow models serve`` carry it without a line of their own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from steelflow.config import INPUT_STAGES

INPUT_NORMS = INPUT_STAGES.names
# Floors in [0, 1] intensity units: a black or saturated area (std 0) stays finite, and the few grey
# levels left in a nearly black corner are not blown up into full-contrast quantisation noise.
_EPS = 0.02


class GaussianLowPass(nn.Module):
    """A separable Gaussian blur of ``σ = sigma · side`` pixels, per channel, edges reflected.

    The side is the network's ``image_size`` (the stage runs after the resize), so the blur is fixed when
    the module is built and kept as a non-persistent buffer: no weights to learn, none saved.

    The blur is two matrix products, ``blur(x) = Bᵀ · x · B`` per channel, with ``B`` the ``side × side``
    matrix of the 1-D Gaussian with the reflected edges folded in: the same numbers as a reflect pad and a
    ``1 × k`` then ``k × 1`` convolution, but a GEMM instead of two ``k``-tap single-channel convolutions
    (σ = 0.1 · side is a 181-tap kernel at 300 px). In ONNX Runtime that took the stage from 8 ms to under
    1 ms per 300 px image, and it is what keeps it fast under int8, where the stage stays fp32
    (``benchmarks/bench_serving.py``).
    """

    def __init__(self, image_size: int, sigma: float) -> None:
        super().__init__()
        s = max(sigma * image_size, 0.5)
        radius = min(math.ceil(3 * s), image_size - 1)  # reflection needs radius < side
        t = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-(t**2) / (2 * s * s))
        self.register_buffer("matrix", _blur_matrix(k / k.sum(), image_size).float(), persistent=False)
        self.radius = radius
        self.side = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.side, self.side):
            raise ValueError(
                f"the input stage was built for {self.side}×{self.side} images, got {tuple(x.shape[-2:])}"
            )
        return self.matrix.T @ (x @ self.matrix)


def _blur_matrix(kernel: torch.Tensor, side: int) -> torch.Tensor:
    """``B`` with ``(x @ B)[j] = Σ_t kernel[t] · x[reflect(j + t − r)]``, reflected as ``F.pad``'s ``reflect``
    (the edge pixel is not repeated: index −1 is 1, index ``side`` is ``side − 2``)."""
    r = (len(kernel) - 1) // 2
    j = torch.arange(side).view(1, -1)
    src = j + torch.arange(-r, r + 1).view(-1, 1)  # (taps, side): the input index each tap reads
    src = torch.where(src < 0, -src, src)
    src = torch.where(src >= side, 2 * (side - 1) - src, src)
    matrix = torch.zeros(side, side, dtype=kernel.dtype)
    weights = kernel.repeat_interleave(side)  # tap t of every output column, in src's order
    matrix.index_put_((src.flatten(), j.expand_as(src).flatten()), weights, accumulate=True)
    return matrix


def _standardize(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = (x - mean).pow(2).mean(dim=(-2, -1), keepdim=True)
    return (x - mean) / torch.sqrt(var + _EPS**2)


class Standardize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _standardize(x)


class FlatField(nn.Module):
    def __init__(self, image_size: int, sigma: float) -> None:
        super().__init__()
        self.low_pass = GaussianLowPass(image_size, sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _standardize(x / (self.low_pass(x) + _EPS))


class LocalContrast(nn.Module):
    def __init__(self, image_size: int, sigma: float) -> None:
        super().__init__()
        self.low_pass = GaussianLowPass(image_size, sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.low_pass(x)
        centred = x - mean
        var = self.low_pass(centred * centred)
        return centred / torch.sqrt(var + _EPS**2)


def build_input_norm(kind: str, image_size: int, sigma: float) -> nn.Module:
    """The stage ``kind`` (one of :data:`INPUT_NORMS`) for inputs of side ``image_size``."""
    return INPUT_STAGES.function(kind)(image_size, sigma)


# --- the stages, by name (declared in steelflow.config.INPUT_STAGES) -------------------------------------


@INPUT_STAGES.implements("none")
def _none(image_size: int, sigma: float) -> nn.Module:
    return nn.Identity()


@INPUT_STAGES.implements("standardize")
def _standardized(image_size: int, sigma: float) -> nn.Module:
    return Standardize()


@INPUT_STAGES.implements("flatfield")
def _flatfield(image_size: int, sigma: float) -> nn.Module:
    return FlatField(image_size, sigma)


@INPUT_STAGES.implements("local")
def _local(image_size: int, sigma: float) -> nn.Module:
    return LocalContrast(image_size, sigma)
