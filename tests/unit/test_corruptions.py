"""Fu-style corruptions: what each one does to an image, how it is seeded, and what it refuses."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from steelflow.config import BlurCondition, LuminanceCondition, NoiseCondition
from steelflow.data import corruptions
from steelflow.data.corruptions import apply, luminance, motion_blur, motion_kernel, noise, rng_for
from tests.support.helpers import REPO

SHA_A = hashlib.sha256(b"image a").hexdigest()
SHA_B = hashlib.sha256(b"image b").hexdigest()


def textured(seed: int = 0, size: int = 200, channels: int = 0) -> np.ndarray:
    """A mid-gray steel-like texture with values in about 60..200: smooth bands plus grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    base = 130 + 45 * np.sin(x / 7.0 + seed) * np.cos(y / 11.0)
    img = np.clip(base + rng.normal(0, 10, (size, size)), 60, 200)
    if channels:
        img = np.stack([img * (0.9 + 0.05 * c) for c in range(channels)], axis=-1)
    return np.rint(img).astype(np.uint8)


def snr_db(original: np.ndarray, corrupted: np.ndarray) -> float:
    i = original.astype(np.float64)
    return float(10 * np.log10(np.mean(i**2) / np.mean((corrupted.astype(np.float64) - i) ** 2)))


def total_variation(img: np.ndarray) -> float:
    i = img.astype(np.float64)
    return float(np.abs(np.diff(i, axis=0)).sum() + np.abs(np.diff(i, axis=1)).sum())


# --- noise ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [20.0, 35.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_hits_the_target_snr_within_half_a_db(target, seed):
    img = textured(seed)
    out = noise(img, target, np.random.default_rng(seed))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert abs(snr_db(img, out) - target) < 0.5


def test_noise_on_colour_is_measured_over_all_channels():
    img = textured(3, channels=3)
    out = noise(img, 20.0, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert abs(snr_db(img, out) - 20.0) < 0.5


def test_lower_snr_means_more_noise():
    img = textured()
    assert snr_db(img, noise(img, 20, np.random.default_rng(0))) < snr_db(
        img, noise(img, 35, np.random.default_rng(0))
    )


# --- motion blur ------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0.5, 1, 1.5, 2, 2.7, 3, 4, 5, 7.25, 10, 31])
def test_motion_kernels_are_non_negative_odd_centred_and_sum_to_one(length):
    for angle in np.linspace(0, 360, 37):
        k = motion_kernel(length, angle)
        assert k.ndim == 2 and k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1, (length, angle, k.shape)
        assert (k >= 0).all()
        assert k.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.allclose(k, k[::-1, ::-1])  # point-symmetric: the blur does not shift the image
        assert k[k.shape[0] // 2, k.shape[1] // 2] == k.max()


def test_kernels_match_matlab_fspecial_motion_along_the_axes():
    # fspecial('motion', 5, 0) and fspecial('motion', 2, 0) in MATLAB
    assert np.allclose(motion_kernel(5, 0), np.full((1, 5), 0.2))
    assert np.allclose(motion_kernel(2, 0), [[0.25, 0.5, 0.25]])
    assert np.allclose(motion_kernel(5, 90), np.full((5, 1), 0.2))


def test_a_horizontal_kernel_smooths_only_along_rows():
    k = motion_kernel(5, 0)
    assert np.count_nonzero(k.any(axis=1)) == 1
    stripes = np.repeat(textured()[:, :1], 200, axis=1)  # constant along each row, varying down columns
    assert np.array_equal(corruptions.convolve(stripes, k), stripes)
    assert not np.array_equal(corruptions.convolve(stripes.T.copy(), k), stripes.T)


def test_kernel_length_grows_with_length():
    spans = [motion_kernel(length, 30).shape[1] for length in (2, 5, 9, 15)]
    assert spans == sorted(spans) and spans[0] < spans[-1]


@pytest.mark.parametrize("length", [1, 0.5])
def test_length_one_is_a_single_pixel_and_leaves_the_image_unchanged(length):
    assert np.array_equal(motion_kernel(length, 37.0), [[1.0]])
    img = textured()
    assert np.array_equal(motion_blur(img, length, np.random.default_rng(0)), img)


def test_motion_blur_smooths_and_keeps_a_flat_image_flat():
    img = textured()
    out = motion_blur(img, 5, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert total_variation(out) < 0.8 * total_variation(img)
    flat = np.full((30, 40), 117, np.uint8)
    assert np.array_equal(motion_blur(flat, 5, np.random.default_rng(1)), flat)


def test_motion_blur_is_the_kernel_convolution():
    img = textured(size=64)
    out = motion_blur(img, 5, np.random.default_rng(7))
    angle = np.random.default_rng(7).uniform(0.0, 180.0)
    expected = ndimage.convolve(img.astype(float), motion_kernel(5, angle), mode="nearest")
    assert np.array_equal(out, np.clip(np.rint(expected), 0, 255).astype(np.uint8))


# --- luminance --------------------------------------------------------------------------------------


def test_alpha_zero_returns_the_image_unchanged():
    img = textured()
    out = luminance(img, 0.0, np.random.default_rng(0))
    assert np.array_equal(out, img) and out.dtype == np.uint8
    assert out is not img


@pytest.mark.parametrize("seed", range(5))
def test_alpha_one_lightens_some_regions_and_darkens_others(seed):
    img = np.full((100, 120), 128, np.uint8)
    out = luminance(img, 1.0, np.random.default_rng(seed)).astype(int)
    assert (out > 128).mean() > 0.01 and (out < 128).mean() > 0.01
    assert out.max() == 255 and out.min() == 0  # the spotlight's peak doubles, its far edge goes black
    assert len(np.unique(out)) > 50  # a smooth ramp, not a few levels


def test_the_gain_stays_within_one_plus_minus_alpha_and_is_smooth():
    img = np.full((80, 80), 100, np.uint8)
    out = luminance(img, 0.4, np.random.default_rng(3)).astype(float)
    assert out.min() >= 60 - 0.5 and out.max() <= 140 + 0.5
    assert out.max() - out.min() > 40  # the field spans [-1, 1], so the gain spans the whole range
    assert np.abs(np.diff(out, axis=0)).max() <= 3 and np.abs(np.diff(out, axis=1)).max() <= 3


def test_spotlight_spans_minus_one_to_one():
    f = corruptions.spotlight((50, 70), np.random.default_rng(0))
    assert f.shape == (50, 70)
    assert f.min() == pytest.approx(-1) and f.max() == pytest.approx(1)
    assert np.array_equal(corruptions.spotlight((1, 1), np.random.default_rng(0)), np.zeros((1, 1)))


# --- colour -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda img, rng: luminance(img, 1.0, rng),
        lambda img, rng: noise(img, 20, rng),
        lambda img, rng: motion_blur(img, 5, rng),
    ],
    ids=["luminance", "noise", "blur"],
)
def test_colour_images_keep_shape_and_dtype(corrupt):
    img = textured(channels=3, size=60)
    out = corrupt(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)


@pytest.mark.parametrize("corrupt", [luminance, motion_blur], ids=["luminance", "blur"])
def test_colour_channels_get_the_same_field_or_kernel(corrupt):
    gray = textured(size=60)
    colour = np.stack([gray] * 3, axis=-1)
    amount = 1.0 if corrupt is luminance else 5
    out = corrupt(colour, amount, np.random.default_rng(4))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert np.array_equal(out[..., 0], corrupt(gray, amount, np.random.default_rng(4)))


# --- seeding and dispatch ---------------------------------------------------------------------------

CONDITIONS = [
    LuminanceCondition(name="luminance_1", kind="luminance", alpha=1.0),
    NoiseCondition(name="noise_20db", kind="noise", snr_db=20),
    BlurCondition(name="blur_5px", kind="blur", length=5),
]


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.kind)
def test_same_seed_sha_and_name_give_identical_output_and_a_new_sha_does_not(condition):
    img = textured(size=64)
    first = apply(img, condition, rng_for(0, SHA_A, condition.name))
    assert np.array_equal(first, apply(img, condition, rng_for(0, SHA_A, condition.name)))
    assert not np.array_equal(first, apply(img, condition, rng_for(0, SHA_B, condition.name)))


def test_rng_for_separates_seed_sha_and_name():
    def draw(*args):
        return rng_for(*args).integers(0, 2**63, 4).tolist()

    base = draw(0, SHA_A, "noise_20db")
    assert draw(0, SHA_A.upper(), "noise_20db") == base
    others = [draw(1, SHA_A, "noise_20db"), draw(-1, SHA_A, "noise_20db"), draw(0, SHA_B, "noise_20db")]
    others.append(draw(0, SHA_A, "noise_35db"))
    assert all(o != base for o in others)
    assert len({tuple(o) for o in others}) == len(others)


def test_rng_for_does_not_depend_on_the_process():
    """Python's hash() of a str changes per process; the generator must not."""
    code = f"from steelflow.data.corruptions import rng_for as r; print(r(3, '{SHA_A}', 'blur_5px').random())"
    outs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout.strip())
    assert outs == {repr(rng_for(3, SHA_A, "blur_5px").random())}


@pytest.mark.parametrize(
    ("condition", "direct"),
    [
        (CONDITIONS[0], lambda img, rng: luminance(img, 1.0, rng)),
        (CONDITIONS[1], lambda img, rng: noise(img, 20, rng)),
        (CONDITIONS[2], lambda img, rng: motion_blur(img, 5, rng)),
    ],
    ids=lambda c: getattr(c, "kind", ""),
)
def test_apply_dispatches_on_the_condition_kind(condition, direct):
    img = textured(size=64)
    via_apply = apply(img, condition, rng_for(0, SHA_A, condition.name))
    assert np.array_equal(via_apply, direct(img, rng_for(0, SHA_A, condition.name)))


def test_the_input_image_is_never_modified():
    img = textured(size=64)
    before = img.copy()
    for condition in CONDITIONS:
        apply(img, condition, rng_for(0, SHA_A, condition.name))
    assert np.array_equal(img, before)


# --- bad input --------------------------------------------------------------------------------------

RNG = np.random.default_rng(0)
GRAY = np.zeros((8, 8), np.uint8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: luminance(GRAY.astype(np.float32), 0.4, RNG), "float32"),
        (lambda: noise(GRAY.astype(np.uint16), 20, RNG), "uint16"),
        (lambda: motion_blur(np.zeros(8, np.uint8), 5, RNG), r"\(8,\)"),
        (lambda: luminance(np.zeros((2, 8, 8, 3), np.uint8), 0.4, RNG), r"\(2, 8, 8, 3\)"),
        (lambda: noise(np.zeros((0, 8), np.uint8), 20, RNG), r"\(0, 8\)"),
        (lambda: luminance([[1, 2]], 0.4, RNG), "list"),
        (lambda: luminance(GRAY, -0.4, RNG), "-0.4"),
        (lambda: luminance(GRAY, float("nan"), RNG), "nan"),
        (lambda: noise(GRAY, float("inf"), RNG), "inf"),
        (lambda: motion_kernel(0, 0), "length.*0"),
        (lambda: motion_kernel(-3, 0), "-3"),
        (lambda: motion_kernel(5, float("nan")), "angle_deg.*nan"),
        (lambda: motion_blur(GRAY, "long", RNG), "'long'"),
        (lambda: rng_for(0, "not-a-sha", "noise_20db"), "not-a-sha"),
        (lambda: rng_for(0, SHA_A[:-1], "noise_20db"), SHA_A[:-1]),
        (lambda: rng_for(0.5, SHA_A, "noise_20db"), "0.5"),
        (lambda: rng_for(0, SHA_A, ""), "''"),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- the newer hold-out kinds -----------------------------------------------------------------------


def test_speckle_grows_with_brightness_and_leaves_black_black():
    img = np.concatenate([np.full((64, 32), 40, np.uint8), np.full((64, 32), 160, np.uint8)], axis=1)
    img[:8] = 0
    out = corruptions.speckle(img, 0.2, np.random.default_rng(0)).astype(np.float64)
    assert (out[:8] == 0).all()  # multiplicative: nothing to scale
    dark, bright = out[8:, :32].std(), out[8:, 32:].std()
    assert 0.15 * 40 < dark < 0.25 * 40 and 0.15 * 160 < bright < 0.25 * 160


@pytest.mark.parametrize("bits", [1, 3, 7])
def test_posterize_keeps_two_to_the_bits_levels_each_in_its_bins_middle(bits):
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = corruptions.posterize(img, bits)
    assert out.dtype == np.uint8 and len(np.unique(out)) == 2**bits
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 2 ** (8 - bits) // 2
    assert np.array_equal(corruptions.posterize(img, 8), img)


def test_elastic_moves_pixels_by_at_most_the_displacement_and_keeps_the_grey_levels():
    img = textured(size=100)
    out = corruptions.elastic(img, 0.03, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    # a warp, not a tone change: the histogram barely moves
    assert abs(float(out.mean()) - float(img.mean())) < 2 and abs(float(out.std()) - float(img.std())) < 3
    # every output pixel lies within the image's values in a (3 + 1) px neighbourhood of where it was
    lo = ndimage.minimum_filter(img, size=2 * 4 + 1, mode="nearest")
    hi = ndimage.maximum_filter(img, size=2 * 4 + 1, mode="nearest")
    assert ((out >= lo) & (out <= hi)).all()
    colour = np.stack([img] * 3, axis=-1)
    coloured = corruptions.elastic(colour, 0.03, np.random.default_rng(1))
    assert all(np.array_equal(coloured[..., c], out) for c in range(3))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: corruptions.speckle(GRAY, -0.1, RNG), "-0.1"),
        (lambda: corruptions.posterize(GRAY, 0), "bits.*0"),
        (lambda: corruptions.elastic(GRAY, float("nan"), RNG), "displacement.*nan"),
    ],
)
def test_new_holdout_kinds_refuse_bad_values_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_every_kind_in_params_yaml_corrupts_through_apply_keeping_shape_and_dtype():
    from steelflow.config import CONDITION_KINDS, load_params

    conditions = load_params(REPO / "params.yaml").corrupt.all_conditions
    assert {c.kind for c in conditions} == set(CONDITION_KINDS)  # the default profile shows every kind
    img = textured(size=64)
    for c in conditions:
        out = apply(img, c, rng_for(0, SHA_A, c.name))
        assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img), c.name


def test_apply_refuses_an_unknown_kind():
    class Fog:
        kind = "fog"
        name = "fog"

    with pytest.raises(ValueError, match="'fog'"):
        apply(GRAY, Fog(), RNG)


# --- every registered kind (steelflow.config.CONDITIONS): a new kind is covered without being listed ----


def example(kind: str) -> object:
    """A valid condition of ``kind``: each parameter at the middle of its allowed range."""
    from steelflow.config import CONDITIONS

    cls = CONDITIONS.config(kind)
    values: dict[str, object] = {"name": f"{kind}_example", "kind": kind}
    for name, field in cls.model_fields.items():
        if name in values:
            continue
        bounds = {k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
        low, high = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
        middle = (low + high) / 2
        values[name] = round(middle) if field.annotation in (int, "int") else middle
    return cls(**values)


def _kinds() -> tuple[str, ...]:
    from steelflow.config import CONDITIONS

    return CONDITIONS.names


def test_every_registered_kind_has_its_function():
    from steelflow.config import CONDITIONS

    assert CONDITIONS.unimplemented() == ()
    assert list(CONDITIONS.functions()) == list(CONDITIONS.names)


@pytest.mark.parametrize("channels", [0, 3])
@pytest.mark.parametrize("kind", _kinds())
def test_every_registered_kind_keeps_shape_dtype_and_range_and_is_deterministic_per_seed(kind, channels):
    img = textured(size=64, channels=channels)
    condition = example(kind)
    out = apply(img, condition, rng_for(0, SHA_A, condition.name))
    again = apply(img, condition, rng_for(0, SHA_A, condition.name))
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert np.array_equal(out, again)
    assert np.array_equal(img, textured(size=64, channels=channels))  # the input is left as it was
