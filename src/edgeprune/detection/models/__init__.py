"""SSD detectors built with tf_keras, with per-layer widths so structured pruning can rebuild
thinner models: MobileNetV2-SSD (paper 1), SSD-MobileNet v1 and SSD-SqueezeNet (paper 2)."""

from edgeprune.detection.models.registry import (
    ARCHITECTURES,
    DetectorSpec,
    build_detector,
    default_widths,
    export_model,
    feature_sizes,
    resolve_widths,
    width_layer_names,
)

__all__ = [
    "ARCHITECTURES",
    "DetectorSpec",
    "build_detector",
    "default_widths",
    "export_model",
    "feature_sizes",
    "resolve_widths",
    "width_layer_names",
]
