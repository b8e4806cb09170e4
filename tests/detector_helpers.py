"""Tiny real detectors (edgeprune.models) and random detection data shared by the model, pruning
and quantization tests. Models are small (64x64 input, width multiplier 0.25) so that building
one takes a second or two."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from edgeprune.models import DetectorSpec, build_detector
from edgeprune.tfenv import setup
from edgeprune.train import DetectionData

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
