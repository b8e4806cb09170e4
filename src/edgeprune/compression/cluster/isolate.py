"""The swept layer on its own: a small Keras model holding just one layer's unit of a detector
(issue 12, point 4), so a sweep's latency staircase is not diluted by the rest of the network.

The unit is the layer as the network runs it: ``conv -> batch norm -> ReLU6`` or, for a
MobileNet pointwise layer ``conv<i>``, the depthwise-pointwise pair ``conv<i>_dw -> bn -> ReLU6
-> conv<i> -> bn -> ReLU6``. Its input has the real shape the unit sees inside the detector
(batch 1). Built from a thinned detector, it is thinned the same way (same kept filters, same
weights). Its output equals the unit's output inside the detector for the same unit input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeprune.errors import ConfigError


def unit_layers(model: Any, layer: str) -> list[str]:
    """Names of the layers of ``layer``'s unit in ``model``, first to last: the depthwise
    triple ``<layer>_dw[_bn|_relu]`` when present, then ``<layer>``, ``<layer>_bn`` and
    ``<layer>_relu`` (those that exist). ConfigError if ``layer`` is not a Conv2D or the unit
    is not a chain (each layer reading only the previous one)."""
    names = {lay.name for lay in model.layers}
    if layer not in names or type(model.get_layer(layer)).__name__ != "Conv2D":
        raise ConfigError(f"cannot isolate {layer!r}: not a Conv2D layer of {model.name}")
    candidates = [f"{layer}_dw", f"{layer}_dw_bn", f"{layer}_dw_relu"] \
        if f"{layer}_dw" in names else []
    candidates += [layer, f"{layer}_bn", f"{layer}_relu"]
    chain = [n for n in candidates if n in names]
    for prev, cur in zip(chain, chain[1:], strict=False):
        parents = model.get_layer(cur).inbound_nodes[0].inbound_layers
        parents = parents if isinstance(parents, list | tuple) else [parents]
        if [p.name for p in parents] != [prev]:
            raise ConfigError(f"cannot isolate {layer!r}: {cur!r} does not read {prev!r} alone")
    return chain


def unit_input_shape(model: Any, layer: str) -> tuple[int, ...]:
    """Shape (without batch) of the tensor the unit of ``layer`` reads inside ``model``."""
    first = model.get_layer(unit_layers(model, layer)[0])
    shape = first.input_shape
    return tuple(int(d) for d in (shape[0] if isinstance(shape, list) else shape)[1:])


def isolate_layer(model: Any, layer: str, keras: Any | None = None,
                  keep: Sequence[int] | None = None) -> Any:
    """A new Keras model (batch 1 input of the unit's real shape) running only ``layer``'s
    unit, with copies of the detector's weights; named ``<layer>_isolated``.

    ``keep`` (filter indices of ``layer``) thins the unit as filter surgery would: only those
    filters of ``layer`` and the matching channels of its batch norm remain. Isolating a
    detector thinned by :func:`edgeprune.compression.cluster.surgery.prune_filters` gives the same
    model.
    """
    if keras is None:
        from edgeprune.tfenv import setup

        _, keras = setup()
    chain = unit_layers(model, layer)
    width = int(model.get_layer(layer).filters)
    idx = np.arange(width) if keep is None else np.unique(np.asarray(list(keep), dtype=np.int64))
    if not len(idx) or idx.min() < 0 or idx.max() >= width:
        raise ConfigError(f"cannot keep filters {idx.tolist()} of {layer!r} ({width} filters)")
    inp = keras.Input(unit_input_shape(model, layer), batch_size=1, name="unit_input")
    x = inp
    clones = []
    thinned = False
    for name in chain:
        src = model.get_layer(name)
        config = src.get_config()
        weights = src.get_weights()
        if name == layer:
            config["filters"] = len(idx)
            weights = [weights[0][..., idx], *(b[idx] for b in weights[1:])]
            thinned = True
        elif thinned and weights:
            weights = [w[idx] for w in weights]   # batch norm after the thinned conv
        clone = type(src).from_config(config)
        x = clone(x)
        clones.append((clone, weights))
    for clone, weights in clones:
        clone.set_weights(weights)
    return keras.Model(inp, x, name=f"{layer}_isolated")


def unit_io(model: Any, layer: str, keras: Any | None = None) -> Any:
    """A Keras model from the detector's image input to ``[unit input, unit output]`` of
    ``layer``: what the isolated model must reproduce (tests, checks)."""
    if keras is None:
        from edgeprune.tfenv import setup

        _, keras = setup()
    chain = unit_layers(model, layer)
    first, last = model.get_layer(chain[0]), model.get_layer(chain[-1])
    return keras.Model(model.inputs, [first.input, last.output])
