"""The drift verdict as a page: one histogram per measure (batch over reference), inline, no network.

Own HTML rather than Evidently: Evidently 0.7 does install beside ``requirements.lock`` without moving a
pin, but it brings some 30 packages (a web framework, nltk, statsmodels, plotly) into every image for a
table and a few histograms, and its per-column tests know nothing of the family-wise calibration that
decides the verdict here (docs/monitor.md).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}"
    ".drift{color:#b00020;font-weight:bold}.ok{color:#1b5e20}figure{display:inline-block;margin:.5em}"
)


def page(
    result: Mapping[str, Any], batch: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]
) -> str:
    """The self-contained HTML page of ``result`` (drift.json's content)."""
    verdict = "DRIFT" if result["drifted"] else "no drift"
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{m['test']}</td><td>{m['statistic']:.4f}</td>"
        f"<td>{m['threshold']:.4f}</td><td class={'drift' if m['drifted'] else 'ok'}>"
        f"{'drifted' if m['drifted'] else 'ok'}</td></tr>"
        for name, m in result["measures"].items()
    )
    figures = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
        f"{_histogram(name, batch[name], reference[name], m)}'></figure>"
        for name, m in result["measures"].items()
    )
    cal = result["calibration"]
    state = "drift" if result["drifted"] else "ok"
    model = html.escape(str(result["model"] or "none (quality measures only)"))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>steelflow drift watch</title>"
        f"<style>{_STYLE}</style></head><body><h1>Drift watch: <span class={state}>{verdict}</span></h1>"
        f"<p>{result['images']} images of <code>{html.escape(result['batch'])}</code> against "
        f"{result['reference_images']} of <code>{html.escape(result['reference'])}</code>; model "
        f"<code>{model}</code>.</p>"
        f"<p>Thresholds: {cal['batches']} clean batches of {result['images']} resampled from the reference; "
        f"a clean batch is flagged on some measure with probability {result['false_alarm_rate']} "
        f"(resampled: {cal['false_alarm_rate']:.3f}; each measure's tail {cal['tail']:.4f}).</p>"
        "<table><tr><th>measure</th><th>test</th><th>statistic</th><th>threshold</th><th>verdict</th></tr>"
        f"{rows}</table>{figures}</body></html>"
    )


def _histogram(name: str, batch: np.ndarray, reference: np.ndarray, m: Mapping[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 2.8), dpi=80)
    if m["test"] == "tv":
        kinds = sorted(set(map(str, reference)) | set(map(str, batch)))
        x = np.arange(len(kinds))
        for offset, values, label in ((-0.2, reference, "reference"), (0.2, batch, "batch")):
            share = [np.mean(np.asarray(values, dtype=str) == k) for k in kinds]
            ax.bar(x + offset, share, width=0.4, label=label)
        ax.set_xticks(x, kinds)
        ax.set_ylabel("share")
    else:
        values = np.concatenate([np.asarray(reference, float), np.asarray(batch, float)])
        low, high = float(values.min()), float(values.max())
        bins = np.linspace(low, high if high > low else low + 1, 31)
        ax.hist(np.asarray(reference, float), bins=bins, density=True, alpha=0.5, label="reference")
        ax.hist(np.asarray(batch, float), bins=bins, density=True, alpha=0.5, label="batch")
        ax.set_ylabel("density")
    flag = "DRIFT" if m["drifted"] else "ok"
    ax.set_title(f"{name}: {m['test']} {m['statistic']:.3f} (> {m['threshold']:.3f}?) {flag}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
