"""The pages a person opens, in a real headless Chromium that reaches nothing beyond this machine.

- DVC's plots page from `steelflow plots` draws every Vega plot offline (DVC's own page draws none);
- the Great Expectations Data Docs index lists the validation results, styled, offline;
- the MLflow link steelflow prints opens the runs table with the key metrics as columns, not the GenAI view;
  the registered model's page shows the promotion history as a table.

Screenshots are kept under each test's ``tmp_path``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.browser import offline_browser
from tests.support.servers import VENV_BIN, as_user, steelflow_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VEGA_PLOTS = 3  # dvc.yaml: learning curves, loss, confusion (clean test set)

# Per canvas: how many of its pixels are drawn (not blank, not white).
DRAWN_PIXELS = """() => Array.from(document.querySelectorAll('canvas')).map(c => {
    if (!c.width || !c.height) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4)
        if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) n++;
    return n;
})"""


@pytest.fixture
def plots_project(tmp_path: Path) -> Path:
    """A DVC project with steelflow's own `plots:` section (from dvc.yaml) and small files behind it."""
    from PIL import Image

    project = tmp_path / "project"
    (project / "metrics").mkdir(parents=True)
    (project / "reports").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (project / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    epochs = range(1, 6)
    pd.DataFrame(
        {
            "epoch": epochs,
            "train_accuracy": [0.5 + e / 10 for e in epochs],
            "val_accuracy": [0.45 + e / 12 for e in epochs],
            "train_loss": [1.5 / e for e in epochs],
            "val_loss": [1.6 / e for e in epochs],
        }
    ).to_csv(project / "metrics" / "train_history.csv", index=False)
    pairs = [("dent", "dent"), ("dent", "rust"), ("rust", "rust"), ("scratch", "scratch")]
    pd.DataFrame(
        {
            "path": [f"{i}.png" for i in range(4)],
            "actual": [a for a, _ in pairs],
            "predicted": [p for _, p in pairs],
        }
    ).to_csv(project / "reports" / "predictions.csv", index=False)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(project / "reports" / "corruptions.png")
    return project


def test_the_plots_page_draws_every_vega_plot_offline_and_dvcs_own_draws_none(plots_project, tmp_path):
    steelflow = [str(VENV_BIN / "steelflow"), "plots", "--out", "offline"]
    done = subprocess.run(steelflow, cwd=plots_project, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "offline/index.html" in done.stdout
    dvc = [sys.executable, "-m", "dvc", "plots", "show", "-o", "cdn"]
    subprocess.run(dvc, cwd=plots_project, check=True, capture_output=True)

    with offline_browser(tmp_path / "ours") as b:
        b.open((plots_project / "offline" / "index.html").as_uri())
        b.page.wait_for_function(
            f"document.querySelectorAll('canvas').length >= {VEGA_PLOTS}", timeout=60_000
        )
        b.screenshot(tmp_path / "plots-offline.png")
        drawn = b.page.evaluate(DRAWN_PIXELS)
        picture = b.page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
        assert b.blocked == [] and b.errors == []
    assert sum(n > 1000 for n in drawn) >= VEGA_PLOTS, drawn  # lines, axes, the confusion cells
    assert picture == [40]  # reports/corruptions.png, beside the page

    with offline_browser(tmp_path / "dvc") as b:  # the page as DVC writes it: Vega from a CDN
        b.open((plots_project / "cdn" / "index.html").as_uri())
        b.page.wait_for_timeout(2000)
        b.screenshot(tmp_path / "plots-dvc-default.png")
        assert b.blocked and b.page.evaluate(DRAWN_PIXELS) == []


def test_the_data_docs_index_lists_the_validation_styled_offline(tmp_path, monkeypatch):
    from steelflow.data import manifest
    from steelflow.steps.validate import validate
    from tests.data.test_manifest_expectations import clean_rows, data_config, validate_config

    monkeypatch.chdir(tmp_path)
    manifest.write(pd.DataFrame(clean_rows()), tmp_path / "manifest.csv")
    docs = tmp_path / "reports" / "validation"
    validate(data_config(), validate_config(), tmp_path / "manifest.csv", tmp_path / "validation.json", docs)

    with offline_browser(tmp_path / "browser") as b:
        b.open((docs / "index.html").as_uri())
        rows = b.page.locator("table.ge-index-page-validation-results-table tbody tr")
        rows.first.wait_for(timeout=30_000)  # filled by bootstrap-table: only with jQuery loaded
        b.screenshot(tmp_path / "data-docs-index.png")
        listed = rows.all_inner_texts()
        font = b.page.evaluate("getComputedStyle(document.body).fontFamily")
        status = b.page.evaluate(
            "getComputedStyle(document.querySelector('.ge-success-icon'), '::before').content"
        )
        b.page.get_by_role("link", name="manifest").first.click()
        b.page.wait_for_load_state("load")
        b.screenshot(tmp_path / "data-docs-manifest.png")
        result_page = b.page.inner_text("body")
        assert b.blocked == [] and b.errors == []
    assert len(listed) == 2 and any("data/manifest.csv" in r for r in listed)
    assert any("per_class" in r for r in listed)
    assert "-apple-system" in font  # Bootstrap's font stack: its stylesheet loaded
    assert status == '"✔"'  # the status column reads without the icon font
    assert "every file decodes as an image" in result_page


def test_the_printed_mlflow_link_opens_the_runs_table_with_key_metrics_not_the_genai_view(tmp_path, capsys):
    import mlflow

    from steelflow.config.serving import MlflowConfig
    from steelflow.registry import with_history
    from steelflow.tracking import MlflowTracker
    from steelflow.tracking.tracker import KEY_METRICS

    root = tmp_path / "server"
    with steelflow_server(root, f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts")) as server:
        cfg = MlflowConfig(tracking_uri=server.uri, experiment="steelflow-ui")
        with as_user(*server.admin):
            for lr, clean in ((0.05, 0.93), (0.1, 0.81)):
                with MlflowTracker(cfg, f"train casinet lr={lr:g}", {"train": {"lr": lr}}, {}) as t:
                    t.log_metrics({m: clean - i / 20 for i, m in enumerate(KEY_METRICS)})
            history = [
                {"time": "2026-12-01T10:00:00", "action": "promote", "from_version": None, "to_version": "1"},
                {"time": "2026-12-02T11:30:00", "action": "rollback", "from_version": "2", "to_version": "1"},
            ]
            client = mlflow.MlflowClient(server.uri, server.uri)
            client.create_registered_model("steel-ui", description=with_history("Ours.", history))
        printed = capsys.readouterr().out
        (runs_link,) = [line.split(": ", 1)[1] for line in printed.splitlines() if "All runs" in line][-1:]

        with offline_browser(tmp_path / "browser", width=2600, height=1000, credentials=server.admin) as b:
            b.open(runs_link)
            b.page.get_by_text("train casinet lr=0.05").first.wait_for(timeout=60_000)
            b.page.wait_for_timeout(1000)  # the grid lays its columns out after the rows arrive
            b.screenshot(tmp_path / "mlflow-runs.png")
            headers = b.page.locator("[role=columnheader]").all_inner_texts()
            text = b.page.inner_text("body")
            url = b.page.url
            b.open(f"{server.uri}/#/models/steel-ui")
            cells = b.page.locator("table td", has_text="rollback")
            cells.first.wait_for(timeout=60_000)  # the description's markdown, rendered as a table
            b.screenshot(tmp_path / "mlflow-model-history.png")
            assert b.blocked == []
    assert "/runs" in url and "workflowType=machine_learning" in url
    assert "Detect Issues" not in text and "Traces" not in headers
    shown = " ".join(headers)
    for metric in KEY_METRICS:
        assert metric in shown, (metric, headers)
    assert "0.93" in text and "0.81" in text  # the clean accuracies, in their column
    assert text.index("train casinet lr=0.05") < text.index("train casinet lr=0.1")  # best clean first
