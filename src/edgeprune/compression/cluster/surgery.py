"""Filter surgery: remove convolution filters for real, giving a thinner detector.

The thinner network is rebuilt from its spec (``build_detector`` with new widths) and every
weight is copied over by layer name, sliced to the channels that survive. Which channels survive
where is found by walking the functional graph from each pruned convolution:

* channel-wise layers (batch norm, ReLU, pooling, rescaling, dropout, padding) and depthwise
  convolutions keep the channel selection of their input -- their per-channel parameters are
  sliced the same way;
* a channel concatenation (SqueezeNet's fire modules) places each input's selection at that
  input's channel offset;
* a convolution (pointwise, 3x3, an SSD head or an extra layer) that reads a thinned tensor
  loses the matching input channels of its kernel, and starts a fresh selection for its own
  output (all filters, or those kept when it is pruned itself);
* anything else (residual additions, reshapes, softmax, ...) must receive every channel: a
  residual addition ties two widths together, so pruning through one is refused.

So pruning ``conv<i>`` of SSD-MobileNet also thins ``conv<i+1>_dw`` (and its batch norm) and
the inputs of ``conv<i+1>``; pruning a SqueezeNet expand layer thins the fire's concat, the
next squeeze layer's inputs and, after fire8/fire9, the SSD heads and extra layers.

Limits: every width layer of SSD-MobileNet v1 and SSD-SqueezeNet can be pruned. MobileNetV2's
block outputs cannot (a block's expansion width is derived as t x its input width, and residual
additions tie widths), so only its ``stem`` (when block 1 has no residual, i.e. its width differs
from the stem's), ``last`` and the extra layers are prunable; expansion layers are not width
layers of the registry and are not pruned.

Equivalence with the unpruned model: a filter whose kernel is zero still outputs its batch
norm's shift. :func:`silence_filters` makes the removed channels exactly zero where their
consumers read them -- zero kernel and bias of the filter, and zero scale *and* shift of every
batch norm (and depthwise kernel) on the channel's way to the next convolution, so ReLU(0) = 0
flows into the consumers. Removing silenced filters leaves every output unchanged, which the
tests check on all three architectures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from edgeprune.detection.models import (
    DetectorSpec,
    build_detector,
    resolve_widths,
    width_layer_names,
)
from edgeprune.errors import ConfigError

_CHANNELWISE = {
    "BatchNormalization", "ReLU", "MaxPooling2D", "AveragePooling2D", "Dropout",
    "ZeroPadding2D", "Rescaling", "LeakyReLU", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
}

#: Width layers whose filters cannot be removed by surgery, with the reason.
_UNPRUNABLE: dict[str, tuple[str, str]] = {
    "mobilenet_v2_ssd": (
        r"b\d+",
        "a block's output width sets the next block's expansion width (t x input) and residual "
        "additions tie widths together; prune stem, last or the extra layers instead",
    ),
}

Keeps = dict[str, np.ndarray]


def prunable_layers(arch: str) -> list[str]:
    """Width layers of ``arch`` whose filters surgery can remove, in network order."""
    import re

    names = width_layer_names(arch)
    rule = _UNPRUNABLE.get(arch)
    if rule is None:
        return names
    return [n for n in names if not re.fullmatch(rule[0], n)]


def check_prunable(arch: str, layer: str, key: str | None = None) -> None:
    """ConfigError (naming config ``key`` if given) when ``layer`` is not prunable in ``arch``."""
    if layer in prunable_layers(arch):
        return
    where = f"config key '{key}': " if key else ""
    if layer in width_layer_names(arch) and arch in _UNPRUNABLE:
        raise ConfigError(f"{where}{arch} layer {layer!r} cannot be pruned: "
                          f"{_UNPRUNABLE[arch][1]}")
    raise ConfigError(f"{where}{layer!r} is not a prunable layer of {arch}; "
                      f"expected one of {prunable_layers(arch)}")


# --------------------------------------------------------------------------- graph walk


def _inbound(layer: Any) -> list[Any]:
    nodes = layer.inbound_nodes
    if len(nodes) != 1:
        raise ConfigError(f"layer {layer.name!r} is used {len(nodes)} times; surgery needs a "
                          "graph where each layer is called once")
    parents = nodes[0].inbound_layers
    return list(parents) if isinstance(parents, list | tuple) else [parents]


def _channels(layer: Any) -> int:
    shape = layer.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return int(shape[-1])


def _is_full(keep: np.ndarray, channels: int) -> bool:
    return len(keep) == channels and bool(np.all(keep == np.arange(channels)))


def _rank(layer: Any) -> int:
    shape = layer.output_shape
    return len(shape[0] if isinstance(shape, list) else shape)


def _elementwise_activation(layer: Any) -> bool:
    return type(layer).__name__ == "Activation" and layer.get_config()["activation"] != "softmax"


def trace_keeps(model: Any, pruned: Mapping[str, np.ndarray]) -> Keeps:
    """For every layer of ``model``, the indices of its output channels that survive when the
    Conv2D layers in ``pruned`` keep only the given filter indices."""
    keeps: Keeps = {}
    for layer in model.layers:
        kind = type(layer).__name__
        channels = _channels(layer)
        full = np.arange(channels)
        parents = [] if kind == "InputLayer" else _inbound(layer)
        ins = [keeps[p.name] for p in parents]
        if kind == "Conv2D":
            keep = np.asarray(pruned.get(layer.name, full), dtype=np.int64)
        elif kind == "DepthwiseConv2D":
            if layer.depth_multiplier != 1:
                raise ConfigError(f"layer {layer.name!r}: depth multiplier "
                                  f"{layer.depth_multiplier} is not supported by surgery")
            keep = ins[0]
        elif kind in _CHANNELWISE or _elementwise_activation(layer):
            keep = ins[0]
        elif kind == "Concatenate" and layer.axis in (-1, _rank(layer) - 1):
            offsets = np.cumsum([0] + [_channels(p) for p in parents[:-1]])
            keep = np.concatenate([k + o for k, o in zip(ins, offsets, strict=True)])
        elif kind == "InputLayer":
            keep = full
        else:
            for parent, k in zip(parents, ins, strict=True):
                if not _is_full(k, _channels(parent)):
                    raise ConfigError(
                        f"cannot prune through layer {layer.name!r} ({kind}): it needs every "
                        f"channel of {parent.name!r} (a residual addition or reshape ties the "
                        "width); choose another layer")
            keep = full
        if kind not in ("Conv2D", "InputLayer") and len(keep) and keep.max() >= channels:
            raise ConfigError(f"layer {layer.name!r}: channel bookkeeping failed")
        keeps[layer.name] = keep
    return keeps


def _input_keep(layer: Any, keeps: Keeps) -> np.ndarray:
    return keeps[_inbound(layer)[0].name]


def slice_weights(layer: Any, weights: list[np.ndarray], keeps: Keeps) -> list[np.ndarray]:
    """``layer``'s weights restricted to the surviving input and output channels."""
    kind = type(layer).__name__
    if not weights:
        return weights
    cin = _input_keep(layer, keeps)
    if kind == "Conv2D":
        cout = keeps[layer.name]
        kernel = weights[0][:, :, cin, :][:, :, :, cout]
        return [kernel, *(b[cout] for b in weights[1:])]
    if kind == "DepthwiseConv2D":
        return [weights[0][:, :, cin, :], *(b[cin] for b in weights[1:])]
    if kind == "BatchNormalization":
        return [w[cin] for w in weights]
    if all(_is_full(keeps[p.name], _channels(p)) for p in _inbound(layer)):
        return weights
    raise ConfigError(f"layer {layer.name!r} ({kind}) has weights that surgery cannot slice")


# --------------------------------------------------------------------------- pruning


def _keep_indices(widths: Mapping[str, int], remove: Mapping[str, Sequence[int]],
                  arch: str) -> dict[str, np.ndarray]:
    keep: dict[str, np.ndarray] = {}
    for layer, idx in remove.items():
        check_prunable(arch, layer)
        k = widths[layer]
        drop = np.unique(np.asarray(list(idx), dtype=np.int64))
        if len(drop) and (drop.min() < 0 or drop.max() >= k):
            raise ConfigError(f"layer {layer!r} has {k} filters; cannot remove indices "
                              f"{drop.tolist()}")
        if k - len(drop) < 1:
            raise ConfigError(f"layer {layer!r}: removing {len(drop)} of {k} filters leaves none")
        keep[layer] = np.setdiff1d(np.arange(k), drop)
    return keep


def prune_filters(model: Any, spec: DetectorSpec, remove: Mapping[str, Sequence[int]],
                  keras: Any | None = None) -> tuple[Any, DetectorSpec]:
    """A new, thinner detector without the filters ``remove[layer]`` (indices into the current
    filters of each layer), with all other weights copied; returns it and its spec."""
    widths = resolve_widths(spec)
    keep = _keep_indices(widths, remove, spec.arch)
    keeps = trace_keeps(model, keep)
    new_widths = {**widths, **{layer: len(k) for layer, k in keep.items()}}
    new_spec = replace(spec, widths=new_widths)
    thin = build_detector(new_spec, keras)
    copy_weights(model, thin, keeps)
    return thin, new_spec


def copy_weights(source: Any, target: Any, keeps: Keeps) -> None:
    """Copy every weight of ``source`` into the same-named layer of ``target``, sliced."""
    src_names = [layer.name for layer in source.layers]
    dst_names = [layer.name for layer in target.layers]
    if src_names != dst_names:
        extra = sorted(set(src_names) ^ set(dst_names))
        raise ConfigError(f"the thinner model's layers differ from the original's ({extra}); "
                          "the pruned width changed the network's structure")
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        sliced = slice_weights(layer, weights, keeps)
        dst = target.get_layer(layer.name)
        expected = [tuple(w.shape) for w in dst.get_weights()]
        got = [tuple(w.shape) for w in sliced]
        if expected != got:
            raise ConfigError(f"layer {layer.name!r}: sliced weights {got} do not fit the "
                              f"thinner model's {expected}")
        dst.set_weights(sliced)


def silence_filters(model: Any, remove: Mapping[str, Sequence[int]]) -> None:
    """Make the channels of filters ``remove[layer]`` exactly zero wherever a convolution reads
    them (in place): zero the filters' kernels and biases, and the scale and shift of each batch
    norm -- and the depthwise kernels -- those channels pass through."""
    keep = {}
    for layer, idx in remove.items():
        k = int(model.get_layer(layer).filters)
        keep[layer] = np.setdiff1d(np.arange(k), np.asarray(list(idx), dtype=np.int64))
    keeps = trace_keeps(model, keep)
    for layer in model.layers:
        kind = type(layer).__name__
        weights = layer.get_weights()
        if not weights:
            continue
        if kind == "Conv2D" and layer.name in keep:
            dead = np.setdiff1d(np.arange(layer.filters), keep[layer.name])
            weights = [w.copy() for w in weights]
            weights[0][..., dead] = 0.0
            for b in weights[1:]:
                b[dead] = 0.0
        elif kind in ("BatchNormalization", "DepthwiseConv2D"):
            cin = _input_keep(layer, keeps)
            dead = np.setdiff1d(np.arange(_channels(layer)), cin)
            if not len(dead):
                continue
            weights = [w.copy() for w in weights]
            if kind == "BatchNormalization":
                gamma, beta = weights[0], weights[1]
                gamma[dead] = 0.0
                beta[dead] = 0.0
            else:
                weights[0][:, :, dead, :] = 0.0
                for b in weights[1:]:
                    b[dead] = 0.0
        else:
            continue
        layer.set_weights(weights)
