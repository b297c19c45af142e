"""Fu-style corruptions: the degraded test sets of the paper's Table 1 (§4.2, after Fu et al. 2019).

Fu et al. did not publish their formulas, so these are steelflow's own, chosen to match the description
("severe non-uniform illumination, camera noise, and motion blur") and the table's parameters. ``I`` is
the uint8 image as float in 0..255; every output is rounded to the nearest integer, clipped to 0..255 and
returned as uint8 in the input's shape. A colour image gets the same field / kernel on every channel.

- **Luminance, strength α** (Table 1: α = 0.4, 1): ``I' = clip(I · (1 + α · f(x, y)), 0, 255)``, a smooth
  multiplicative gain in ``[1 − α, 1 + α]``. ``f`` is an off-centre spotlight: a Gaussian bump
  ``g = exp(−((x − cx)² + (y − cy)²) / (2σ²))`` with its centre ``(cx, cy)`` uniform over the image and
  ``σ`` uniform in ``[0.25, 0.5] · max(H, W)``, rescaled over the image to span ``[−1, 1]``:
  ``f = 2 (g − min g) / (max g − min g) − 1``. α = 0 returns the image unchanged.
- **Noise at SNR s dB** (Table 1: 35, 20): additive white Gaussian noise ``I' = clip(I + n, 0, 255)``,
  ``n ~ N(0, σ²)`` i.i.d. per pixel and channel, ``σ² = mean(I²) · 10^(−s/10)`` (mean over all pixels and
  channels), so that ``10 log10(mean(I²) / mean((I' − I)²)) ≈ s``.
- **Motion blur of length L px** (Table 1: 2, 5): convolution (``scipy.ndimage.convolve``, ``mode="nearest"``)
  with a linear motion kernel in the manner of MATLAB's ``fspecial('motion', L, θ)``: each pixel ``p``
  weighs ``max(0, 1 − d(p, S))``, ``d`` the distance from the pixel centre to the segment ``S`` of length
  ``L − 1`` through the kernel's centre at ``θ`` degrees counter-clockwise from horizontal, and the kernel is
  divided by its sum. ``θ`` is uniform in ``[0, 180)``; L below 1 counts as 1 (a single pixel: no blur).
  Integer ``L`` at θ = 0 gives ``L`` equal taps for odd ``L`` and ``[½, 1, …, 1, ½] / L`` for even ``L``.

The **hold-out** kinds (``corrupt.holdout``) are families robust training never augments with
(:mod:`steelflow.data.augment` has no compression, impulse, resolution, multiplicative-noise, quantisation
or warp family; the README's Hold-out section names each one's nearest training family), so accuracy on
them tells robustness apart from fitting the augmentation:

- **JPEG at quality q**: encoded and decoded by Pillow (4:2:0 for colour); blocking and ringing.
- **Salt and pepper, amount a**: a fraction ``a`` of the pixels (all channels of each) set to 0 or 255,
  half each on average; a dead or hot sensor pixel, dust.
- **Pixelate by k**: the mean of each ``k × k`` block (Pillow's box filter), repeated back to the
  original size; a coarse sensor or a digital zoom.
- **Stripes, strength s**: every row (or every column, by a coin flip) gets its own additive offset
  ``n · s · mean(I)``, ``n ~ N(0, 1)``; the fixed-pattern banding of a line-scan sensor.
- **Speckle, σ**: multiplicative noise ``I · (1 + n)``, ``n ~ N(0, σ²)`` i.i.d. per pixel; the grain of
  coherent light or a rough, glinting surface, which grows with the brightness (training's noise is additive).
- **Posterize to b bits**: ``2^b`` grey levels kept (``I`` with its low ``8 − b`` bits cleared, then
  centred in its bin); a camera whose gain was set for the wrong range, or a low bit depth.
- **Elastic warp, d**: the image resampled (bilinear, edges repeated) through a smooth random displacement
  field, each axis a sum of a few random Gaussian bumps of width ``[0.1, 0.3]`` of the side, scaled so that
  the largest displacement is ``d`` of the side; a flexing strip, a wobbling line-scan or an uneven roll
  (training has no geometric warp beyond flips).

The randomness of one image under one condition comes from :func:`rng_for` (global seed, the image's
sha256, the condition name), so a corrupted image does not depend on processing order or worker count.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import math
import operator
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from scipy import ndimage

from steelflow.config import CONDITIONS, Condition
from steelflow.data import images

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_SPOT_SIGMA = (0.25, 0.5)  # spotlight width, as fractions of the image's longer side
F = TypeVar("F", bound=Callable[..., Any])


def apply(img: np.ndarray, condition: Condition, rng: np.random.Generator) -> np.ndarray:
    """Corrupt ``img`` as ``condition`` (one entry of ``corrupt.conditions`` or ``corrupt.holdout``) says."""
    return CONDITIONS.function(getattr(condition, "kind", None))(img, condition, rng)


def corrupts(kind: str) -> Callable[[F], F]:
    """Register ``fn`` as what corruption ``kind`` does (:data:`steelflow.config.CONDITIONS`).

    ``fn(img, ...)``: its arguments after the image are the fields of the kind's config class of the same
    names, and ``rng`` (the image's generator, :func:`rng_for`) when it draws at random.
    """

    def add(fn: F) -> F:
        names = list(inspect.signature(fn).parameters)[1:]
        fields = CONDITIONS.config(kind).model_fields
        unknown = [n for n in names if n != "rng" and n not in fields]
        if unknown:
            raise TypeError(f"{fn.__name__}: {unknown} are not fields of the {kind!r} condition")

        @functools.wraps(fn)
        def run(img: np.ndarray, condition: Condition, rng: np.random.Generator) -> np.ndarray:
            return fn(img, *(rng if n == "rng" else getattr(condition, n) for n in names))

        CONDITIONS.implements(kind)(run)
        return fn

    return add


def rng_for(seed: int, sha256: str, condition_name: str) -> np.random.Generator:
    """The generator for one image under one condition: a pure function of its three arguments.

    Built from a numpy ``SeedSequence`` over integers made from the seed, the sha256 and a sha256 of the
    name (Python's ``hash()`` is salted per process, so it would not reproduce across runs or workers).
    """
    try:
        seed = operator.index(seed)
    except TypeError:
        raise ValueError(f"seed must be an integer, got {seed!r}") from None
    if not isinstance(sha256, str) or not _SHA256_HEX.match(sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if not isinstance(condition_name, str) or not condition_name:
        raise ValueError(f"condition name must be a non-empty string, got {condition_name!r}")
    name = int.from_bytes(hashlib.sha256(condition_name.encode("utf-8")).digest(), "big")
    # SeedSequence takes non-negative integers only; zig-zag keeps every seed, negative ones included, apart.
    zigzag = 2 * seed if seed >= 0 else -2 * seed - 1
    return np.random.default_rng(np.random.SeedSequence([zigzag, int(sha256, 16), name]))


@corrupts("luminance")
def luminance(img: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Non-uniform illumination: ``I · (1 + α f)`` with ``f`` an off-centre spotlight spanning [−1, 1]."""
    _check_image(img)
    alpha = _non_negative("alpha", alpha)
    if alpha == 0:
        return img.copy()
    field = spotlight(img.shape[:2], rng)
    gain = 1.0 + alpha * field
    if img.ndim == 3:
        gain = gain[..., None]
    return _to_uint8(img * gain)


def spotlight(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random field in [−1, 1]: a Gaussian bump at a random centre and width, min-max rescaled."""
    h, w = shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    sigma = rng.uniform(*_SPOT_SIGMA) * max(h, w)
    y, x = np.ogrid[:h, :w]
    g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    span = g.max() - g.min()
    if span == 0:  # a single pixel: no spatial variation to speak of
        return np.zeros(shape)
    return 2 * (g - g.min()) / span - 1


@corrupts("noise")
def noise(img: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise at ``snr_db`` relative to the image's mean power ``mean(I²)``."""
    _check_image(img)
    snr_db = _finite("snr_db", snr_db)
    signal = img.astype(np.float64)
    sigma = math.sqrt(float(np.mean(signal**2)) * 10 ** (-snr_db / 10))
    return _to_uint8(signal + rng.normal(0.0, sigma, img.shape))


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A linear motion kernel (after MATLAB's ``fspecial('motion')``): non-negative, odd-sized, sums to 1.

    Each pixel weighs ``max(0, 1 − distance to the segment)``; the segment has length ``length − 1``, passes
    through the centre pixel and points ``angle_deg`` counter-clockwise from the +x axis (rows grow
    downwards). The kernel is point-symmetric, so convolution and correlation agree.
    """
    length = _finite("length", length)
    angle_deg = _finite("angle_deg", angle_deg)
    if length <= 0:
        raise ValueError(f"length must be > 0, got {length}")
    half = (max(length, 1.0) - 1) / 2
    theta = math.radians(angle_deg % 180)
    ux, uy = math.cos(theta), -math.sin(theta)  # direction in (column, row) coordinates
    r = math.floor(half) + 1  # pixels further out than this are at least 1 from the segment
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    along = np.clip(x * ux + y * uy, -half, half)
    dist = np.hypot(x - along * ux, y - along * uy)
    k = 1.0 - dist
    k[k < 1e-9] = 0.0  # also float dust from cos(90°) != 0, which would widen an axis-aligned kernel
    k = _trim(k)
    return k / k.sum()


@corrupts("blur")
def motion_blur(img: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    """Blur along a line of ``length`` pixels at a random angle in [0, 180) degrees."""
    _check_image(img)
    kernel = motion_kernel(length, rng.uniform(0.0, 180.0))
    return convolve(img, kernel)


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel of a uint8 image with one 2-D kernel; edges repeat the border pixel."""
    _check_image(img)
    if img.ndim == 3:
        kernel = kernel[..., None]  # a channel axis of size 1: channels never mix
    return _to_uint8(ndimage.convolve(img.astype(np.float64), kernel, mode="nearest"))


@corrupts("jpeg")
def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG at ``quality`` (1–95) and decode again."""
    _check_image(img)
    if not 1 <= int(quality) <= 95:
        raise ValueError(f"quality must be in 1..95, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return images.decode(im, 3 if img.ndim == 3 and img.shape[-1] == 3 else 1).array.reshape(img.shape)


@corrupts("salt_pepper")
def salt_pepper(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Set a fraction ``amount`` of the pixels to black or white (a coin flip each)."""
    _check_image(img)
    amount = _finite("amount", amount)
    if not 0 <= amount <= 1:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    out = img.copy()
    hit = rng.random(img.shape[:2]) < amount
    white = rng.random(img.shape[:2]) < 0.5
    out[hit & white] = 255
    out[hit & ~white] = 0
    return out


@corrupts("pixelate")
def pixelate(img: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks and repeat them back to the original size."""
    _check_image(img)
    if int(factor) < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    h, w = img.shape[:2]
    small = Image.fromarray(img).reduce(int(factor))
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST)).reshape(img.shape)


@corrupts("stripes")
def stripes(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """An additive offset per row, or per column, of std ``strength · mean(I)``."""
    _check_image(img)
    strength = _non_negative("strength", strength)
    h, w = img.shape[:2]
    signal = img.astype(np.float64)
    sigma = strength * float(signal.mean())
    offsets = rng.normal(0.0, sigma, (h, 1)) if rng.random() < 0.5 else rng.normal(0.0, sigma, (1, w))
    if img.ndim == 3:
        offsets = offsets[..., None]
    return _to_uint8(signal + offsets)


@corrupts("speckle")
def speckle(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative Gaussian noise: ``I · (1 + n)``, ``n ~ N(0, σ²)`` per pixel (and channel)."""
    _check_image(img)
    sigma = _non_negative("sigma", sigma)
    signal = img.astype(np.float64)
    return _to_uint8(signal * (1.0 + rng.normal(0.0, sigma, img.shape)))


@corrupts("posterize")
def posterize(img: np.ndarray, bits: int) -> np.ndarray:
    """Keep ``2**bits`` grey levels: clear the low ``8 − bits`` bits, put each value in its bin's middle."""
    _check_image(img)
    if not 1 <= int(bits) <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    drop = 8 - int(bits)
    if drop == 0:
        return img.copy()
    return ((img >> drop) << drop) + np.uint8(1 << (drop - 1))


@corrupts("elastic")
def elastic(img: np.ndarray, displacement: float, rng: np.random.Generator) -> np.ndarray:
    """Resample through a smooth random displacement field whose largest shift is ``displacement`` × side."""
    _check_image(img)
    displacement = _non_negative("displacement", displacement)
    h, w = img.shape[:2]
    side = max(h, w)
    y, x = np.mgrid[:h, :w].astype(np.float64)
    shifts = []
    for _ in range(2):  # dy, then dx
        field = np.zeros((h, w))
        for _bump in range(4):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            width = rng.uniform(0.1, 0.3) * side
            field += rng.uniform(-1, 1) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
        peak = np.abs(field).max()
        shifts.append(field / peak * displacement * side if peak > 0 else field)
    coords = [y + shifts[0], x + shifts[1]]
    signal = img.astype(np.float64)
    if img.ndim == 2:
        return _to_uint8(ndimage.map_coordinates(signal, coords, order=1, mode="nearest"))
    planes = [
        ndimage.map_coordinates(signal[..., c], coords, order=1, mode="nearest") for c in range(img.shape[2])
    ]
    return _to_uint8(np.stack(planes, axis=-1))


# --- helpers ----------------------------------------------------------------------------------------


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    if img.size == 0:
        raise ValueError(f"expected a non-empty image, got shape {img.shape}")


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _trim(k: np.ndarray) -> np.ndarray:
    """Drop all-zero outer rows and columns in pairs, so the centre pixel stays the centre."""
    rows, cols = np.flatnonzero(k.any(axis=1)), np.flatnonzero(k.any(axis=0))
    c = k.shape[0] // 2
    dr = int(max(c - rows[0], rows[-1] - c))
    dc = int(max(c - cols[0], cols[-1] - c))
    return k[c - dr : c + dr + 1, c - dc : c + dc + 1]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
