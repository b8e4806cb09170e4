"""SqueezeNet v1.1 backbone for SSD-SqueezeNet (paper 2), with batch norm so it trains from
scratch. Each fire module ``fire<i>`` has ``_squeeze1x1``, ``_expand1x1``, ``_expand3x3`` and a
``_concat`` of the two expands; pruning an expand layer removes inputs of the next squeeze."""

from __future__ import annotations

from typing import Any

from edgeprune.detection.models.layers import conv_bn_relu

FIRES: tuple[tuple[int, int, int], ...] = (
    (16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
    (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256),
)
_PARTS = ("squeeze1x1", "expand1x1", "expand3x3")
LAYERS: tuple[str, ...] = (
    "conv1", *(f"fire{i}_{p}" for i in range(2, 10) for p in _PARTS),
)
DEFAULTS: tuple[int, ...] = (64, *(w for fire in FIRES for w in fire))
# Max-pool (3x3, stride 2) after these layers.
_POOL_AFTER = ("conv1", "fire3", "fire5", "fire8")


def _fire(k: Any, x: Any, i: int, widths: dict[str, int]) -> Any:
    s = conv_bn_relu(k, x, widths[f"fire{i}_squeeze1x1"], 1, 1, f"fire{i}_squeeze1x1")
    e1 = conv_bn_relu(k, s, widths[f"fire{i}_expand1x1"], 1, 1, f"fire{i}_expand1x1")
    e3 = conv_bn_relu(k, s, widths[f"fire{i}_expand3x3"], 3, 1, f"fire{i}_expand3x3")
    return k.layers.Concatenate(name=f"fire{i}_concat")([e1, e3])


def backbone(k: Any, x: Any, widths: dict[str, int]) -> list[Any]:
    """Return the fire5 (stride 8), fire8 (stride 16) and fire9 (stride 32) feature maps."""
    L = k.layers
    x = conv_bn_relu(k, x, widths["conv1"], 3, 2, "conv1")
    x = L.MaxPooling2D(3, 2, padding="same", name="pool1")(x)
    maps = []
    for i in range(2, 10):
        x = _fire(k, x, i, widths)
        if i in (5, 8):
            maps.append(x)
        if f"fire{i}" in _POOL_AFTER:
            x = L.MaxPooling2D(3, 2, padding="same", name=f"pool{i}")(x)
    maps.append(x)
    return maps
