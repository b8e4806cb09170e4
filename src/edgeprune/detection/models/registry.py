"""Detector registry: resolve per-layer widths, assemble backbone + extras + SSD heads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from edgeprune.detection.boxes import AnchorSpec, generate_anchors
from edgeprune.detection.models import mobilenet_v1, mobilenet_v2, squeezenet
from edgeprune.detection.models.layers import EXTRA_DEFAULTS, EXTRA_LAYERS, extra_feature_maps
from edgeprune.errors import ConfigError

ARCHITECTURES: dict[str, ModuleType] = {
    "mobilenet_v2_ssd": mobilenet_v2,
    "ssd_mobilenet_v1": mobilenet_v1,
    "ssd_squeezenet": squeezenet,
}


@dataclass(frozen=True)
class DetectorSpec:
    """Everything needed to rebuild a detector (and its anchors) from scratch."""

    arch: str
    num_classes: int
    input_size: tuple[int, int] = (300, 300)
    width_multiplier: float = 1.0
    widths: Mapping[str, int] | Sequence[int] | None = None
    min_scale: float = 0.1
    max_scale: float = 0.9
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    first_stride: int = 16

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with widths resolved to a full name -> filters mapping."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "input_size": list(self.input_size),
            "width_multiplier": self.width_multiplier,
            "widths": resolve_widths(self),
            "min_scale": self.min_scale,
            "max_scale": self.max_scale,
            "aspect_ratios": list(self.aspect_ratios),
            "first_stride": self.first_stride,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DetectorSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            arch=d["arch"], num_classes=int(d["num_classes"]),
            input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
            width_multiplier=float(d.get("width_multiplier", 1.0)),
            widths=dict(d["widths"]) if d.get("widths") is not None else None,
            min_scale=float(d.get("min_scale", 0.1)), max_scale=float(d.get("max_scale", 0.9)),
            aspect_ratios=tuple(float(a) for a in d.get("aspect_ratios", (1.0, 2.0, 0.5))),
            first_stride=int(d.get("first_stride", 16)),
        )


def _arch(name: str) -> ModuleType:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}"
        ) from None


def width_layer_names(arch: str) -> list[str]:
    """Names of the layers whose filter counts can be set, in network order."""
    return [*_arch(arch).LAYERS, *EXTRA_LAYERS]


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without dropping more than 10%."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def default_widths(arch: str, width_multiplier: float = 1.0) -> dict[str, int]:
    """Filter counts of the reference network scaled by the width multiplier."""
    defaults = [*_arch(arch).DEFAULTS, *EXTRA_DEFAULTS]
    return {n: make_divisible(w * width_multiplier) for n, w in zip(width_layer_names(arch),
                                                                     defaults, strict=True)}


def resolve_widths(spec: DetectorSpec) -> dict[str, int]:
    """Full name -> filters mapping: defaults, overridden by ``spec.widths`` (list or mapping)."""
    widths = default_widths(spec.arch, spec.width_multiplier)
    names = list(widths)
    given = spec.widths
    if given is None:
        return widths
    if isinstance(given, Mapping):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(f"widths: unknown layer(s) {unknown} for {spec.arch}; "
                              f"layers are {names}")
        widths.update({k: int(v) for k, v in given.items()})
    else:
        if len(given) != len(names):
            raise ConfigError(f"widths: {spec.arch} needs {len(names)} filter counts "
                              f"({names}), got {len(given)}")
        widths = {n: int(v) for n, v in zip(names, given, strict=True)}
    bad = {n: w for n, w in widths.items() if w < 1}
    if bad:
        raise ConfigError(f"widths: filter counts must be >= 1, got {bad}")
    return widths


def build_detector(spec: DetectorSpec, keras: Any | None = None) -> Any:
    """Build the training detector: outputs ``loc`` (B, A, 4) and ``conf_logits`` (B, A, C+1).

    Input is a float image with pixel values in [0, 255]; normalisation is inside the model.
    """
    if keras is None:
        from edgeprune.tfenv import setup

        _, keras = setup()
    L = keras.layers
    widths = resolve_widths(spec)
    h, w = spec.input_size
    inp = keras.Input((h, w, 3), name="image")
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inp)
    # Six feature maps: backbone strides 16 and 32 + four extras, or (first_stride 8, for small
    # inputs) backbone strides 8, 16, 32 + three extras.
    maps = _arch(spec.arch).backbone(keras, x, widths)
    if spec.first_stride == 16:
        maps = maps[1:]
    elif spec.first_stride != 8:
        raise ConfigError(f"first_stride must be 8 or 16, got {spec.first_stride}")
    maps += extra_feature_maps(keras, maps[-1], widths, n=6 - len(maps))
    k_per = len(spec.aspect_ratios) + 1
    locs, confs = [], []
    for i, fmap in enumerate(maps):
        loc = L.Conv2D(k_per * 4, 3, padding="same", name=f"head{i}_loc")(fmap)
        conf = L.Conv2D(k_per * (spec.num_classes + 1), 3, padding="same",
                        name=f"head{i}_conf")(fmap)
        locs.append(L.Reshape((-1, 4), name=f"head{i}_loc_flat")(loc))
        confs.append(L.Reshape((-1, spec.num_classes + 1), name=f"head{i}_conf_flat")(conf))
    loc = L.Concatenate(axis=1, name="loc")(locs)
    conf = L.Concatenate(axis=1, name="conf_logits")(confs)
    return keras.Model(inp, {"loc": loc, "conf_logits": conf}, name=spec.arch)


def feature_sizes(model: Any) -> tuple[tuple[int, int], ...]:
    """(H, W) of each head's feature map, read from the built model."""
    sizes = []
    i = 0
    while True:
        try:
            layer = model.get_layer(f"head{i}_loc")
        except ValueError:
            break
        shape = layer.output_shape
        sizes.append((int(shape[1]), int(shape[2])))
        i += 1
    return tuple(sizes)


def anchors_for(spec: DetectorSpec, model: Any) -> np.ndarray:
    """The anchors (A, 4) matching ``model``'s head layout."""
    return generate_anchors(AnchorSpec(feature_sizes(model), spec.min_scale, spec.max_scale,
                                       tuple(spec.aspect_ratios)))


def export_model(model: Any, keras: Any | None = None) -> Any:
    """Deployment graph: backbone + heads with softmax scores; outputs ``loc`` and ``conf``.

    Anchor decoding and NMS stay on the host so the converted model has only builtin ops.
    """
    if keras is None:
        from edgeprune.tfenv import setup

        _, keras = setup()
    outputs = model.outputs
    names = model.output_names
    by_name = dict(zip(names, outputs, strict=True))
    conf = keras.layers.Softmax(axis=-1, name="conf")(by_name["conf_logits"])
    return keras.Model(model.inputs, {"loc": by_name["loc"], "conf": conf},
                       name=f"{model.name}_export")
