"""MobileNet v1 backbone for SSD-MobileNet (paper 2). ``conv0`` is the 3x3 stem; ``conv<i>``
(i = 1..13) are the pointwise layers, each preceded by depthwise ``conv<i>_dw``. Pruning the
filters of ``conv<i>`` removes channels of ``conv<i+1>_dw`` and inputs of ``conv<i+1>``."""

from __future__ import annotations

from typing import Any

from edgeprune.detection.models.layers import conv_bn_relu, dw_bn_relu

STRIDES: tuple[int, ...] = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
LAYERS: tuple[str, ...] = tuple(f"conv{i}" for i in range(14))
DEFAULTS: tuple[int, ...] = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


def backbone(k: Any, x: Any, widths: dict[str, int]) -> list[Any]:
    """Return the conv5 (stride 8), conv11 (stride 16) and conv13 (stride 32) feature maps."""
    x = conv_bn_relu(k, x, widths["conv0"], 3, 2, "conv0")
    maps = []
    for i, stride in enumerate(STRIDES, start=1):
        x = dw_bn_relu(k, x, stride, f"conv{i}_dw")
        x = conv_bn_relu(k, x, widths[f"conv{i}"], 1, 1, f"conv{i}")
        if i in (5, 11, 13):
            maps.append(x)
    return maps
