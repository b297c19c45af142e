"""Training a network: the loop (:mod:`~steelflow.training.loop`: epochs, early stopping, robust
augmentation, divergence) and its state on disk (:mod:`~steelflow.training.checkpoint`). The ``train`` step
(:mod:`steelflow.training.loop`) wraps it with its MLflow run; tuning runs it once per trial."""
