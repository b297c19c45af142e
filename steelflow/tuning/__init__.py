"""Tuning machinery under the ``tune`` step (:mod:`steelflow.steps.tune`): the Optuna study and its
trials (:mod:`~steelflow.tuning.study`), the objective's fidelity and scores
(:mod:`~steelflow.tuning.objective`), and the study's MLflow runs (:mod:`~steelflow.tuning.tracking`).
"""
