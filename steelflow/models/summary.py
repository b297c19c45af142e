"""Size and cost of the variants: parameter counts and FLOPs (what ``steelflow models`` prints)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from steelflow.models.variants import create_model, list_models


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable or not (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, image_size: int, in_chans: int = 3) -> int:
    """FLOPs of one forward pass at batch 1 on an ``image_size``² input, as ``FlopCounterMode`` counts them.

    That is 2 × multiply-adds of the convolutions and matrix products (the linear layers); element-wise
    work — batch norm, ReLU, pooling, sigmoid, the CA re-weighting and the SI product — counts 0. So SI
    adds no FLOPs here and CA only its 1×1 convs. The model runs in eval mode without gradients (its
    mode is restored), on the device of its parameters; a model on the ``meta`` device costs no compute.

    A CASI-Net resizes every input to the ``image_size`` it was built with, so ``image_size`` must be that
    one (``ValueError`` otherwise): to compare sizes, build one model per size.
    """
    built_for = getattr(model, "image_size", image_size)
    if built_for != image_size:
        raise ValueError(
            f"the model was built for image_size {built_for} and resizes its input to it; "
            f"build one with image_size={image_size} to count FLOPs at {image_size}"
        )
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, image_size, image_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def describe_all(image_size: int, num_classes: int) -> list[dict]:
    """``{name, params, flops}`` for every variant at ``image_size``² and ``num_classes``, in registry order.

    Built on the ``meta`` device: shapes only, so it is instant at any size. ``ValueError`` for a size the
    network cannot take.
    """
    rows = []
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, image_size=image_size)
        rows.append({"name": name, "params": count_params(model), "flops": count_flops(model, image_size)})
    return rows
