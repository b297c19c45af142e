"""Consistency training (``train.robust.consistency``): AugMix's Jensen–Shannon loss, steelflow's families.

Hendrycks et al., *AugMix* (ICLR 2020), §3: each batch is seen three times, clean and under two independent
draws of the augmentation, and the loss adds to the cross-entropy λ times the Jensen–Shannon divergence of
the three predicted distributions, ``JS = (KL(p₀‖M) + KL(p₁‖M) + KL(p₂‖M)) / 3`` with ``M`` their mean: the
network is asked to answer the same whatever the camera did. timm's ``JsdCrossEntropy`` is the reference
(the mixture clamped at 1e-7 before its log, the cross-entropy on the clean view only: ``ce: clean``).

The two augmented views are drawn from ``train.robust``'s families (:class:`~steelflow.data.augment.
RobustAugment`), nothing else: not AugMix's op list (posterize, shear and translate overlap the hold-out
corruptions) and never :mod:`steelflow.data.corruptions`. The clean view is ``train.augment``'s (flips),
and the augmented views are drawn from it, so all three share one geometry.

The three views go through the network as one batch of ``3N``, as AugMix's training code does: batch norm
normalises with the statistics of all three, and its running averages (what evaluation uses) are those of
clean and corrupted images together, not of the clean view alone, which the augmented views would then
leave. The price is three forward and backward passes per batch (time and activation memory ×3).

Losses come back as sums over the batch's images, not means: :mod:`steelflow.training.loop` divides by the
global batch size (times the number of processes, which DDP's gradient average divides out), so N processes
take the steps one does, the consistency term included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F  # noqa: N812

from steelflow.config import ConsistencyConfig, TrainConfig
from steelflow.data import augment as augmentation

MIXTURE_FLOOR = 1e-7  # timm's clamp of the mixture before its log


def active(cfg: TrainConfig) -> bool:
    """Is the consistency loss on: robust training on and ``train.robust.consistency.weight`` above 0."""
    return cfg.robust.enabled and cfg.robust.consistency.weight > 0


def views(x: torch.Tensor, cfg: TrainConfig, robust: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The batch ``x`` (``N`` float images) as ``3N``: the clean view (``train.augment``), then two
    independent draws of ``robust`` (``train.robust``'s families) over it."""
    clean = augmentation.augment(x, cfg.augment)
    return torch.cat([clean, robust(clean.clone()), robust(clean.clone())])


def loss_sums(
    logits: torch.Tensor, y: torch.Tensor, cfg: ConsistencyConfig | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clean view's logits, the cross-entropy summed over images, and the Jensen–Shannon divergence
    summed over images (0 without consistency, where ``logits`` is one view).

    With consistency, ``logits`` are the ``3N`` of :func:`views`; ``ce: all`` takes the mean of the three
    views' cross-entropies per image (the labels of the corrupted views are trained on too).
    """
    logits = logits.float()
    if cfg is None:
        return logits, F.cross_entropy(logits, y, reduction="sum"), logits.new_zeros(())
    clean, *augmented = logits.chunk(3)
    if cfg.ce == "clean":
        ce = F.cross_entropy(clean, y, reduction="sum")
    else:
        ce = F.cross_entropy(logits, y.repeat(3), reduction="sum") / 3
    return clean, ce, js_divergence(clean, *augmented)


def js_divergence(*logits: torch.Tensor) -> torch.Tensor:
    """The Jensen–Shannon divergence of the softmax distributions of ``logits`` (each ``(N, K)``), summed
    over the ``N`` images: the mean KL divergence of each from their mixture (natural log)."""
    probs = [F.softmax(z, dim=1) for z in logits]
    log_mixture = torch.stack(probs).mean(0).clamp(MIXTURE_FLOOR, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="sum") for p in probs) / len(probs)
