"""Robust training's augmentation families: each keeps the batch a valid image batch, is seeded, is
broader than nothing, and training never touches the evaluation's corruptions."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from steelflow.config import FAMILIES as REGISTRY
from steelflow.config import ROBUST_FAMILIES, AugmentConfig, RobustConfig
from steelflow.data.augment import RobustAugment, augment

FAMILIES = ROBUST_FAMILIES  # every registered family: a new one is covered without being listed
SHAPES = ("spot", "multi_spot", "gradient", "random_field", "glare")


def _only(family: str, **changes) -> RobustConfig:
    """Robust training with one family always on and every other family off."""
    base = RobustConfig(enabled=True)
    update = {f: getattr(base, f).model_copy(update={"p": 1.0 if f == family else 0.0}) for f in FAMILIES}
    if changes:
        update[family] = update[family].model_copy(update=changes)
    return base.model_copy(update=update)


def _batch(channels: int = 1, side: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.2 + 0.6 * torch.rand(8, channels, side, side, generator=g)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_keeps_shape_dtype_and_range_and_changes_the_images(family, channels):
    x = _batch(channels)
    torch.manual_seed(1)
    y = RobustAugment(_only(family))(x.clone())
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0 and torch.isfinite(y).all()
    changed = (y - x).abs().flatten(1).amax(1) > 1e-3
    assert changed.all(), f"{family}: {int(changed.sum())} of {len(x)} images changed"


def test_every_registered_family_is_a_field_of_train_robust_and_has_its_function():
    assert set(FAMILIES) >= {"overlay", "illumination", "gamma", "contrast", "tone_curve", "noise"}
    assert REGISTRY.unimplemented() == ()
    assert sorted(REGISTRY.functions()) == sorted(FAMILIES)
    # the families, in registration order, between the switch and the consistency loss
    assert list(RobustConfig.model_fields) == ["enabled", *FAMILIES, "consistency"]
    for family in FAMILIES:
        assert getattr(RobustConfig(), family) == REGISTRY.default(family)


def test_a_batch_goes_through_no_family_whose_p_is_zero():
    off = RobustConfig(enabled=True).model_copy(
        update={f: getattr(RobustConfig(), f).model_copy(update={"p": 0.0}) for f in FAMILIES}
    )
    x = _batch()
    assert torch.equal(RobustAugment(off)(x.clone()), x)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_illumination_shape_is_smooth_and_uneven(shape):
    x = torch.full((6, 1, 64, 64), 0.5)  # a flat grey surface shows the field alone
    torch.manual_seed(2)
    y = RobustAugment(_only("illumination", shapes=(shape,), strength=(0.8, 0.8)))(x)
    spread = y.flatten(1).amax(1) - y.flatten(1).amin(1)
    assert (spread > 0.08).all(), spread  # uneven: part of the image lit, part dimmed
    step = (y[..., 1:] - y[..., :-1]).abs().amax()
    assert step < 0.1, step  # smooth: neighbouring pixels differ little


def test_strength_past_one_blacks_out_part_of_the_image():
    x = torch.full((8, 1, 64, 64), 0.5)
    torch.manual_seed(3)
    y = RobustAugment(_only("illumination", shapes=("spot",), strength=(1.3, 1.3)))(x)
    black = (y < 0.01).flatten(1).float().mean(1)
    assert (black > 0).all(), black


def test_noise_follows_the_snr_it_draws():
    x = _batch()
    torch.manual_seed(4)
    y = RobustAugment(_only("noise", snr_db=(20.0, 20.0)))(x)
    snr = 10 * torch.log10(x.pow(2).mean() / (y - x).pow(2).mean())
    assert abs(float(snr) - 20.0) < 1.0


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_coloured_noise_keeps_its_snr_grows_grain_and_favours_no_direction(beta):
    x = _batch(side=96)
    torch.manual_seed(5)
    y = RobustAugment(_only("noise", snr_db=(20.0, 20.0), spectrum=(beta, beta), streak=(0.0, 0.0)))(x)
    d = y - x
    snr = 10 * torch.log10(x.pow(2).mean() / d.pow(2).mean())
    assert abs(float(snr) - 20.0) < 1.0
    d = d - d.mean(dim=(-2, -1), keepdim=True)
    down = float((d[..., 1:, :] * d[..., :-1, :]).mean() / d.pow(2).mean())  # neighbour correlation
    across = float((d[..., :, 1:] * d[..., :, :-1]).mean() / d.pow(2).mean())
    if beta == 0:
        assert abs(down) < 0.05 and abs(across) < 0.05  # white: pixels independent
    else:
        assert down > 0.25 and across > 0.25  # grain a few pixels wide
    assert abs(down - across) < 0.1  # isotropic: no row or column banding


def test_streaked_noise_keeps_its_snr_and_runs_along_its_own_angle_not_the_axes():
    """Streaks: correlated along a drawn direction, white across it; each image its own angle."""
    x = _batch(side=96)
    torch.manual_seed(6)
    y = RobustAugment(_only("noise", snr_db=(20.0, 20.0), streak=(0.5, 0.5)))(x)
    d = y - x
    snr = 10 * torch.log10(x.pow(2).mean() / d.pow(2).mean())
    assert abs(float(snr) - 20.0) < 1.5
    d = d - d.mean(dim=(-2, -1), keepdim=True)
    power = d.pow(2).mean(dim=(1, 2, 3))
    down = (d[..., 1:, :] * d[..., :-1, :]).mean(dim=(1, 2, 3)) / power
    across = (d[..., :, 1:] * d[..., :, :-1]).mean(dim=(1, 2, 3)) / power
    # smeared in some direction: neighbours correlate along at least one axis (white noise: ~0 on both)
    assert bool((torch.maximum(down, across) > 0.3).all()), (down, across)
    # and not always the same one: the angle is drawn per image
    assert float((down - across).abs().max()) > 0.3 and float((down - across).std()) > 0.1


def test_a_tone_curve_is_monotone_pins_black_and_white_and_bends_the_middle():
    ramp = torch.linspace(0, 1, 256).view(1, 1, 16, 16).repeat(8, 1, 1, 1)
    torch.manual_seed(8)
    y = RobustAugment(_only("tone_curve"))(ramp).flatten(1)
    assert bool((y.diff(dim=1) >= -1e-6).all())  # monotone: the order of grey levels is kept
    assert torch.allclose(y[:, 0], torch.zeros(8), atol=1e-6) and torch.allclose(y[:, -1], torch.ones(8))
    assert float((y - ramp.flatten(1)).abs().amax(dim=1).min()) > 0.02  # every image's curve bends


def test_overlay_adds_another_images_texture_never_its_own():
    x = torch.full((6, 1, 32, 32), 0.5)
    for i in range(6):  # every image its own pattern, so a mix shows whose texture came in
        x[i, 0, :, i * 5 : i * 5 + 3] += 0.3
    torch.manual_seed(6)
    y = RobustAugment(_only("overlay", weight=(0.25, 0.25)))(x.clone())
    for i in range(6):
        added = (y[i] - x[i]).abs().sum(dim=(0, 1))  # per column
        own = set(range(i * 5, i * 5 + 3))
        foreign = {int(c) for c in torch.nonzero(added > 0.05)}
        assert foreign and not foreign <= own, (i, foreign)


def test_same_seed_same_batch_other_seed_other_batch():
    aug = RobustAugment(RobustConfig(enabled=True))
    x = _batch()
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(aug(augment(x.clone(), AugmentConfig(hflip=True, vflip=True))))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_training_never_imports_the_evaluation_corruptions():
    code = (
        "import sys\n"
        "import steelflow.training.loop, steelflow.data.augment, steelflow.steps.tune\n"
        "from steelflow.config import RobustConfig\n"
        "import torch\n"
        "steelflow.data.augment.RobustAugment(RobustConfig(enabled=True))(torch.rand(2, 1, 32, 32))\n"
        "bad = [m for m in sys.modules if m == 'steelflow.data.corruptions']\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
