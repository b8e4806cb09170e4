"""MobileNetV2 backbone for MobileNetV2-SSD (paper 1). Widths are each block's output channels;
a block's expansion width is ``t * input channels``. Residual adds exist where stride is 1 and
input and output widths match, so uneven widths simply drop the shortcut."""

from __future__ import annotations

from typing import Any

from edgeprune.detection.models.layers import conv_bn_relu, dw_bn_relu

# (expansion t, output channels, stride) for the 17 inverted-residual blocks.
BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
LAYERS: tuple[str, ...] = ("stem", *(f"b{i}" for i in range(1, 18)), "last")
DEFAULTS: tuple[int, ...] = (32, *(c for _, c, _ in BLOCKS), 1280)
# Expansion outputs of blocks 7 (stride 8) and 14 (stride 16) are SSD feature maps; block 14's
# is the first one in SSDLite at 300x300, block 7's serves small inputs (``first_stride: 8``).
FEATURE_BLOCKS = (7, 14)


def _block(k: Any, x: Any, i: int, t: int, out: int, stride: int) -> tuple[Any, Any]:
    L = k.layers
    cin = int(x.shape[-1])
    inp = x
    expanded = x
    if t != 1:
        expanded = conv_bn_relu(k, x, t * cin, 1, 1, f"b{i}_expand")
    y = dw_bn_relu(k, expanded, stride, f"b{i}_dw")
    y = conv_bn_relu(k, y, out, 1, 1, f"b{i}_project", relu=False)
    if stride == 1 and cin == out:
        y = L.Add(name=f"b{i}_add")([inp, y])
    return y, expanded


def backbone(k: Any, x: Any, widths: dict[str, int]) -> list[Any]:
    """Return the backbone feature maps at strides 8, 16 and 32."""
    x = conv_bn_relu(k, x, widths["stem"], 3, 2, "stem")
    maps = []
    for i, (t, _, stride) in enumerate(BLOCKS, start=1):
        x, expanded = _block(k, x, i, t, widths[f"b{i}"], stride)
        if i in FEATURE_BLOCKS:
            maps.append(expanded)
    x = conv_bn_relu(k, x, widths["last"], 1, 1, "last")
    return [*maps, x]
