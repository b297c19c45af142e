"""The network's input stages: what each one cancels, and that each survives ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steelflow.config import INPUT_STAGES, ModelConfig
from steelflow.inference import load_trained, save_trained
from steelflow.models import ModelMeta, create_model
from steelflow.models.input_norm import INPUT_NORMS, GaussianLowPass, build_input_norm
from steelflow.serving.onnx_export import export_network


def _surface(n: int = 4, side: int = 64) -> torch.Tensor:
    """Textured grey images in [0.3, 0.6]: room to light and dim them without clipping."""
    g = torch.Generator().manual_seed(0)
    return 0.3 + 0.3 * torch.rand(n, 1, side, side, generator=g)


def _smooth_gain(side: int = 64) -> torch.Tensor:
    """A slow gain from 0.6 in one corner to 1.5 in the other: a lamp off to one side."""
    t = torch.linspace(0, 1, side)
    return (0.6 + 0.9 * (t.view(1, 1, -1, 1) + t.view(1, 1, 1, -1)) / 2).expand(1, 1, side, side)


def _interior(x: torch.Tensor, margin: int = 12) -> torch.Tensor:
    return x[..., margin:-margin, margin:-margin]


def test_standardize_cancels_a_global_gain_and_offset():
    stage = build_input_norm("standardize", 64, 0.1)
    x = 0.1 + 0.8 * torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    # up to the stage's floor on the std, which keeps a flat image finite
    assert torch.allclose(stage(x), stage(0.7 * x + 0.1), atol=0.02)
    assert not torch.allclose(x, 0.7 * x + 0.1, atol=0.02)


@pytest.mark.parametrize("kind", ["flatfield", "local"])
def test_illumination_stages_cancel_a_smooth_gain_the_others_do_not(kind):
    x = _surface()
    lit = x * _smooth_gain()
    stage = build_input_norm(kind, 64, 0.1)
    err = (_interior(stage(x)) - _interior(stage(lit))).abs().mean()
    plain = build_input_norm("standardize", 64, 0.1)
    err_plain = (_interior(plain(x)) - _interior(plain(lit))).abs().mean()
    assert err < 0.25 * err_plain, (float(err), float(err_plain))


def test_model_input_norm_takes_exactly_the_registered_stages_and_each_has_its_builder():
    assert INPUT_STAGES.names == INPUT_NORMS and INPUT_STAGES.unimplemented() == ()
    for kind in INPUT_NORMS:
        assert ModelConfig(variant="casinet", image_size=32, input_norm=kind).input_norm == kind
    with pytest.raises(ValueError, match="unknown input_norm 'fancy' \\(allowed: none, standardize"):
        build_input_norm("fancy", 32, 0.1)
    with pytest.raises(ValueError, match="input_norm"):
        ModelConfig(variant="casinet", image_size=32, input_norm="fancy")


@pytest.mark.parametrize("kind", INPUT_NORMS)
def test_every_stage_is_finite_on_black_white_and_flat_images(kind):
    stage = build_input_norm(kind, 32, 0.1)
    for value in (0.0, 1.0, 0.5):
        out = stage(torch.full((2, 1, 32, 32), value))
        assert torch.isfinite(out).all() and out.shape == (2, 1, 32, 32), (kind, value)


@pytest.mark.parametrize("kind", INPUT_NORMS)
def test_a_saved_model_keeps_its_input_stage(kind, tmp_path):
    model = create_model("casinet", num_classes=3, image_size=32, input_norm=kind).eval()
    meta = {"variant": "casinet", "image_size": 32, "dropout": 0.0, "classes": list("abc"), "in_chans": 3}
    meta |= {"input_norm": kind, "input_norm_sigma": 0.1}
    save_trained(model, meta, tmp_path / "model.pt")
    loaded, saved = load_trained(tmp_path / "model.pt")
    assert saved == ModelMeta.from_dict(meta) and saved.input_norm == kind
    x = _surface(2, 40)  # another side: the network resizes first, then normalises
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", INPUT_NORMS)
def test_every_input_stage_exports_to_onnx_with_parity(kind, tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = create_model("casinet", num_classes=4, image_size=32, input_norm=kind).eval()
    x = torch.cat([_surface(3, 32), _surface(3, 32) * _smooth_gain(32)])
    path = tmp_path / f"{kind}.onnx"
    export_network(model, x[:2], path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        eager = model(x).numpy()
    onnx = session.run(None, {"x": x.numpy()})[0]
    assert np.abs(eager - onnx).max() < 1e-4


@pytest.mark.parametrize(("side", "sigma"), [(64, 0.1), (48, 0.02), (17, 0.5), (300, 0.1)])
def test_the_low_pass_is_a_reflect_padded_separable_gaussian(side, sigma):
    """The matrix form gives what a reflect pad and a 1×k then k×1 Gaussian convolution give, edges
    included, and where the kernel is as wide as the image (radius clamped to side − 1)."""
    blur = GaussianLowPass(side, sigma)
    s, r = max(sigma * side, 0.5), blur.radius
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * s * s))
    kx = (k / k.sum()).view(1, 1, 1, -1).expand(2, 1, 1, -1)
    x = torch.rand(3, 2, side, side, generator=torch.Generator().manual_seed(side))
    ref = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), kx, groups=2)
    ref = F.conv2d(F.pad(ref, (0, 0, r, r), mode="reflect"), kx.transpose(-1, -2), groups=2)
    assert torch.allclose(blur(x), ref, atol=1e-5)
    assert torch.allclose(blur(torch.full_like(x, 0.7)), torch.full_like(x, 0.7), atol=1e-5)  # unit gain


def test_the_low_pass_names_the_size_it_was_built_for():
    with pytest.raises(ValueError, match="built for 32×32 images, got \\(40, 40\\)"):
        GaussianLowPass(32, 0.1)(torch.zeros(1, 1, 40, 40))
