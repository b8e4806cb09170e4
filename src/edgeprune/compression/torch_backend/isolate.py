"""The swept layer of a torch detector on its own (the torch counterpart of
:mod:`edgeprune.compression.cluster.isolate`): the layer's unit -- ``conv -> bn -> ReLU6``, or
for a MobileNet pointwise layer ``conv<i>_dw -> bn -> ReLU6 -> conv<i> -> bn -> ReLU6`` -- with
copies of the detector's modules, NHWC input of the real shape the unit sees (batch 1). Thinned
to the kept filters through Torch-Pruning (the batch norm follows its convolution)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from edgeprune.compression.torch_backend.models import SSDTorch
from edgeprune.errors import ConfigError


def unit_names(model: SSDTorch, layer: str) -> list[str]:
    """Module names of ``layer``'s unit, first to last (same names as the Keras unit's)."""
    modules = dict(model.named_modules())
    if layer not in modules or not isinstance(modules[layer], nn.Conv2d) \
            or modules[layer].groups != 1:
        raise ConfigError(f"cannot isolate {layer!r}: not a convolution of the torch "
                          f"{model.spec.arch}")
    names = [f"{layer}_dw", f"{layer}_dw_bn"] if f"{layer}_dw" in modules else []
    return names + [layer, f"{layer}_bn"]


class TorchUnit(nn.Module):
    """One unit of a torch detector: NHWC input -> NHWC output, ReLU6 after each batch norm."""

    def __init__(self, model: SSDTorch, layer: str) -> None:
        super().__init__()
        self.names = unit_names(model, layer)
        for name in self.names:
            self.add_module(name, copy.deepcopy(model.get_submodule(name)))
        first = self.get_submodule(self.names[0])
        self.input_shape = (1, *first.in_hw, int(first.in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        for name in self.names:
            x = self.get_submodule(name)(x)
            if name.endswith("_bn"):
                x = torch.clamp(x, 0.0, 6.0)
        return x.permute(0, 2, 3, 1)


def isolate_torch(model: SSDTorch, layer: str, keep: Sequence[int] | None = None) -> TorchUnit:
    """``layer``'s unit alone, thinned to the filters ``keep`` (all when None)."""
    unit = TorchUnit(model, layer).eval()
    conv = unit.get_submodule(layer)
    width = int(conv.out_channels)
    kept = sorted({int(i) for i in (range(width) if keep is None else keep)})
    if not kept or kept[0] < 0 or kept[-1] >= width:
        raise ConfigError(f"cannot keep filters {kept} of {layer!r} ({width} filters)")
    drop = sorted(set(range(width)) - set(kept))
    if drop:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(
                unit, example_inputs=torch.zeros(unit.input_shape), verbose=False)
        dg.get_pruning_group(conv, tp.prune_conv_out_channels, drop).prune()
    return unit


def unit_shape(model: SSDTorch, layer: str) -> tuple[int, ...]:
    """The unit's input shape without the batch (NHWC), like the Keras unit's."""
    return TorchUnit(model, layer).input_shape[1:]


def keras_unit_factory(model: SSDTorch, layer: str, keep: Sequence[int] | None,
                       keras: Any = None) -> Any:
    """The Keras twin of the unit (same weights), for the ``.tflite`` file."""
    from edgeprune.compression.cluster.isolate import isolate_layer
    from edgeprune.compression.torch_backend.export import keras_twin

    return isolate_layer(keras_twin(model, keras), layer, keras, keep)
