"""CASI-Net and its variants: what the paper fixes (shapes, size), what we chose, and the model contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from steelflow.errors import DataError
from steelflow.inference import load_trained, save_trained
from steelflow.models import CASINet, ModelMeta, create_model, list_models
from steelflow.models.blocks import CoordinateAttention, SelfInteraction
from steelflow.models.summary import count_flops, count_params, describe_all

VARIANTS = ["blfe_mlp", "blfe_si_mlp", "blfe_ca_mlp", "casinet"]
PAPER_PARAMS = 2.22e6  # Table 2, CASI-Net


def _model(name: str = "casinet", num_classes: int = 6, image_size: int = 32, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, image_size=image_size, **kw).eval()


# --- registry and factory -----------------------------------------------------------------------------------


def test_the_variants_are_the_rows_of_table_1_in_order():
    assert list_models() == VARIANTS


def test_an_unknown_variant_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="resnet") as e:
        create_model("resnet", num_classes=6, image_size=64)
    assert all(name in str(e.value) for name in VARIANTS)


@pytest.mark.parametrize("size", [0, 4, 7])
def test_a_too_small_image_size_is_a_value_error_naming_it_and_the_minimum(size: int):
    with pytest.raises(ValueError, match=rf"image_size {size} .*>= 8"):
        create_model("casinet", num_classes=6, image_size=size)


@pytest.mark.parametrize(
    "kwargs", [{"num_classes": 0}, {"in_chans": 0}, {"dropout": 1.0}, {"dropout": -0.1}], ids=str
)
def test_bad_arguments_are_value_errors(kwargs: dict):
    args = {"num_classes": 6, "image_size": 32} | kwargs
    with pytest.raises(ValueError):
        create_model("casinet", **args)


def test_the_factory_passes_the_networks_own_arguments_through():
    model = create_model("blfe_ca_mlp", num_classes=4, image_size=24, in_chans=1, input_norm="standardize")
    assert isinstance(model, CASINet) and model.config.name == "blfe_ca_mlp"
    assert (model.num_classes, model.image_size, model.in_chans, model.input_norm_kind) == (
        4,
        24,
        1,
        "standardize",
    )
    with pytest.raises(TypeError, match="width"):
        create_model("casinet", num_classes=4, image_size=24, width=3)


# --- the meta saved beside the weights ----------------------------------------------------------------------

META = {"variant": "blfe_mlp", "image_size": 16, "dropout": 0.0, "classes": ["a", "b"], "data_channels": 1}


def test_the_meta_goes_through_a_plain_dict_and_back():
    meta = ModelMeta.from_dict(META | {"input_norm": "local", "robust": True})
    assert ModelMeta.from_dict(meta.to_dict()) == meta
    assert meta.num_classes == 2 and meta.robust and meta.data_channels == 1
    assert all(isinstance(v, str | int | float | bool | list) for v in meta.to_dict().values())


def test_an_older_meta_dict_still_reads_with_the_defaults_of_what_it_lacks():
    old = {k: v for k, v in META.items() if k != "data_channels"} | {"in_chans": 3, "retired_key": 1}
    meta = ModelMeta.from_dict(old)
    assert (meta.data_channels, meta.input_norm, meta.input_norm_sigma, meta.robust) == (
        3,
        "none",
        0.1,
        False,
    )
    with pytest.raises(DataError, match="lacks classes"):
        ModelMeta.from_dict({k: v for k, v in META.items() if k != "classes"})


def test_a_saved_model_comes_back_with_its_typed_meta_whether_saved_from_a_dict_or_not(tmp_path):
    model = _model("blfe_mlp", num_classes=2, image_size=16)
    save_trained(model, META, tmp_path / "old.pt")
    save_trained(model, ModelMeta.from_dict(META), tmp_path / "new.pt")
    (a, meta_a), (b, meta_b) = load_trained(tmp_path / "old.pt"), load_trained(tmp_path / "new.pt")
    assert meta_a == meta_b == ModelMeta.from_dict(META)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and torch.equal(a(x), model(x))
    raw = torch.load(tmp_path / "old.pt", weights_only=True)["meta"]
    assert raw == ModelMeta.from_dict(META).to_dict()


# --- the model contract -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize(
    ("num_classes", "image_size", "input_shape"),
    [
        (6, 16, (2, 3, 16, 16)),  # as built
        (2, 24, (3, 1, 24, 24)),  # grayscale
        (11, 8, (2, 1, 40, 40)),  # the smallest size; grayscale and resized
    ],
)
def test_every_variant_gives_n_by_k_logits(name: str, num_classes: int, image_size: int, input_shape: tuple):
    model = _model(name, num_classes, image_size)
    with torch.no_grad():
        logits = model(torch.rand(input_shape))
    assert logits.shape == (input_shape[0], num_classes)
    assert torch.isfinite(logits).all()


def test_forward_is_the_head_applied_to_the_features():
    model = _model(image_size=40)
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 256, 5, 5)
        assert torch.equal(model(x), model.forward_head(features))


def test_grayscale_is_the_same_as_the_gray_repeated_to_three_channels():
    model = _model()
    gray = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(gray), model(gray.repeat(1, 3, 1, 1)), atol=1e-6)


def test_an_input_of_another_size_is_resized_bilinearly_to_image_size():
    model = _model()
    x = torch.rand(2, 3, 50, 50)
    resized = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(model(x), model(resized), atol=1e-6)


def test_a_model_for_one_channel_rejects_three():
    model = _model(in_chans=1)
    with torch.no_grad():
        assert model(torch.rand(1, 1, 32, 32)).shape == (1, 6)
        with pytest.raises(ValueError, match="input channels"):
            model(torch.rand(1, 3, 32, 32))


def test_eval_mode_is_deterministic():
    model = _model()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_the_same_seed_builds_the_same_weights():
    a, b = _model(), _model()
    assert all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


# --- what the paper fixes -----------------------------------------------------------------------------------


def test_blfe_blocks_give_the_papers_shapes_at_300():
    """§4.3: 300×300×3 → 150×150×64 → 75×75×128 → 37×37×256."""
    model = _model(image_size=300)
    x = torch.rand(1, 3, 300, 300)
    shapes = []
    with torch.no_grad():
        for block in model.backbone.blocks:
            x = block(x)
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(64, 150, 150), (128, 75, 75), (256, 37, 37)]


def test_casinet_has_the_papers_parameter_count_within_5_percent():
    """Table 2: 2.22 M at 300×300, 6 classes (no forward pass needed)."""
    params = count_params(create_model("casinet", num_classes=6, image_size=300))
    assert abs(params - PAPER_PARAMS) <= 0.05 * PAPER_PARAMS, params


def test_si_adds_no_parameters_and_ca_adds_a_few():
    """SI is a parameter-free product; CA adds its 1×1 convs. The paper gives params for CASI-Net only."""
    params = {name: count_params(create_model(name, num_classes=6, image_size=300)) for name in VARIANTS}
    assert params["blfe_mlp"] == params["blfe_si_mlp"]
    assert params["blfe_ca_mlp"] == params["casinet"]
    assert 0 < params["casinet"] - params["blfe_mlp"] < 0.01 * params["casinet"]


def test_the_parameter_count_does_not_depend_on_image_size():
    """The head reads a global average, so its size is fixed."""
    assert count_params(create_model("casinet", 6, 64)) == count_params(create_model("casinet", 6, 300))


# --- coordinate attention -----------------------------------------------------------------------------------


def test_coordinate_attention_gates_and_output():
    torch.manual_seed(0)
    ca = CoordinateAttention(32).eval()
    x = torch.randn(2, 32, 7, 5)  # not square: the gates follow each axis
    with torch.no_grad():
        g_h, g_w = ca.gates(x)
        y = ca(x)
    assert g_h.shape == (2, 32, 7, 1) and g_w.shape == (2, 32, 1, 5)
    assert ((g_h > 0) & (g_h < 1)).all() and ((g_w > 0) & (g_w < 1)).all()
    assert torch.allclose(y, x * g_h * g_w)


def test_coordinate_attention_reduces_to_hou_et_als_width():
    """mid = max(8, C // 32): 256 → 8 in CASI-Net."""
    assert CoordinateAttention(256).conv1.out_channels == 8
    assert CoordinateAttention(1024).conv1.out_channels == 32


def test_attention_maps_exist_only_on_variants_with_ca():
    assert [hasattr(_model(name), "attention_maps") for name in VARIANTS] == [False, False, True, True]
    model = _model("casinet", image_size=64)
    with torch.no_grad():
        g_h, g_w = model.attention_maps(torch.rand(3, 1, 64, 64))
    assert g_h.shape == (3, 256, 8, 1) and g_w.shape == (3, 256, 1, 8)


# --- self-interaction ---------------------------------------------------------------------------------------


def test_self_interaction_is_the_hadamard_product_with_the_spatial_transpose():
    y = torch.randn(2, 4, 6, 6)
    z = SelfInteraction()(y)
    assert torch.equal(z, z.transpose(-1, -2))
    assert torch.allclose(z[1, 2, 1, 4], y[1, 2, 1, 4] * y[1, 2, 4, 1])


def test_self_interaction_needs_square_maps():
    with pytest.raises(ValueError, match="square"):
        SelfInteraction()(torch.randn(1, 2, 3, 4))


def test_the_features_of_variants_with_si_are_symmetric():
    with torch.no_grad():
        z = _model("blfe_si_mlp").forward_features(torch.rand(2, 3, 32, 32))
    assert torch.equal(z, z.transpose(-1, -2))


# --- summary ------------------------------------------------------------------------------------------------


def test_flops_are_positive_and_grow_with_image_size():
    small, large = (count_flops(create_model("casinet", 6, size), size) for size in (32, 64))
    assert 0 < small < large


def test_counting_flops_restores_the_mode_and_refuses_a_size_the_model_was_not_built_for():
    model = create_model("casinet", num_classes=6, image_size=32)
    count_flops(model, 32)
    assert model.training
    with pytest.raises(ValueError, match="built for image_size 32"):
        count_flops(model, 64)


def test_describe_all_gives_every_variant_at_the_size_asked():
    rows = describe_all(64, 4)
    assert [row["name"] for row in rows] == VARIANTS
    model = create_model("casinet", num_classes=4, image_size=64)
    assert rows[-1] == {"name": "casinet", "params": count_params(model), "flops": count_flops(model, 64)}


def test_describe_all_rejects_a_size_the_network_cannot_take():
    with pytest.raises(ValueError, match="image_size 4"):
        describe_all(4, 6)
