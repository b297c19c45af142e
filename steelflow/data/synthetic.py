"""Procedural steel-surface images for the six NEU-CLS classes: the embedded default source.

A fresh clone needs no download: :func:`generate` writes a small, deterministic image set that the whole
pipeline runs on offline. Reads the ``data.synthetic`` params section (:class:`SyntheticConfig`).

Every image is a rolled-steel surface with one kind of defect drawn into it. The surface is the same
recipe for every class: streaks along the rolling direction, fine grain, slow uneven lighting and pixel
noise, each at a random strength. The finished image is then scaled to a mean brightness drawn
independently of the class, so brightness says nothing about the label and a classifier must learn shape.
Shapes are drawn with rolling along x; half the images are transposed, so it is horizontal or vertical.

The defects darken the surface (sizes are fractions of the image side; numbers in ``RECIPES``):

- ``crazing``: a network of fine dark cracks, the edges of a wavy Voronoi tessellation.
- ``inclusion``: a few dark elongated streaks, broken into strings, lying along the rolling direction.
- ``patches``: one to a few large dark blotches with ragged edges and a mottled inside.
- ``pitted_surface``: many small round dark pits, often crowded into one area.
- ``rolled-in_scale``: many scattered mid-sized flakes with ragged edges, slightly stretched by rolling.
- ``scratches``: a few long thin straight lines at any angle, spanning much of the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from steelflow.config import SyntheticConfig
from steelflow.data.images import save_png

CLASSES: tuple[str, ...] = (
    "crazing",
    "inclusion",
    "patches",
    "pitted_surface",
    "rolled-in_scale",
    "scratches",
)

Range = tuple[float, float]


@dataclass(frozen=True)
class Recipe:
    """The random ranges one class's defect is drawn from. Lengths are fractions of the image side."""

    count: tuple[int, int]  # crack cells, streaks, blotches, pits, flakes or lines (inclusive range)
    width: Range  # crack or line width; streak width; blotch, pit or flake radius
    depth: Range  # how much the defect darkens the surface: 0 not at all, 1 to black
    length: Range = (0.0, 0.0)  # streak or line length; flake stretch along rolling; 0 = unused
    strength: Range = (1.0, 1.0)  # each pit, flake or line's share of depth (flakes above 1 grow larger)


# Chosen by eye, so that each class reads as its NEU-CLS description and stays recognisable after
# shrinking to 64x64 (the thinnest lines are ~1 px at 200 px). tests/data/test_synthetic.py checks that.
RECIPES: dict[str, Recipe] = {
    "crazing": Recipe(count=(25, 60), width=(0.005, 0.01), depth=(0.4, 0.7)),
    "inclusion": Recipe(count=(2, 6), width=(0.007, 0.014), depth=(0.35, 0.65), length=(0.12, 0.35)),
    "patches": Recipe(count=(1, 4), width=(0.18, 0.3), depth=(0.3, 0.5)),
    "pitted_surface": Recipe(count=(40, 150), width=(0.008, 0.016), depth=(0.45, 0.75), strength=(0.6, 1.0)),
    "rolled-in_scale": Recipe(
        count=(25, 60), width=(0.012, 0.025), depth=(0.3, 0.55), length=(1.3, 2.2), strength=(0.7, 1.4)
    ),
    "scratches": Recipe(
        count=(1, 4), width=(0.004, 0.008), depth=(0.35, 0.6), length=(0.6, 1.0), strength=(0.7, 1.0)
    ),
}

# The surface, shared by all classes. Strengths are relative to the mean reflectance (1.0).
MEAN_BRIGHTNESS: Range = (70.0, 180.0)  # target image mean, gray levels, drawn regardless of class
STREAK_STRENGTH: Range = (0.02, 0.12)  # rolling streaks
STREAK_SIGMA = (0.6, 0.15)  # across (pixels), along (fraction of the side): long, thin streaks
GRAIN_STRENGTH: Range = (0.02, 0.07)
GRAIN_SIGMA = 1.0  # pixels
SHADING_STRENGTH: Range = (0.0, 0.2)  # slow, uneven lighting
SHADING_SIGMA = 0.25  # fraction of the side
NOISE_STD: Range = (2.0, 7.0)  # gray levels of pixel noise, added last
MIN_WIDTH_PX = 0.7  # thinner lines vanish into the noise at any size

# Shape details. Lengths are fractions of the image side.
PLACE: Range = (0.1, 0.9)  # where blotch and streak centres fall
PLACE_CENTRAL: Range = (0.25, 0.75)  # scratch midpoints and pit clusters: long or wide shapes stay in view
SEED_MARGIN = 0.1  # crazing seeds also fall this far outside the image, so that border cells close
CRACK_WOBBLE = (0.05, 0.012)  # smoothness (sigma) and amplitude of the warp that makes cracks wavy
EDGE_RAGGEDNESS = 0.4  # relative noise on blotch and flake fields before thresholding
EDGE_SOFTNESS = 0.15  # width of the thresholded edge, in units of the field
BLOTCH_EDGE_SIGMA = 0.03  # the scale of a blotch's ragged edge and of its mottling
FLAKE_EDGE_SIGMA = 0.015
PIT_CLUSTER_CHANCE = 0.6  # share of pitted images whose pits crowd around one spot
PIT_CLUSTER_SPREAD: Range = (0.15, 0.35)
STREAK_TILT = 0.05  # radians: inclusions lie almost exactly along rolling
# Darkness varying inside one defect: (mean, spread) of a smooth noise, clipped to [0, 1]
CRACK_FADING = (0.75, 0.5)  # cracks fade in and out
STRING_BREAKS = (0.6, 0.5)  # inclusions break into strings of spots
MOTTLING = (0.8, 0.2)  # blotches are uneven inside


def render(label: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One ``size`` x ``size`` uint8 grayscale image of class ``label``."""
    if label not in RECIPES:
        raise ValueError(f"unknown synthetic class {label!r}; expected one of {', '.join(CLASSES)}")
    recipe = RECIPES[label]
    surface = _surface(rng, size)
    defect = _DEFECTS[label](rng, size, recipe)
    image = surface * (1.0 - _uniform(rng, recipe.depth) * defect)
    image *= _uniform(rng, MEAN_BRIGHTNESS) / image.mean()
    image += rng.normal(0.0, _uniform(rng, NOISE_STD), image.shape)
    if rng.random() < 0.5:
        image = image.T
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate(out_dir: Path, cfg: SyntheticConfig, part: slice = slice(None)) -> list[tuple[Path, str]]:
    """Write ``out_dir/<class>/<class>_<i>.png`` for i = 1..``cfg.per_class``; return (path, label) pairs.
    ``part``: only that slice of :func:`listing` (one part of a Kubeflow ingest).

    Each image has its own seed, ``(cfg.seed, class index, i)``: the same config gives byte-identical
    files, and an image does not change when others are added or generated in another order.
    """
    out_dir = Path(out_dir)
    written = []
    for rel, label in listing(cfg)[part]:
        i = int(rel.stem.rsplit("_", 1)[1])
        rng = np.random.default_rng([cfg.seed, CLASSES.index(label), i])
        (out_dir / label).mkdir(parents=True, exist_ok=True)
        save_png(render(label, rng, cfg.image_size), out_dir / rel)
        written.append((out_dir / rel, label))
    return written


def listing(cfg: SyntheticConfig) -> list[tuple[Path, str]]:
    """What :func:`generate` writes, in its order: (``<class>/<class>_<i>.png``, class) pairs."""
    return [
        (Path(label) / f"{label}_{i}.png", label) for label in CLASSES for i in range(1, cfg.per_class + 1)
    ]


# --- the surface ------------------------------------------------------------------------------------


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """Reflectance around 1.0: rolling streaks along x, grain and slow shading."""
    streaks = _smooth_noise(rng, size, (STREAK_SIGMA[0], STREAK_SIGMA[1] * size))
    grain = _smooth_noise(rng, size, (GRAIN_SIGMA, GRAIN_SIGMA))
    shading = _smooth_noise(rng, size, (SHADING_SIGMA * size, SHADING_SIGMA * size))
    return (
        1.0
        + _uniform(rng, STREAK_STRENGTH) * streaks
        + _uniform(rng, GRAIN_STRENGTH) * grain
        + _uniform(rng, SHADING_STRENGTH) * shading
    )


# --- the defects: each returns a darkness map in [0, 1] -----------------------------------------------


def _crazing(rng: np.random.Generator, size: int, recipe: Recipe) -> np.ndarray:
    """Cracks along the edges of the Voronoi cells of random seeds, in a gently warped frame."""
    seeds = rng.uniform(-SEED_MARGIN * size, (1 + SEED_MARGIN) * size, (_count(rng, recipe), 2))
    yy, xx = _grid(size)
    wobble = CRACK_WOBBLE[1] * size
    sigma = CRACK_WOBBLE[0] * size
    yy = yy + wobble * _smooth_noise(rng, size, (sigma, sigma))
    xx = xx + wobble * _smooth_noise(rng, size, (sigma, sigma))
    first, second = _two_nearest(yy, xx, seeds)
    # distance to the bisector of the two nearest seeds: the cell edge, even near corners where 3 meet
    p, q = seeds[first], seeds[second]
    spacing = np.hypot(*np.moveaxis(q - p, -1, 0))
    near = (yy - p[..., 0]) ** 2 + (xx - p[..., 1]) ** 2
    far = (yy - q[..., 0]) ** 2 + (xx - q[..., 1]) ** 2
    cracks = np.exp(-(((far - near) / (2 * spacing * _width_px(rng, recipe, size))) ** 2))
    return cracks * _vary(_smooth_noise(rng, size, (sigma, sigma)), CRACK_FADING)


def _inclusion(rng: np.random.Generator, size: int, recipe: Recipe) -> np.ndarray:
    """Dark streaks along x, their darkness wandering along their length so they break into strings."""
    width = _width_px(rng, recipe, size)
    points, heights = [], []
    for _ in range(_count(rng, recipe)):
        cy, cx = _place(rng, size, PLACE)
        tilt = rng.uniform(-STREAK_TILT, STREAK_TILT)
        along = np.arange(-0.5, 0.5, 1 / size) * _uniform(rng, recipe.length) * size  # one dot per pixel
        points.append(np.stack([cy + along * np.sin(tilt), cx + along * np.cos(tilt)], axis=1))
        wander = ndimage.gaussian_filter1d(rng.standard_normal(len(along)), 2 * width)  # spots ~4 wide
        heights.append(_vary(wander / (wander.std() + 1e-12), STRING_BREAKS))
    # a line of dots one pixel apart sums to sqrt(2 pi) * width times one dot's peak: undo that
    line_heights = np.concatenate(heights) / (np.sqrt(2 * np.pi) * width)
    return _stamp(np.concatenate(points), line_heights, size, (width, width))


def _patches(rng: np.random.Generator, size: int, recipe: Recipe) -> np.ndarray:
    """A few large soft blobs, thresholded with ragged edges and mottled inside."""
    yy, xx = _grid(size)
    field = np.zeros((size, size))
    for _ in range(_count(rng, recipe)):
        cy, cx = _place(rng, size, PLACE)
        radius = _uniform(rng, recipe.width) * size
        field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2)
    blotches = _ragged(rng, size, field, BLOTCH_EDGE_SIGMA)
    mottling = _smooth_noise(rng, size, (BLOTCH_EDGE_SIGMA * size, BLOTCH_EDGE_SIGMA * size))
    return blotches * _vary(mottling, MOTTLING)


def _pitted_surface(rng: np.random.Generator, size: int, recipe: Recipe) -> np.ndarray:
    """Many small round pits; in most images they crowd around one spot."""
    n = _count(rng, recipe)
    if rng.random() < PIT_CLUSTER_CHANCE:
        centre = _place(rng, size, PLACE_CENTRAL)
        points = rng.normal(centre, _uniform(rng, PIT_CLUSTER_SPREAD) * size, (n, 2))
    else:
        points = rng.uniform(0, size, (n, 2))
    radius = _width_px(rng, recipe, size)
    return _stamp(points, rng.uniform(*recipe.strength, n), size, (radius, radius))


def _rolled_in_scale(rng: np.random.Generator, size: int, recipe: Recipe) -> np.ndarray:
    """Scattered flakes: soft dots stretched along x, thresholded with ragged edges."""
    n = _count(rng, recipe)
    points = rng.uniform(0, size, (n, 2))
    radius = _width_px(rng, recipe, size)
    stretch = _uniform(rng, recipe.length)
    field = _stamp(points, rng.uniform(*recipe.strength, n), size, (radius, radius * stretch))
    return _ragged(rng, size, field, FLAKE_EDGE_SIGMA)


def _scratches(rng: np.random.Generator, size: int, recipe: Recipe) -> np.ndarray:
    """A few long thin straight lines at any angle, each a little lighter or darker than the others."""
    yy, xx = _grid(size)
    field = np.zeros((size, size))
    for _ in range(_count(rng, recipe)):
        centre = _place(rng, size, PLACE_CENTRAL)
        angle = rng.uniform(0.0, np.pi)
        half = 0.5 * _uniform(rng, recipe.length) * size * np.array([np.sin(angle), np.cos(angle)])
        distance = _distance_to_segment(yy, xx, centre - half, centre + half)
        line = np.exp(-((distance / _width_px(rng, recipe, size)) ** 2))
        field = np.maximum(field, _uniform(rng, recipe.strength) * line)
    return field


_DEFECTS: dict[str, Callable[[np.random.Generator, int, Recipe], np.ndarray]] = {
    "crazing": _crazing,
    "inclusion": _inclusion,
    "patches": _patches,
    "pitted_surface": _pitted_surface,
    "rolled-in_scale": _rolled_in_scale,
    "scratches": _scratches,
}


# --- building blocks --------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, sigma: tuple[float, float]) -> np.ndarray:
    """Gaussian-smoothed white noise with zero mean and unit spread; ``sigma`` in pixels per axis (y, x).

    Wide smoothing is done on a coarser grid and interpolated up: the same look at a fraction of the cost.
    """
    step = [max(1, int(s // 2)) for s in sigma]
    if step == [1, 1]:
        field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    else:
        coarse_shape = [size // k + 2 for k in step]
        coarse_sigma = [s / k for s, k in zip(sigma, step, strict=True)]
        coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), coarse_sigma, mode="wrap")
        field = _upsampler(size, coarse_shape[0]) @ coarse @ _upsampler(size, coarse_shape[1]).T
    return (field - field.mean()) / (field.std() + 1e-12)


@lru_cache(maxsize=16)
def _upsampler(size: int, n: int) -> np.ndarray:
    """The (size, n) matrix that linearly interpolates n samples, spread over the image, onto size pixels."""
    position = np.linspace(0, n - 1, size)
    return np.maximum(0.0, 1.0 - np.abs(position[:, None] - np.arange(n)))


def _two_nearest(yy: np.ndarray, xx: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest and second-nearest seed (rows of ``seeds``, as (y, x)) for every pixel."""
    pixels = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float32)  # float32: ranks only
    points = seeds.astype(np.float32)
    # squared distance less |pixel|^2, which is the same for every seed and so keeps the order: one matmul
    rank = pixels @ (-2 * points.T)
    rank += (points**2).sum(axis=1)
    first = rank.argmin(axis=1)
    rank[np.arange(len(rank)), first] = np.inf
    return first.reshape(yy.shape), rank.argmin(axis=1).reshape(yy.shape)


def _stamp(points: np.ndarray, heights: np.ndarray, size: int, sigma: tuple[float, float]) -> np.ndarray:
    """Gaussian dots of peak ``heights`` at ``points`` (y, x), clipped to [0, 1] where they overlap."""
    impulses = np.zeros((size, size))
    inside = np.all((points >= 0) & (points < size), axis=1)
    rows, cols = points[inside].astype(int).T
    np.add.at(impulses, (rows, cols), heights[inside])
    dots = ndimage.gaussian_filter(impulses, sigma, mode="constant") * (2 * np.pi * sigma[0] * sigma[1])
    return np.clip(dots, 0.0, 1.0)


def _ragged(rng: np.random.Generator, size: int, field: np.ndarray, edge_sigma: float) -> np.ndarray:
    """Threshold a smooth field at one half after roughening it, leaving a soft edge.

    The roughening is relative, so it frays the edges without sprinkling spots on the bare surface.
    """
    rough = field * (1.0 + EDGE_RAGGEDNESS * _smooth_noise(rng, size, (edge_sigma * size, edge_sigma * size)))
    return np.clip((rough - 0.5) / EDGE_SOFTNESS, 0.0, 1.0)


def _vary(noise: np.ndarray, level: tuple[float, float]) -> np.ndarray:
    """Darkness ``mean + spread * noise`` for ``level = (mean, spread)``, kept in [0, 1]."""
    return np.clip(level[0] + level[1] * noise, 0.0, 1.0)


def _distance_to_segment(yy: np.ndarray, xx: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    direction = end - start
    t = ((yy - start[0]) * direction[0] + (xx - start[1]) * direction[1]) / max(direction @ direction, 1e-12)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(yy - (start[0] + t * direction[0]), xx - (start[1] + t * direction[1]))


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    yy.flags.writeable = xx.flags.writeable = False  # shared between calls
    return yy, xx


def _place(rng: np.random.Generator, size: int, bounds: Range) -> np.ndarray:
    """A random point (y, x) within ``bounds`` (fractions of the side) on both axes."""
    return rng.uniform(bounds[0] * size, bounds[1] * size, 2)


def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(*bounds))


def _count(rng: np.random.Generator, recipe: Recipe) -> int:
    return int(rng.integers(recipe.count[0], recipe.count[1], endpoint=True))


def _width_px(rng: np.random.Generator, recipe: Recipe, size: int) -> float:
    return max(MIN_WIDTH_PX, _uniform(rng, recipe.width) * size)
