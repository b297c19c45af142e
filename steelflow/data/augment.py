"""Training-time augmentation of batches: torch tensors in [0, 1], ``(N, C, H, W)``, on the training device.

Two layers, both drawn from torch's global RNG (which ``train`` seeds per epoch, so ``--resume`` replays
the same batches):

- :func:`augment` (``train.augment``): flips, quarter turns, a mild brightness and contrast jitter.
- :class:`RobustAugment` (``train.robust``): the corruptions a camera on a mill makes, each a *family* drawn
  per image with probability ``p`` and a strength from a range:

  - scene: another image's faint texture over this one, the label kept (off by default);
  - illumination: a smooth multiplicative gain ``1 + s·f`` (``f`` in [−1, 1]) of one of several shapes, a
    bright or dark off-centre spot, several light sources, a linear gradient or a low-frequency random
    field, or an additive glare. ``s`` reaches past 1, where parts of the image go black or saturate;
  - optics: motion blur (random length and angle) and defocus;
  - sensor: additive Gaussian noise over a range of SNRs, white or isotropically coloured (grain, blotches),
    optionally smeared along a random direction (streaks: scan lines, read-out and rolling marks);
  - tone: global gamma (with an exposure gain), contrast, and a random monotone tone curve.

  Applied in the order scene → light → optics → sensor → tone (gamma, contrast, curve), clipping to [0, 1]
  after each (a sensor saturates). Each family's config class is registered in
  :data:`steelflow.config.FAMILIES` and its function here, against the same name.

No peeking: nothing here calls :mod:`steelflow.data.corruptions`, the evaluation's corruptions, and the
families are broader than those (tests/unit/test_augment.py fails if training imports that module). Kornia does
what it has a transform for; the rest is written here, and each says why.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F

from steelflow.config import FAMILIES, ROBUST_FAMILIES, AugmentConfig, RobustConfig


def augment(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Random flips, quarter turns, brightness and contrast, per image, from torch's global RNG."""
    n = x.shape[0]
    if cfg.hflip:
        x = torch.where(_coin(n, x), x.flip(-1), x)
    if cfg.vflip:
        x = torch.where(_coin(n, x), x.flip(-2), x)
    if cfg.rot90 and x.shape[-1] == x.shape[-2]:
        x = torch.where(_coin(n, x), x.rot90(1, (-2, -1)), x)
    if cfg.brightness:
        x = x * (1 + cfg.brightness * (2 * _uniform(n, x) - 1))
    if cfg.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + cfg.contrast * (2 * _uniform(n, x) - 1)) + mean
    return x.clamp_(0, 1)


class RobustAugment:
    """``train.robust``'s families as one callable over batches.

    Each family's function is a method below, registered against its name in
    :data:`steelflow.config.FAMILIES`; a batch goes through the families whose ``p`` is above 0 in the
    order the methods are registered (scene → light → optics → sensor → tone), clipped to [0, 1] after
    each (a sensor saturates). Kornia's transforms are built once, or once per image side.
    """

    def __init__(self, cfg: RobustConfig) -> None:
        self.cfg = cfg
        self._sized: dict[tuple[str, int], K.IntensityAugmentationBase2D] = {}
        g = cfg.gamma
        self._gamma = K.RandomGamma(gamma=g.gamma, gain=g.gain, p=g.p) if g.p else None
        # Kornia's RandomGaussianIllumination adds a bright or dark Gaussian patch: the additive glare
        # shape. Its amplitude is a range of its own, tied here to the upper strength.
        reach = max(0.1, 0.4 * cfg.illumination.strength[1])
        self._glare = K.RandomGaussianIllumination(gain=(0.1, reach), sigma=(0.1, 0.6), p=1.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for name, apply in FAMILIES.functions().items():
            if getattr(self.cfg, name).p:
                x = apply(self, x)
        return x

    # --- scene ----------------------------------------------------------------------------------------

    @FAMILIES.implements("overlay")
    def overlay(self, x: torch.Tensor) -> torch.Tensor:
        """Each chosen image plus ``w`` times the mean-free texture of another image of the batch.

        The label stays the base image's: faint foreign structure (marks, scale, another surface showing
        through) must not decide the class. A mixing augmentation, after PixMix and mixup; written here
        because Kornia's mixes (RandomMixUpV2, CutMix) mix the labels too.
        """
        fam = self.cfg.overlay
        n = x.shape[0]
        if n < 2:
            return x
        shift = int(torch.randint(1, n, (1,)))  # a rotation of the batch: never an image onto itself
        other = x.roll(shift, dims=0)
        other = torch.where(_coin(n, other), other.flip(-1), other)
        other = torch.where(_coin(n, other), other.flip(-2), other)
        texture = other - other.mean(dim=(-2, -1), keepdim=True)
        out = x + _between(fam.weight, n, x) * texture
        return torch.where(_chosen(fam.p, n, x), out, x).clamp_(0, 1)

    # --- light ----------------------------------------------------------------------------------------

    @FAMILIES.implements("illumination")
    def illumination(self, x: torch.Tensor) -> torch.Tensor:
        """Each chosen image times ``1 + s·f``, or plus a glare, with its shape drawn from ``shapes``."""
        fam = self.cfg.illumination
        n, _, h, w = x.shape
        s = _between(fam.strength, n, x)
        lit = []
        for shape in fam.shapes:
            if shape == "glare":
                lit.append(self._glare(x))
            else:
                field = _FIELDS[shape](n, h, w, x)
                lit.append(x * (1 + s * field).clamp_(min=0))
        pick = torch.randint(len(lit), (n,), device=x.device)
        out = torch.stack(lit)[pick, torch.arange(n, device=x.device)]
        return torch.where(_chosen(fam.p, n, x), out, x).clamp_(0, 1)

    # --- optics ---------------------------------------------------------------------------------------

    @FAMILIES.implements("motion_blur")
    def motion_blur(self, x: torch.Tensor) -> torch.Tensor:
        """Kornia's motion blur, its kernel sizes a fraction of this image side (Kornia draws one kernel
        size per batch, its angle and direction per image)."""
        mb, side = self.cfg.motion_blur, x.shape[-1]
        if ("motion_blur", side) not in self._sized:
            lo, hi = (_odd(v * side) for v in mb.length)
            blur = K.RandomMotionBlur(kernel_size=(lo, hi), angle=90.0, direction=0.5, p=mb.p)
            self._sized["motion_blur", side] = blur
        return self._sized["motion_blur", side](x).clamp_(0, 1)

    @FAMILIES.implements("defocus")
    def defocus(self, x: torch.Tensor) -> torch.Tensor:
        """Kornia's Gaussian blur as defocus, its width a fraction of this image side."""
        df, side = self.cfg.defocus, x.shape[-1]
        if ("defocus", side) not in self._sized:
            sigma = (df.sigma[0] * side, df.sigma[1] * side)
            self._sized["defocus", side] = K.RandomGaussianBlur(_odd(6 * sigma[1]), sigma, p=df.p)
        return self._sized["defocus", side](x).clamp_(0, 1)

    # --- sensor and tone ------------------------------------------------------------------------------

    @FAMILIES.implements("noise")
    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """Additive Gaussian noise at an SNR drawn per image (Kornia's noise takes a fixed std, no SNR)."""
        fam = self.cfg.noise
        n = x.shape[0]
        snr = _between(fam.snr_db, n, x)
        power = x.pow(2).mean(dim=(1, 2, 3), keepdim=True)
        sigma = torch.sqrt(power * 10 ** (-snr / 10))
        shaped = torch.randn_like(x)
        if fam.spectrum[1]:
            shaped = _coloured(shaped, _between(fam.spectrum, n, x))
        if fam.streak[1]:
            shaped = _streaked(shaped, _between(fam.streak, n, x), _between((0.0, math.pi), n, x))
        noisy = x + sigma * shaped
        return torch.where(_chosen(fam.p, n, x), noisy, x).clamp_(0, 1)

    @FAMILIES.implements("gamma")
    def gamma(self, x: torch.Tensor) -> torch.Tensor:
        """Kornia's gamma with an exposure gain, per image."""
        return self._gamma(x) if self._gamma is not None else x

    @FAMILIES.implements("contrast")
    def contrast(self, x: torch.Tensor) -> torch.Tensor:
        """Contrast around each image's mean (Kornia's RandomContrast is a plain gain, which gamma has)."""
        fam = self.cfg.contrast
        n = x.shape[0]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = (x - mean) * _between(fam.factor, n, x) + mean
        return torch.where(_chosen(fam.p, n, x), out, x).clamp_(0, 1)

    @FAMILIES.implements("tone_curve")
    def tone_curve(self, x: torch.Tensor) -> torch.Tensor:
        """Each chosen image through its own random monotone curve (a camera's tone mapping, knee and
        shoulder, a badly set gain): piecewise linear, the slopes log-normal, the ends pinned to 0 and 1.

        Kornia has gamma, contrast and posterisation, not a free-form monotone curve; hence these lines.
        """
        fam = self.cfg.tone_curve
        n = x.shape[0]
        k = int(torch.randint(fam.knots[0], fam.knots[1] + 1, (1,)))  # one segment count per batch
        spread = _between(fam.spread, n, x).view(n, 1)
        slopes = torch.exp(spread * torch.randn(n, k, device=x.device, dtype=x.dtype))
        levels = torch.cat([torch.zeros_like(slopes[:, :1]), slopes.cumsum(1)], dim=1)
        levels = levels / levels[:, -1:]  # (n, k + 1), 0 .. 1, increasing
        pos = (x * k).flatten(1)
        seg = pos.floor().clamp_(0, k - 1)
        lo, hi = levels.gather(1, seg.long()), levels.gather(1, seg.long() + 1)
        out = (lo + (pos - seg) * (hi - lo)).view_as(x)
        return torch.where(_chosen(fam.p, n, x), out, x).clamp_(0, 1)


def family_views(x: torch.Tensor, cfg: RobustConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """``x`` under each family of ``cfg`` with ``p > 0`` alone, applied to every image (``p = 1``).

    What tuning's robust objective scores a model on: the training families' own breadth on validation
    images, never the evaluation corruptions. Drawn from ``seed`` inside a forked RNG, so the views are the
    same for every trial and the training run's random stream is left untouched.
    """
    views = {}
    off = {name: getattr(cfg, name).model_copy(update={"p": 0.0}) for name in ROBUST_FAMILIES}
    with torch.random.fork_rng(devices=[]):
        for name in ROBUST_FAMILIES:
            family = getattr(cfg, name)
            if not family.p:
                continue
            alone = RobustAugment(
                type(cfg)(enabled=True, **(off | {name: family.model_copy(update={"p": 1.0})}))
            )
            torch.manual_seed(seed)
            # in chunks: the illumination family holds one copy of the batch per field shape
            views[name] = torch.cat([alone(chunk.clone()) for chunk in x.split(64)]) if len(x) else x
    return views


def _coloured(white: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """White noise shaped to an isotropic power spectrum ``1/f^β`` (per image ``β``), unit std per image.

    β = 0 leaves it white (pixel noise); β = 1–2 gives grain and blotches a few pixels to a few tens wide,
    as sensor read-out, dust and surface haze make. Isotropic by construction: no direction is favoured.
    Kornia's noise is white only, hence these lines.
    """
    if not bool((beta > 0).any()):
        return white
    h, w = white.shape[-2:]
    fy = torch.fft.fftfreq(h, device=white.device, dtype=white.dtype).view(h, 1)
    fx = torch.fft.rfftfreq(w, device=white.device, dtype=white.dtype).view(1, -1)
    radius = torch.sqrt(fy**2 + fx**2).clamp_(min=1.0 / max(h, w))  # the DC term gets the lowest frequency's
    return _unit_std(torch.fft.irfft2(torch.fft.rfft2(white) * radius ** (-beta / 2), s=(h, w)))


def _streaked(noise: torch.Tensor, length: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Noise smeared along a direction: correlated over ``length`` (a fraction of the side) along ``angle``
    (radians from the x axis), unchanged across it; unit std per image. Length 0 leaves it as it was.

    A Gaussian low-pass on the frequency component along the direction, ``exp(−2π²ℓ²(f·u)²)``, the
    spectrum of a Gaussian smear ``ℓ`` pixels long. Streaks at any angle (scan lines, read-out and
    rolling marks, brushed texture): Kornia's noise is white only, hence these lines.
    """
    h, w = noise.shape[-2:]
    fy = torch.fft.fftfreq(h, device=noise.device, dtype=noise.dtype).view(1, 1, h, 1)
    fx = torch.fft.rfftfreq(w, device=noise.device, dtype=noise.dtype).view(1, 1, 1, -1)
    along = fx * torch.cos(angle) + fy * torch.sin(angle)
    pixels = length * max(h, w)
    smear = torch.exp(-2 * math.pi**2 * pixels**2 * along**2)
    return _unit_std(torch.fft.irfft2(torch.fft.rfft2(noise) * smear, s=(h, w)))


def _unit_std(noise: torch.Tensor) -> torch.Tensor:
    """Filtered noise made mean-free per channel and of unit std per image again."""
    noise = noise - noise.mean(dim=(-2, -1), keepdim=True)
    return noise / noise.std(dim=(1, 2, 3), keepdim=True).clamp_(min=1e-12)


# --- illumination fields: (N, 1, H, W) in [−1, 1] -------------------------------------------------------
# Kornia's illumination transforms are additive (a patch or ramp added to the image); lighting on a
# surface multiplies reflectance, and the shapes below (several sources, low-frequency fields) are not in
# Kornia, so these few lines make the multiplicative fields.


def _grid(n: int, h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates as fractions of the longer side, shaped to broadcast over (N, 1, H, W)."""
    side = max(h, w)
    ys = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5) / side
    xs = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5) / side
    return ys.view(1, 1, h, 1), xs.view(1, 1, 1, w)


def _bumps(n: int, h: int, w: int, like: torch.Tensor, k: int) -> torch.Tensor:
    """The sum of ``k`` Gaussian bumps per image, each with a centre (inside or just outside the image),
    a width of 0.1–0.6 of the side and a signed weight."""
    ys, xs = _grid(n, h, w, like)
    cy = _between((-0.2, h / max(h, w) + 0.2), n * k, like).view(n, k, 1, 1)
    cx = _between((-0.2, w / max(h, w) + 0.2), n * k, like).view(n, k, 1, 1)
    sigma = _between((0.1, 0.6), n * k, like).view(n, k, 1, 1)
    weight = _between((-1.0, 1.0), n * k, like).view(n, k, 1, 1)
    g = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
    return (weight * g).sum(dim=1, keepdim=True)


def _spot(n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    return _span(_bumps(n, h, w, like, 1))


def _multi_spot(n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    return _span(_bumps(n, h, w, like, 3))


def _gradient(n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    ys, xs = _grid(n, h, w, like)
    theta = _between((0.0, 2 * math.pi), n, like)
    return _span(torch.cos(theta) * xs + torch.sin(theta) * ys)


def _random_field(n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    cells = int(torch.randint(2, 6, (1,)))
    coarse = torch.randn(n, 1, cells, cells, device=like.device, dtype=like.dtype)
    return _span(F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False))


_FIELDS = {"spot": _spot, "multi_spot": _multi_spot, "gradient": _gradient, "random_field": _random_field}


def _span(f: torch.Tensor) -> torch.Tensor:
    """Rescale each image's field to span [−1, 1] exactly (a constant field becomes 0)."""
    lo = f.amin(dim=(-2, -1), keepdim=True)
    hi = f.amax(dim=(-2, -1), keepdim=True)
    return torch.where(hi > lo, 2 * (f - lo) / (hi - lo).clamp_(min=1e-12) - 1, torch.zeros_like(f))


# --- draws ---------------------------------------------------------------------------------------------


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, device=like.device, dtype=like.dtype)


def _between(span: tuple[float, float], n: int, like: torch.Tensor) -> torch.Tensor:
    lo, hi = span
    return lo + (hi - lo) * _uniform(n, like)


def _chosen(p: float, n: int, like: torch.Tensor) -> torch.Tensor:
    return _uniform(n, like) < p


def _coin(n: int, like: torch.Tensor) -> torch.Tensor:
    return (torch.rand(n, 1, 1, 1, device=like.device) < 0.5).expand_as(like)


def _odd(pixels: float) -> int:
    """The odd kernel size (at least 3, Kornia's smallest) that covers ``pixels``."""
    k = max(3, math.ceil(pixels))
    return k if k % 2 else k + 1
