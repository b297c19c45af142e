"""The registered model, as code (MLflow models-from-code): ``log_model`` gets this file's path, not a pickle.

MLflow runs this file when it loads a version and takes the model :func:`mlflow.models.set_model` names.
``load_context`` builds the engine that ``model_config["engine"]`` names (ONNX Runtime by default, with the
thread counts of ``registry.serving``; PyTorch as the fallback) from the version's artifacts ``onnx`` and
``model``; ``predict`` is :func:`steelflow.serving.pyfunc.classify_with`, under the version's own limits
(pixels, the small-image rule of ``registry.serving``), which therefore hold wherever the version is loaded.
Bad input is a :class:`BadRequest`: the scoring server answers HTTP 400 with one line and stays up.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from steelflow.serving import engine
from steelflow.serving.pyfunc import BadInput, SmallImageRule, cells_of, classify_with


class BadRequest(MlflowException):
    """HTTP 400 with a one-line message and no stack trace.

    ``mlflow models serve`` rewrites a failed prediction's ``message`` to quote the whole input (megabytes
    of base64, over several lines); this exception keeps its own line instead.
    """

    def __init__(self, line: str):
        self._line = line
        super().__init__(line, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, value: str) -> None:
        pass  # keep the one line (see the class docstring)


class SteelClassifier(PythonModel):
    def load_context(self, context: Any) -> None:
        self.config = dict(context.model_config)
        SmallImageRule.of(self.config)  # a rule it does not know fails the load, not every request
        self.logits = engine.load(self.config, context.artifacts)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            return classify_with(self.logits, self.config, cells_of(model_input))
        except BadInput as e:
            raise BadRequest(str(e)) from None


set_model(SteelClassifier())
