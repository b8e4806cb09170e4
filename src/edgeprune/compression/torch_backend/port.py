"""Weight port between a Keras detector and its torch twin (same spec, same layer names).

Layouts: a Keras ``Conv2D`` kernel is (kh, kw, c_in, c_out), torch's (c_out, c_in, kh, kw); a
Keras ``DepthwiseConv2D`` kernel is (kh, kw, c, 1), torch's grouped conv (c, 1, kh, kw); a
Keras batch norm holds gamma, beta, moving mean, moving variance -- torch's weight, bias,
running_mean, running_var (both with epsilon 1e-3). Every Keras layer with weights must land
in a torch module of the same name, and every torch parameter or buffer that holds weights
must be written, or the port fails naming the layer.

Equivalence (:func:`check_port`): the port is exact -- in float64 the twin's raw outputs equal
the Keras model's to ~1e-14 -- and in float32 the two frameworks differ only by round-off (their
kernels sum in different orders), which grows with the outputs' magnitude: a few 1e-7 of the
largest output, as large as Keras's own float32 error against float64.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune.compression.torch_backend.models import SSDTorch, build_torch_detector
from edgeprune.detection.models import DetectorSpec, build_detector
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


#: The raw outputs compared by :func:`port_max_diff` (training detector, before softmax).
OUTPUTS: tuple[str, ...] = ("loc", "conf_logits")


def keras_float64(keras_model: Any, spec: DetectorSpec) -> Any:
    """A float64 Keras detector of ``spec`` holding ``keras_model``'s weights (the float64
    reference of :func:`check_port`); the global float type and dtype policy are restored
    afterwards. Both are set: once a global policy exists (training sets one), layers follow it
    and ignore ``floatx``."""
    from edgeprune.tfenv import setup

    _, keras = setup()
    floatx, policy = keras.backend.floatx(), keras.mixed_precision.global_policy()
    keras.backend.set_floatx("float64")
    keras.mixed_precision.set_global_policy("float64")
    try:
        model = build_detector(spec, keras)
    finally:
        keras.backend.set_floatx(floatx)
        keras.mixed_precision.set_global_policy(policy)
    model.set_weights([np.asarray(w, np.float64) for w in keras_model.get_weights()])
    return model


def _keras_dtype(keras_model: Any) -> str:
    dtype = str(keras_model.inputs[0].dtype.name)
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"Keras model {keras_model.name!r}: input dtype {dtype}, expected "
                          f"float32 or float64")
    return dtype


def raw_outputs(keras_model: Any, model: SSDTorch,
                images: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Raw outputs (:data:`OUTPUTS`) of the Keras detector and of its torch twin on NHWC
    ``images`` (0..255), both in the Keras model's float type (the torch model runs as a copy
    in that type), as float64 arrays: ``(keras, torch)``."""
    dtype = _keras_dtype(keras_model)
    x = np.asarray(images, dtype)
    twin = copy.deepcopy(model).to(getattr(torch, dtype)).eval()
    out = keras_model(x, training=False)
    with torch.no_grad():
        loc, logits = twin(torch.from_numpy(x).permute(0, 3, 1, 2))
    keras_out = {k: np.asarray(out[k], np.float64) for k in OUTPUTS}
    torch_out = {"loc": loc.double().numpy(), "conf_logits": logits.double().numpy()}
    return keras_out, torch_out


def _max_abs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.abs(a[k] - b[k]).max()) for k in OUTPUTS}


def port_max_diff(keras_model: Any, model: SSDTorch, images: np.ndarray) -> dict[str, float]:
    """Max |Keras - torch| per raw output on ``images``, computed in the Keras model's float
    type (pass :func:`keras_float64`'s model to check the port without float32 round-off)."""
    return _max_abs(*raw_outputs(keras_model, model, images))


@dataclass(frozen=True)
class PortCheck:
    """The port's equivalence per raw output (``loc``, ``conf_logits``), all max abs values
    over the images: ``float64`` |Keras - torch| in float64 (the port itself: ~1e-14 when exact),
    ``float32`` |Keras - torch| in float32, ``keras_error`` / ``torch_error`` each framework's
    float32 outputs against the float64 Keras ones (its own round-off), ``magnitude`` the
    largest float64 output."""

    float64: dict[str, float]
    float32: dict[str, float]
    keras_error: dict[str, float]
    torch_error: dict[str, float]
    magnitude: dict[str, float]

    def relative(self) -> dict[str, float]:
        """The float32 difference relative to the output's magnitude, per output."""
        return {k: self.float32[k] / max(self.magnitude[k], 1e-30) for k in OUTPUTS}


def check_port(keras_model: Any, model: SSDTorch, spec: DetectorSpec,
               images: np.ndarray) -> PortCheck:
    """Compare the float32 Keras detector ``keras_model`` and its torch twin on ``images``
    in float32 and in float64 (see :class:`PortCheck`)."""
    if _keras_dtype(keras_model) != "float32":
        raise ConfigError(f"check_port: Keras model {keras_model.name!r} must be float32 "
                          f"(the float64 reference is built from it)")
    k32, t32 = raw_outputs(keras_model, model, images)
    k64, t64 = raw_outputs(keras_float64(keras_model, spec), model, images)
    return PortCheck(float64=_max_abs(k64, t64), float32=_max_abs(k32, t32),
                     keras_error=_max_abs(k32, k64), torch_error=_max_abs(t32, k64),
                     magnitude={k: float(np.abs(k64[k]).max()) for k in OUTPUTS})
