"""Weight port between a Keras detector and its torch twin (same spec, same layer names).

Layouts: a Keras ``Conv2D`` kernel is (kh, kw, c_in, c_out), torch's (c_out, c_in, kh, kw); a
Keras ``DepthwiseConv2D`` kernel is (kh, kw, c, 1), torch's grouped conv (c, 1, kh, kw); a
Keras batch norm holds gamma, beta, moving mean, moving variance -- torch's weight, bias,
running_mean, running_var (both with epsilon 1e-3). Every Keras layer with weights must land
in a torch module of the same name, and every torch parameter or buffer that holds weights
must be written, or the port fails naming the layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune.compression.torch_backend.models import SSDTorch, build_torch_detector
from edgeprune.detection.models import DetectorSpec
from edgeprune.errors import ConfigError


def _conv_to_torch(kind: str, weights: list[np.ndarray]) -> list[np.ndarray]:
    if kind == "DepthwiseConv2D":
        return [np.transpose(weights[0], (2, 3, 0, 1)), *weights[1:]]
    return [np.transpose(weights[0], (3, 2, 0, 1)), *weights[1:]]


def _conv_to_keras(module: nn.Conv2d) -> list[np.ndarray]:
    w = module.weight.detach().cpu().numpy()
    depthwise = module.groups > 1
    kernel = np.transpose(w, (2, 3, 0, 1)) if depthwise else np.transpose(w, (2, 3, 1, 0))
    bias = [] if module.bias is None else [module.bias.detach().cpu().numpy()]
    return [kernel, *bias]


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    if isinstance(module, nn.BatchNorm2d):
        return [module.weight, module.bias, module.running_mean, module.running_var]
    if isinstance(module, nn.Conv2d):
        return [module.weight] + ([] if module.bias is None else [module.bias])
    return []


def keras_to_torch(keras_model: Any, spec: DetectorSpec,
                   target: SSDTorch | None = None) -> SSDTorch:
    """A torch detector of ``spec`` holding ``keras_model``'s weights (``target`` is filled
    in place when given). Shapes must agree layer by layer."""
    model = target if target is not None else build_torch_detector(spec)
    modules = dict(model.named_modules())
    written: set[str] = set()
    for layer in keras_model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kind = type(layer).__name__
        module = modules.get(layer.name)
        if module is None:
            raise ConfigError(f"Keras layer {layer.name!r} ({kind}) has no torch module of that "
                              f"name in the {spec.arch} twin")
        if kind in ("Conv2D", "DepthwiseConv2D"):
            values = _conv_to_torch(kind, weights)
        elif kind == "BatchNormalization":
            values = weights
        else:
            raise ConfigError(f"Keras layer {layer.name!r} ({kind}): no port to torch")
        tensors = _tensors(module)
        got = [tuple(v.shape) for v in values]
        want = [tuple(t.shape) for t in tensors]
        if got != want:
            raise ConfigError(f"layer {layer.name!r}: Keras weights {got} do not fit the torch "
                              f"module's {want}")
        with torch.no_grad():
            for t, v in zip(tensors, values, strict=True):
                t.copy_(torch.from_numpy(np.ascontiguousarray(v)))
        written.add(layer.name)
    missing = sorted(name for name, m in modules.items() if _tensors(m) and name not in written)
    if missing:
        raise ConfigError(f"torch modules {missing} received no Keras weights")
    return model.eval()


def torch_to_keras(model: SSDTorch, keras_model: Any) -> Any:
    """Write the torch detector's weights into a Keras detector of the same widths (in place;
    returned). The inverse of :func:`keras_to_torch`."""
    modules = dict(model.named_modules())
    for layer in keras_model.layers:
        if not layer.get_weights():
            continue
        module = modules.get(layer.name)
        if module is None:
            raise ConfigError(f"Keras layer {layer.name!r} has no torch module of that name")
        if isinstance(module, nn.Conv2d):
            values = _conv_to_keras(module)
        else:
            values = [t.detach().cpu().numpy() for t in _tensors(module)]
        want = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if got != want:
            raise ConfigError(f"layer {layer.name!r}: torch weights {got} do not fit the Keras "
                              f"layer's {want}")
        layer.set_weights(values)
    return keras_model
