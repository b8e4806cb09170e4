"""Model cost: parameter count and multiply-accumulates (MACs) of one forward pass (batch 1).

MACs count the convolution and dense layers (the work the hardware does); batch norm, ReLU,
pooling and reshapes are left out, as is usual. A Conv2D output of size H×W×C_out with a
kh×kw kernel over C_in channels costs H·W·C_out·kh·kw·C_in; a depthwise one H·W·C·kh·kw.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _spatial(shape: Any) -> int:
    dims = [int(d) for d in shape[1:-1]]
    return int(np.prod(dims)) if dims else 1


def layer_macs(layer: Any) -> int:
    """MACs of one Keras layer for a single image (0 for layers that do no multiplications)."""
    kind = type(layer).__name__
    weights = layer.get_weights()
    if not weights:
        return 0
    if kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return _spatial(layer.output_shape) * int(weights[0].size)
    return 0


def model_cost(model: Any) -> dict[str, int]:
    """``params`` (every weight, trainable or not) and ``macs`` of a built Keras model."""
    params = int(sum(np.asarray(w).size for w in model.get_weights()))
    macs = int(sum(layer_macs(layer) for layer in model.layers))
    return {"params": params, "macs": macs}
