"""A tiny SSD-shaped Keras model converted to float32 and full-int8 ``.tflite`` for the tests.

The conversions are slow (seconds each), so they happen once per test session, on first use, and
the files are shared by test_latency.py and test_transport.py. The model follows the export
contract of the real detectors: input ``image`` is an NHWC float image with pixel values 0..255;
outputs are ``loc`` (N, A, 4) box offsets and ``conf`` (N, A, C+1) softmax probabilities.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

IMAGE_SIZE = 16
ANCHORS_PER_CELL = 2
NUM_CLASSES = 2  # + background
NUM_ANCHORS = (IMAGE_SIZE // 2) ** 2 * ANCHORS_PER_CELL


@dataclass(frozen=True)
class TinyModels:
    """Paths of the converted models plus reference Keras outputs on fixed images."""

    float_path: Path
    int8_path: Path
    images: np.ndarray
    keras_outputs: dict[str, np.ndarray]


def _build_keras_model(keras: ModuleType) -> Any:
    layers = keras.layers
    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0)(image)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    loc = layers.Conv2D(ANCHORS_PER_CELL * 4, 3, padding="same")(x)
    loc = layers.Reshape((-1, 4), name="loc")(loc)
    conf = layers.Conv2D(ANCHORS_PER_CELL * (NUM_CLASSES + 1), 3, padding="same")(x)
    conf = layers.Reshape((-1, NUM_CLASSES + 1))(conf)
    conf = layers.Softmax(name="conf")(conf)
    return keras.Model(image, {"loc": loc, "conf": conf})


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, size=(n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


@functools.cache
def tiny_models() -> TinyModels:
    """Build and convert the model once per session (files removed at interpreter exit)."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = _build_keras_model(tf_keras)
    out_dir = Path(tempfile.mkdtemp(prefix="edgeprune-tiny-"))
    atexit.register(shutil.rmtree, out_dir, True)

    float_path = out_dir / "tiny_ssd_float32.tflite"
    float_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    def representative() -> Iterator[list[np.ndarray]]:
        for image in _images(32, seed=1):
            yield [image[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8_path = out_dir / "tiny_ssd_int8.tflite"
    with warnings.catch_warnings():
        # The converter warns that the int8 input has no explicit range; the representative
        # dataset provides it.
        warnings.simplefilter("ignore", UserWarning)
        int8_path.write_bytes(converter.convert())

    images = _images(3, seed=2)
    outputs = {k: np.asarray(v) for k, v in model(images, training=False).items()}
    return TinyModels(float_path, int8_path, images, outputs)
