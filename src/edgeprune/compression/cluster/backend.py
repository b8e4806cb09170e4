"""The framework a paper-2 run prunes with (``paper2.backend``): everything that touches a
model, behind one small interface, so sweeps and whole-model series run the same code and the
same framework-neutral plan (:mod:`edgeprune.compression.cluster.algorithm`) for either.

* ``keras`` -- the project's Keras surgery (:mod:`edgeprune.compression.cluster.surgery`);
* ``torch`` -- the torch twins pruned through Torch-Pruning
  (:mod:`edgeprune.compression.torch_backend`), started from the ported Keras base.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.detection.models import DetectorSpec

#: ``paper2.backend`` values.
BACKENDS: tuple[str, ...] = ("keras", "torch")

#: Architectures the torch backend has a twin of (no torch import needed to check a config).
TORCH_ARCHS: tuple[str, ...] = ("ssd_mobilenet_v1", "ssd_squeezenet")


@dataclass(frozen=True)
class Backend:
    """One framework's model operations.

    ``scores(model, layers)`` θ_MW per filter of each layer; ``prune(model, spec, removal)``
    a thinner copy and its spec (``model`` unchanged); ``artifacts(model, stem, formats)`` the
    deployment files (``Artifact`` per format); ``cost(model)`` params and MACs;
    ``runner(model)`` a :data:`edgeprune.detection.detect.Runner`; ``isolate(model, layer,
    keep)`` the layer's unit alone and ``unit_artifacts(unit, stem, formats)`` its files;
    ``unit_shape(model, layer)`` the unit's input shape (for logs); ``load(keras_model,
    spec)`` the backend's model of a Keras detector (the Keras model itself, or its port).
    """

    name: str
    scores: Callable[[Any, Sequence[str]], dict[str, np.ndarray]]
    prune: Callable[[Any, DetectorSpec, Mapping[str, Sequence[int]]], tuple[Any, DetectorSpec]]
    artifacts: Callable[[Any, Path, tuple[str, ...]], dict[str, Any]]
    cost: Callable[[Any], dict[str, int]]
    runner: Callable[[Any], Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]
    isolate: Callable[[Any, str, Sequence[int] | None], Any]
    unit_artifacts: Callable[[Any, Path, tuple[str, ...]], dict[str, Any]]
    unit_shape: Callable[[Any, str], tuple[int, ...]]
    load: Callable[[Any, DetectorSpec], Any]


def keras_backend(keras: Any = None) -> Backend:
    """The Keras surgery and the project's Keras conversion path (``.tflite`` and IR from one
    frozen graph, ONNX through tf2onnx)."""
    from edgeprune.compression.cluster.convert import write_artifacts, write_model_artifacts
    from edgeprune.compression.cluster.cost import model_cost
    from edgeprune.compression.cluster.importance import layer_scores
    from edgeprune.compression.cluster.isolate import isolate_layer, unit_input_shape
    from edgeprune.compression.cluster.surgery import prune_filters
    from edgeprune.detection.detect import keras_runner

    return Backend(
        name="keras", scores=layer_scores,
        prune=lambda model, spec, removal: prune_filters(model, spec, removal, keras),
        artifacts=write_artifacts, cost=model_cost, runner=keras_runner,
        isolate=lambda model, layer, keep: isolate_layer(model, layer, keras, keep),
        unit_artifacts=write_model_artifacts, unit_shape=unit_input_shape,
        load=lambda model, spec: model)


def get_backend(name: str, keras: Any = None) -> Backend:
    """The backend called ``name`` (``keras`` | ``torch``); the torch one imports torch."""
    if name == "keras":
        return keras_backend(keras)
    if name == "torch":
        from edgeprune.compression.torch_backend.backend import torch_backend

        return torch_backend(keras)
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
