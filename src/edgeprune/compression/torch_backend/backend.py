"""The torch :class:`~edgeprune.compression.cluster.backend.Backend`: torch twins pruned
through Torch-Pruning, exported to the same runtimes, scored by the same evaluator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeprune.compression.cluster.backend import Backend
from edgeprune.compression.torch_backend.export import (
    torch_cost,
    torch_runner,
    write_torch_artifacts,
    write_unit_artifacts,
)
from edgeprune.compression.torch_backend.isolate import (
    TorchUnit,
    isolate_torch,
    keras_unit_factory,
    unit_shape,
)
from edgeprune.compression.torch_backend.models import SSDTorch
from edgeprune.compression.torch_backend.port import keras_to_torch
from edgeprune.compression.torch_backend.prune import prune_torch, torch_layer_scores


def torch_backend(keras: Any = None) -> Backend:
    """The torch backend (``keras`` is used only for the ``.tflite`` files, which go through
    the Keras twin)."""

    def isolate(model: SSDTorch, layer: str, keep: Sequence[int] | None) -> TorchUnit:
        unit = isolate_torch(model, layer, keep)
        unit.keras_unit = lambda: keras_unit_factory(model, layer, keep, keras)
        return unit

    return Backend(
        name="torch", scores=torch_layer_scores, prune=prune_torch,
        artifacts=lambda model, stem, formats: write_torch_artifacts(model, stem, formats, keras),
        cost=torch_cost, runner=torch_runner, isolate=isolate,
        unit_artifacts=write_unit_artifacts, unit_shape=unit_shape,
        load=lambda keras_model, spec: keras_to_torch(keras_model, spec))
