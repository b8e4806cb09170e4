"""Filter importance: the minimum-weight criterion θ_MW of paper 2 (Eq. 3).

For a convolution filter with ``c`` input kernels of size ``p × p``, θ_MW is the mean of the
squared weights over all ``c·p·p`` entries. Small values mark filters whose removal should
disturb the network least.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeprune.errors import ConfigError


def theta_mw(kernel: np.ndarray) -> np.ndarray:
    """θ_MW of every filter of a Conv2D kernel shaped (kh, kw, c_in, c_out) -> (c_out,)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4:
        raise ValueError(f"expected a 4-D Conv2D kernel (kh, kw, c_in, c_out), got {k.shape}")
    return np.mean(np.square(k), axis=(0, 1, 2))


def conv_kernel(model: Any, layer: str) -> np.ndarray:
    """The kernel of the Conv2D layer ``layer``; ConfigError when it is not one."""
    try:
        obj = model.get_layer(layer)
    except ValueError:
        raise ConfigError(f"layer {layer!r} does not exist in model {model.name!r}") from None
    if type(obj).__name__ != "Conv2D":
        raise ConfigError(f"layer {layer!r} is a {type(obj).__name__}, not a Conv2D; only "
                          "convolution filters can be ranked and pruned")
    return np.asarray(obj.get_weights()[0])


def layer_scores(model: Any, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """θ_MW per filter for each named layer."""
    return {name: theta_mw(conv_kernel(model, name)) for name in layers}


def ascending_order(scores: np.ndarray) -> np.ndarray:
    """Filter indices from least to most important; ties keep index order (deterministic)."""
    return np.argsort(np.asarray(scores), kind="stable")
