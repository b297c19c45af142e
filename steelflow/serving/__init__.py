"""Serving: what a registered model is and how it answers.

- :mod:`~steelflow.serving.pyfunc`: raw image bytes in, class and probabilities out (decoding, the
  small-image rule, batching) — the logic the registered model runs;
- :mod:`~steelflow.serving.model`: the models-from-code file MLflow loads (``python_model``);
- :mod:`~steelflow.serving.engine`: the ONNX Runtime session the model classifies with;
- :mod:`~steelflow.serving.onnx_export` and :mod:`~steelflow.serving.build`: the network as ONNX, checked
  against PyTorch, optionally quantized;
- :mod:`~steelflow.serving.predict`: ``steelflow predict`` (files and folders to a table);
- :mod:`~steelflow.serving.http`: ``steelflow serve`` (MLflow's scoring app with a request-size limit).
"""
