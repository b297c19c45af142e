"""The synthetic source: deterministic files, the NEU-CLS class names, and images whose class lies in shape.

The last two tests are data tests on a sample of rendered images: brightness must not give the class away,
and a cheap shape-only model must still tell the classes apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from steelflow.config import SyntheticConfig
from steelflow.data.sources import NEU_PREFIXES
from steelflow.data.synthetic import CLASSES, generate, render

SAMPLE_PER_CLASS = 30  # rendered images per class for the data tests; half train, half held out
SAMPLE_SIZE = 128


def _bytes_by_name(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


@pytest.fixture(scope="module")
def small_cfg() -> SyntheticConfig:
    return SyntheticConfig(per_class=2, image_size=64, seed=3)


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """(images, labels): SAMPLE_PER_CLASS images of each class, seeded as ``generate`` seeds them."""
    images, labels = [], []
    for k, label in enumerate(CLASSES):
        for i in range(1, SAMPLE_PER_CLASS + 1):
            images.append(render(label, np.random.default_rng([0, k, i]), SAMPLE_SIZE))
            labels.append(k)
    return np.stack(images), np.array(labels)


def _halves(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alternate images of each class go to train and to test."""
    train = np.arange(len(labels)) % 2 == 0
    return train, ~train


# --- the interface ----------------------------------------------------------------------------------


def test_classes_are_the_neu_cls_names_in_order() -> None:
    # The same names a real NEU-CLS folder gets, so synthetic and real runs are comparable.
    assert tuple(NEU_PREFIXES.values()) == CLASSES


def test_generate_writes_per_class_pngs_named_by_class_and_index(tmp_path: Path, small_cfg) -> None:
    written = generate(tmp_path / "out", small_cfg)

    expected = [
        (tmp_path / "out" / label / f"{label}_{i}.png", label)
        for label in CLASSES
        for i in range(1, small_cfg.per_class + 1)
    ]
    assert written == expected
    for label in CLASSES:
        assert len(list((tmp_path / "out" / label).iterdir())) == small_cfg.per_class
    for path, _ in written:
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "L", (64, 64))


def test_same_config_gives_byte_identical_files(tmp_path: Path, small_cfg) -> None:
    generate(tmp_path / "a", small_cfg)
    generate(tmp_path / "b", small_cfg)

    assert _bytes_by_name(tmp_path / "a") == _bytes_by_name(tmp_path / "b")


def test_each_image_is_seeded_on_its_own(tmp_path: Path, small_cfg) -> None:
    more = small_cfg.model_copy(update={"per_class": small_cfg.per_class + 1})
    generate(tmp_path / "few", small_cfg)
    generate(tmp_path / "more", more)

    few, extended = _bytes_by_name(tmp_path / "few"), _bytes_by_name(tmp_path / "more")
    assert {name: extended[name] for name in few} == few


def test_another_seed_gives_other_images(tmp_path: Path, small_cfg) -> None:
    generate(tmp_path / "a", small_cfg)
    generate(tmp_path / "b", small_cfg.model_copy(update={"seed": small_cfg.seed + 1}))

    a, b = _bytes_by_name(tmp_path / "a"), _bytes_by_name(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[name] != b[name] for name in a)


@pytest.mark.parametrize("size", [32, 97, 200])
@pytest.mark.parametrize("label", CLASSES)
def test_render_gives_square_uint8_images_of_the_asked_size(label: str, size: int) -> None:
    image = render(label, np.random.default_rng(0), size)

    assert image.shape == (size, size)
    assert image.dtype == np.uint8
    assert image.std() > 1  # not blank


def test_unknown_class_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'rust'"):
        render("rust", np.random.default_rng(0), 64)


# --- the data: brightness says nothing, shape says a lot ----------------------------------------------


def test_class_brightness_ranges_overlap(sample) -> None:
    images, labels = sample
    means = images.mean(axis=(1, 2))
    lows = [means[labels == k].min() for k in range(len(CLASSES))]
    highs = [means[labels == k].max() for k in range(len(CLASSES))]
    assert max(lows) < min(highs), "some class is brighter or darker than every image of another class"

    # nearest class mean of brightness, fit on one half and scored on the other: close to chance (1/6)
    train, test = _halves(labels)
    centres = np.array([means[train & (labels == k)].mean() for k in range(len(CLASSES))])
    predicted = np.abs(means[test, None] - centres).argmin(axis=1)
    assert (predicted == labels[test]).mean() < 0.45


def _shape_features(image: np.ndarray) -> np.ndarray:
    """Generic texture statistics, blind to brightness and position.

    Band-pass (difference of Gaussians) responses at four scales summarised by their dark tail and spread,
    and how line-like the local gradients are (structure-tensor coherence) at two scales.
    """
    x = image.astype(float)
    x -= ndimage.gaussian_filter(x, 16)
    x /= x.std() + 1e-9
    features = []
    for sigma in (1, 2, 4, 8):
        smooth = ndimage.gaussian_filter(x, sigma)
        band = smooth - ndimage.gaussian_filter(x, 2 * sigma)
        features += [*np.quantile(band, (0.005, 0.02, 0.1)), band.std()]
        if sigma in (1, 4):
            gy, gx = np.gradient(smooth)
            jxx, jyy, jxy = (ndimage.gaussian_filter(g, 2 * sigma) for g in (gx * gx, gy * gy, gx * gy))
            coherence = np.hypot(jxx - jyy, 2 * jxy) / (jxx + jyy + 1e-9)
            features += [*np.quantile(coherence, (0.5, 0.9))]
    return np.array(features)


def test_classes_are_told_apart_by_shape_with_a_cheap_model(sample) -> None:
    images, labels = sample
    features = np.array([_shape_features(im) for im in images])
    train, test = _halves(labels)
    features = (features - features[train].mean(axis=0)) / (features[train].std(axis=0) + 1e-9)

    # one nearest neighbour among the training half; chance is 1/6
    distances = ((features[test, None] - features[None, train]) ** 2).sum(axis=-1)
    predicted = labels[train][distances.argmin(axis=1)]
    accuracy = (predicted == labels[test]).mean()
    assert accuracy >= 0.6, f"held-out accuracy {accuracy:.2f} on shape features"
