"""Small tf_keras building blocks shared by the detectors. Layer names are part of the API:
structured pruning finds coupled layers by name (``<conv>``, ``<conv>_bn``, ``<conv>_relu``)."""

from __future__ import annotations

from typing import Any


def conv_bn_relu(k: Any, x: Any, filters: int, kernel: int, stride: int, name: str,
                 relu: bool = True) -> Any:
    """Conv2D (no bias) + BatchNorm (+ ReLU6)."""
    L = k.layers
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = L.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
    if relu:
        x = L.ReLU(6.0, name=f"{name}_relu")(x)
    return x


def dw_bn_relu(k: Any, x: Any, stride: int, name: str) -> Any:
    """3x3 DepthwiseConv2D (no bias) + BatchNorm + ReLU6."""
    L = k.layers
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = L.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x)


EXTRA_LAYERS: tuple[str, ...] = (
    "extra1_1", "extra1_2", "extra2_1", "extra2_2",
    "extra3_1", "extra3_2", "extra4_1", "extra4_2",
)
EXTRA_DEFAULTS: tuple[int, ...] = (256, 512, 128, 256, 128, 256, 64, 128)


def extra_feature_maps(k: Any, x: Any, widths: dict[str, int], n: int = 4) -> list[Any]:
    """``n`` SSD extra stages (1x1 reduce, 3x3 stride 2), each giving one more feature map."""
    maps = []
    for i in range(1, n + 1):
        x = conv_bn_relu(k, x, widths[f"extra{i}_1"], 1, 1, f"extra{i}_1")
        x = conv_bn_relu(k, x, widths[f"extra{i}_2"], 3, 2, f"extra{i}_2")
        maps.append(x)
    return maps
