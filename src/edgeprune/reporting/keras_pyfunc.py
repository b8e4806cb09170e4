"""MLflow "model from code" for the project's Keras detectors (logged by
:mod:`edgeprune.reporting.tracking`): loads the logged ``.keras`` file with tf_keras and returns
the raw head outputs (box offsets and class scores per anchor) for a float32 image batch; the
spec JSON logged beside it rebuilds the anchors (``edgeprune.detection.model_io``)."""

from __future__ import annotations

import warnings
from typing import Any

import mlflow.models
import mlflow.pyfunc

# MLflow suggests type hints on predict; the logged tensor signature is the schema instead.
warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")


class KerasDetector(mlflow.pyfunc.PythonModel):
    """A detector saved by ``edgeprune.detection.model_io.save_keras``."""

    def load_context(self, context: Any) -> None:
        from edgeprune.detection.model_io import load_keras

        self.model = load_keras(context.artifacts["keras_model"])

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - MLflow
        # reads type hints as a schema; the logged signature is the schema
        import numpy as np

        if isinstance(model_input, dict):  # a named tensor signature hands inputs by name
            model_input = [model_input[n] for n in self.model.input_names]
            model_input = model_input[0] if len(model_input) == 1 else model_input
        out = self.model.predict(np.asarray(model_input, dtype=np.float32), verbose=0)
        if isinstance(out, list | tuple):
            names = [t.name.split(":")[0].split("/")[0] for t in self.model.outputs]
            return dict(zip(names, out, strict=True))
        return out


mlflow.models.set_model(KerasDetector())
