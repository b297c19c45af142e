"""Is a batch unlike the reference? One statistic per measure, thresholds calibrated together.

A numeric measure is compared by the two-sample Kolmogorov–Smirnov distance (the largest gap between the
batch's and the reference's empirical distribution functions; scipy computes it for the batch); ``mode``,
a category, by the total variation distance between the shares of each mode.

**Calibration.** A batch is flagged when any measure's statistic exceeds its threshold, so the thresholds
must hold the *family's* false-alarm rate at ``monitor.false_alarm_rate`` (α). Bonferroni (α / K each)
would, but the measures are correlated (brightness, entropy and confidence move together), so it is more
cautious than it needs to be. Instead clean batches of the batch's size are resampled from the reference
(without replacement, ``monitor.calibration_batches`` of them, seeded), each compared with the rest of the
reference; each measure's threshold is the ``1 − c`` quantile of its resampled statistics, with one tail
share ``c`` for all measures, the largest for which at most α of the resampled batches raise any alarm
(between α / K, Bonferroni, and α). This is the single-step min-p of Westfall and Young (1993).

A resampled batch is compared with the rest of the reference (``N − n`` images), a real batch with all
of it (``N``): both statistics scale as ``sqrt(1/n + 1/m)`` under no drift, so the resampled ones are
multiplied by ``sqrt((1/n + 1/N) / (1/n + 1/(N − n)))``. The batch may be at most half the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from steelflow.errors import DataError

CATEGORICAL = frozenset({"mode"})
_ROWS = 256  # resampled batches handled at once: memory stays at a few MB for any reference


@dataclass(frozen=True)
class Calibration:
    batch_size: int
    reference_size: int
    thresholds: dict[str, float]
    tail: float  # c: each measure's share of resampled clean batches over its threshold
    false_alarm_rate: float  # the share of resampled clean batches flagged on any measure (≤ α)
    batches: int


@dataclass(frozen=True)
class Verdict:
    measure: str
    test: str  # ks | tv
    statistic: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.statistic > self.threshold


def statistic(measure: str, batch: np.ndarray, reference: np.ndarray) -> float:
    """The distance between a batch's values of ``measure`` and the reference's."""
    if measure in CATEGORICAL:
        kinds = np.union1d(batch, reference)
        share = [np.mean(values[:, None] == kinds, axis=0) for values in (batch, reference)]
        return float(0.5 * np.abs(share[0] - share[1]).sum())
    return float(stats.ks_2samp(batch, reference).statistic)


def calibrate(
    reference: Mapping[str, np.ndarray], batch_size: int, rate: float, batches: int, seed: int
) -> Calibration:
    """Thresholds for batches of ``batch_size`` that flag at most ``rate`` of clean batches (module doc)."""
    sizes = {len(v) for v in reference.values()}
    if len(sizes) != 1:
        raise ValueError(f"the reference's measures have different lengths: {sorted(sizes)}")
    n, total = batch_size, sizes.pop()
    if n < 1 or 2 * n > total:
        raise DataError(
            f"a batch of {n} images needs a reference of at least {2 * n} (it has {total}): build the "
            "reference from a larger split (monitor.reference_split) or monitor smaller batches"
        )
    rng = np.random.default_rng(seed)
    scale = np.sqrt((1 / n + 1 / total) / (1 / n + 1 / (total - n)))
    names = list(reference)
    null = np.empty((batches, len(names)))
    for start in range(0, batches, _ROWS):
        rows = min(_ROWS, batches - start)
        member = np.zeros((rows, total), dtype=bool)
        picks = np.argsort(rng.random((rows, total)), axis=1)[:, :n]
        member[np.arange(rows)[:, None], picks] = True
        for k, name in enumerate(names):
            values = np.asarray(reference[name])
            distance = _null_tv if name in CATEGORICAL else _null_ks
            null[start : start + rows, k] = distance(values, member, n) * scale
    tail, thresholds, achieved = _common_tail(null, rate)
    return Calibration(n, total, dict(zip(names, thresholds.tolist(), strict=True)), tail, achieved, batches)


def judge(
    batch: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], calibration: Calibration
) -> list[Verdict]:
    """Each measure's statistic against its calibrated threshold."""
    return [
        Verdict(
            name,
            "tv" if name in CATEGORICAL else "ks",
            statistic(name, np.asarray(batch[name]), np.asarray(reference[name])),
            calibration.thresholds[name],
        )
        for name in calibration.thresholds
    ]


def _common_tail(null: np.ndarray, rate: float) -> tuple[float, np.ndarray, float]:
    """The largest common tail share c in [rate / K, rate] whose thresholds flag at most ``rate`` of the
    resampled batches (flagging grows with c, so bisection finds it)."""

    def at(c: float) -> tuple[np.ndarray, float]:
        thresholds = np.quantile(null, 1 - c, axis=0, method="higher")
        return thresholds, float((null > thresholds).any(axis=1).mean())

    low, high = rate / null.shape[1], rate
    if at(high)[1] <= rate:
        low = high
    else:
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (mid, high) if at(mid)[1] <= rate else (low, mid)
    thresholds, achieved = at(low)
    return low, thresholds, achieved


def _null_ks(values: np.ndarray, member: np.ndarray, n: int) -> np.ndarray:
    """KS distance of each resampled batch (a row of ``member``) from the rest of the reference."""
    order = np.argsort(values, kind="stable")
    ordered, inside = values[order].astype(float), member[:, order]
    ends = np.r_[np.flatnonzero(np.diff(ordered) != 0), len(ordered) - 1]  # last of each run of ties
    batch_cdf = np.cumsum(inside, axis=1)[:, ends] / n
    rest_cdf = np.cumsum(~inside, axis=1)[:, ends] / (len(values) - n)
    return np.abs(batch_cdf - rest_cdf).max(axis=1)


def _null_tv(values: np.ndarray, member: np.ndarray, n: int) -> np.ndarray:
    """Total variation distance of each resampled batch's category shares from the rest's."""
    _, codes = np.unique(values, return_inverse=True)
    onehot = np.eye(codes.max() + 1)[codes]
    in_batch = member @ onehot
    rest = onehot.sum(axis=0) - in_batch
    return 0.5 * np.abs(in_batch / n - rest / (len(values) - n)).sum(axis=1)
