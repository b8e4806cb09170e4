"""Tiny real detectors (edgeprune.detection.models) and random detection data shared by the model,
pruning
and quantization tests. Models are small (64x64 input, width multiplier 0.25) so that building
one takes a second or two."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from edgeprune.detection.models import DetectorSpec, build_detector
from edgeprune.detection.train import DetectionData
from edgeprune.tfenv import setup

INPUT_SIZE = 64
NUM_CLASSES = 3


def tf_keras(seed: int | None = 0) -> tuple[ModuleType, ModuleType]:
    """``(tensorflow, tf_keras)`` the project way, seeded."""
    return setup(2, seed)


def tiny_spec(arch: str, **overrides: Any) -> DetectorSpec:
    """A 64x64, width-0.25, 3-class spec of ``arch`` (fields overridable)."""
    fields: dict[str, Any] = {
        "arch": arch,
        "num_classes": NUM_CLASSES,
        "input_size": (INPUT_SIZE, INPUT_SIZE),
        "width_multiplier": 0.25,
        "aspect_ratios": (1.0, 2.0, 0.5),
    }
    fields.update(overrides)
    return DetectorSpec(**fields)


def build_tiny(spec: DetectorSpec, seed: int = 0) -> Any:
    """Build the training detector of ``spec`` with seeded initialisation."""
    _, keras = tf_keras(seed)
    return build_detector(spec, keras)


def random_images(n: int, size: int = INPUT_SIZE, seed: int = 0) -> np.ndarray:
    """``n`` random RGB images (n, size, size, 3) float32 with pixel values 0..255."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, size=(n, size, size, 3)).astype(np.float32)


def random_detection_data(n: int, size: int = INPUT_SIZE, num_classes: int = NUM_CLASSES,
                          seed: int = 0) -> DetectionData:
    """``n`` random uint8 images, each with 1-2 random normalised boxes and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    boxes, labels = [], []
    for _ in range(n):
        k = int(rng.integers(1, 3))
        xy0 = rng.uniform(0.0, 0.5, size=(k, 2))
        wh = rng.uniform(0.2, 0.5, size=(k, 2))
        boxes.append(np.concatenate([xy0, xy0 + wh], axis=1).astype(np.float32))
        labels.append(rng.integers(0, num_classes, size=k).astype(np.int64))
    return DetectionData(images=images, boxes=boxes, labels=labels)


def smooth_images(n: int, size: int = INPUT_SIZE, seed: int = 0) -> np.ndarray:
    """``n`` low-frequency integer-valued images (n, size, size, 3) float32 in 0..255.

    Each image contains a 0 and a 255 pixel, so an int8 input calibrated on them gets scale 1
    and represents the images exactly.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        out[i] = np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR))
    out[:, 0, 0, :] = 0.0
    out[:, 0, 1, :] = 255.0
    return out


def zero_smallest_weights(model: Any, fraction: float, layer_type: str = "Conv2D") -> None:
    """Zero the ``fraction`` smallest-magnitude kernel weights of every ``layer_type`` layer
    (what magnitude pruning leaves behind), in place."""
    for layer in model.layers:
        if type(layer).__name__ != layer_type:
            continue
        weights = layer.get_weights()
        kernel = weights[0]
        threshold = np.quantile(np.abs(kernel), fraction)
        weights[0] = np.where(np.abs(kernel) > threshold, kernel, 0.0).astype(kernel.dtype)
        layer.set_weights(weights)


def calibrate_batchnorm(model: Any, images: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to its batch statistics on ``images``.

    A freshly initialised detector (moving mean 0, variance 1) shrinks activations layer after
    layer until its outputs are ~0 and its scores uniform, which makes output comparisons
    vacuous; after this, activations are normalised as in a trained network.
    """
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        model(images, training=True)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
