"""Consistency training's loss and views: zero for views that agree, positive otherwise, a gradient to every
view, sums that add up across processes, and augmented views drawn from train.robust's families alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from steelflow.config import FAMILIES, ROBUST_FAMILIES, ConsistencyConfig, load_params, parse_params
from steelflow.data.augment import RobustAugment, augment
from steelflow.errors import ConfigError
from steelflow.training import consistency
from tests.support.helpers import REPO


def _logits(n: int = 6, k: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 2


def test_the_divergence_is_zero_for_identical_views_and_positive_otherwise():
    z = _logits()
    assert consistency.js_divergence(z, z.clone(), z.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert consistency.js_divergence(z, z + 0.5 * _logits(seed=1), z).item() > 1e-3
    # logits that differ by a constant per image give the same distribution: nothing to pull together
    assert consistency.js_divergence(z, z + 3.0, z - 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_the_divergence_is_the_entropy_of_the_mixture_less_the_mean_entropy():
    """JS(p₀, p₁, p₂) = H(M) − mean H(pᵢ), summed over images: an independent way to the same number."""
    views = [_logits(seed=s) for s in range(3)]
    probs = [torch.softmax(v, 1).numpy().astype(np.float64) for v in views]
    expected = sum(
        entropy(np.mean([p[i] for p in probs], axis=0)) - np.mean([entropy(p[i]) for p in probs])
        for i in range(len(views[0]))
    )
    assert consistency.js_divergence(*views).item() == pytest.approx(expected, rel=1e-4)


def test_the_gradient_reaches_every_view():
    views = [_logits(seed=s).requires_grad_() for s in range(3)]
    consistency.js_divergence(*views).backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in views)


@pytest.mark.parametrize("ce", ["clean", "all"])
def test_the_losses_are_sums_so_two_halves_divided_by_the_global_batch_are_the_whole(ce):
    """What keeps DDP right: each rank's (ce + λ·js) × world / global batch, averaged over the ranks by DDP,
    is the one-process loss of the whole batch."""
    cfg = ConsistencyConfig(weight=12, ce=ce)
    n, y = 8, torch.arange(8) % 4
    views = [_logits(n, seed=s) for s in range(3)]

    def loss(rows: slice, world: int) -> torch.Tensor:
        logits = torch.cat([v[rows] for v in views])
        _, summed, spread = consistency.loss_sums(logits, y[rows], cfg)
        return (summed + cfg.weight * spread) * (world / n)

    ranks = (loss(slice(0, 4), 2) + loss(slice(4, 8), 2)) / 2
    assert ranks.item() == pytest.approx(loss(slice(0, 8), 1).item(), rel=1e-5)


def test_the_cross_entropy_is_the_clean_views_or_the_mean_of_all_three():
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    views = [_logits(seed=s) for s in range(3)]
    logits = torch.cat(views)
    ce = [torch.nn.functional.cross_entropy(v, y, reduction="sum") for v in views]
    clean, summed, _ = consistency.loss_sums(logits, y, ConsistencyConfig(weight=1))
    assert torch.equal(clean, views[0]) and summed.item() == pytest.approx(ce[0].item())
    _, summed, _ = consistency.loss_sums(logits, y, ConsistencyConfig(weight=1, ce="all"))
    assert summed.item() == pytest.approx(sum(c.item() for c in ce) / 3, rel=1e-6)
    _, summed, spread = consistency.loss_sums(views[0], y, None)  # off: plain cross-entropy, no term
    assert summed.item() == pytest.approx(ce[0].item()) and spread.item() == 0


def test_the_augmented_views_come_from_train_robusts_families_alone(monkeypatch):
    """The families drawn are recorded: each is one of train.robust's with p > 0 (its function from
    steelflow.data.augment), the clean view is train.augment's alone, and the two draws differ."""
    train = load_params(REPO / "params.yaml").train
    train = train.model_copy(update={"robust": train.robust.model_copy(update={"enabled": True})})
    drawn: list[str] = []

    def recorded(name, fn):
        def run(self, x):
            drawn.append(name)
            return fn(self, x)

        return run

    wrapped = {name: recorded(name, fn) for name, fn in FAMILIES.functions().items()}
    assert {fn.__module__ for fn in FAMILIES.functions().values()} == {"steelflow.data.augment"}
    monkeypatch.setattr(FAMILIES, "_functions", wrapped)
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    views = consistency.views(x.clone(), train, RobustAugment(train.robust))
    on = {f for f in ROBUST_FAMILIES if getattr(train.robust, f).p > 0}
    assert on and set(drawn) == on and len(drawn) == 2 * len(on)  # each family once per augmented view
    clean, first, second = views.chunk(3)
    torch.manual_seed(3)
    assert torch.equal(clean, augment(x.clone(), train.augment))
    assert not torch.equal(first, clean) and not torch.equal(first, second)


def test_consistency_is_on_only_with_robust_training_and_a_weight():
    train = load_params(REPO / "params.yaml").train
    on = train.model_copy(
        update={"robust": train.robust.model_copy(update={"consistency": ConsistencyConfig(weight=12)})}
    )
    assert consistency.active(on) and not consistency.active(train)
    off = on.model_copy(update={"robust": on.robust.model_copy(update={"enabled": False})})
    assert not consistency.active(off)  # clean training: the families and the loss are off together


def test_a_weight_with_no_family_to_draw_from_is_refused_by_its_key():
    tree = load_params(REPO / "params.yaml").raw()
    robust = tree["train"]["robust"]
    robust["consistency"] = {"weight": 12}
    for family in ROBUST_FAMILIES:
        robust[family]["p"] = 0.0
    with pytest.raises(ConfigError, match=r"'train\.robust\.consistency'.*needs a family with p > 0"):
        parse_params(tree)
    robust["consistency"] = {"weight": -1}
    with pytest.raises(ConfigError, match=r"'train\.robust\.consistency\.weight'"):
        parse_params(tree)
    robust["consistency"] = {"weight": 1, "views": 3}
    with pytest.raises(ConfigError, match=r"unknown key 'train\.robust\.consistency\.views'"):
        parse_params(tree)
