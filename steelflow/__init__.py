"""steelflow: a folder of steel-surface images to a gated, robustness-checked model in MLflow."""

__version__ = "0.1.0"
