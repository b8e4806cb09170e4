"""Post-training conversion to TFLite: float32, float16, full-integer int8 and a sparse
flatbuffer (``EXPERIMENTAL_SPARSITY``) so that pruning shows in the file size.

Every mode converts the same frozen batch-1 graph (:func:`freeze_logits`): backbone and heads,
ending at the box offsets ``loc`` and the class *logits* ``conf_logits``. The softmax runs on the
host in float (:func:`edgeprune.detection.detect.class_probabilities`), as anchor decoding and NMS
already
do: a softmax quantised to int8 has a fixed output step of 1/256, which would tie most scores of
the int8 model and corrupt the ranking the mAP is computed from, while dequantised int8 logits
give distinct float probabilities. Converting a constant graph takes a few seconds, where
converting the Keras object (which is first serialised to a SavedModel) takes ~20 s here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.compression.openvino_rt import FrozenDetector, freeze_checked
from edgeprune.errors import DataError
from edgeprune.fileio import write_bytes

#: Output names of every converted flatbuffer.
TFLITE_OUTPUTS: tuple[str, str] = ("loc", "conf_logits")

DTYPES: tuple[str, ...] = ("float32", "float16", "int8", "sparse")


def converter_for(frozen: Any, dtype: str, representative: np.ndarray | None = None) -> Any:
    """A configured ``TFLiteConverter`` for a
    :class:`~edgeprune.compression.openvino_rt.FrozenDetector`."""
    from edgeprune.tfenv import setup

    tf, _ = setup()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen.function], frozen.module)
    if dtype == "float32":
        return conv
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        return conv
    if dtype == "sparse":
        conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        return conv
    if dtype == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs representative images")
        images = representative.astype(np.float32)

        def gen() -> Iterator[list[np.ndarray]]:
            for img in images:
                yield [img[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return conv
    raise ValueError(f"unknown TFLite dtype {dtype!r}; expected one of {DTYPES}")


def logits_model(model: Any) -> Any:
    """The detector with outputs ``loc`` and ``conf_logits``: a training model as it is, or an
    exported one (``conf`` = softmax layer) cut before its softmax."""
    names = tuple(getattr(model, "output_names", ()))
    if set(names) == set(TFLITE_OUTPUTS):
        return model
    if set(names) == {"loc", "conf"}:
        from edgeprune.tfenv import setup

        _, keras = setup()
        loc = dict(zip(names, model.outputs, strict=True))["loc"]
        logits = model.get_layer("conf").input
        return keras.Model(model.inputs, {"loc": loc, "conf_logits": logits},
                           name=f"{model.name}_logits")
    raise DataError(f"detector outputs {list(names)}: expected loc with conf_logits or conf")


def freeze_logits(model: Any) -> FrozenDetector:
    """Freeze a detector (training or exported) into a batch-1 constant graph with outputs
    ``loc`` and ``conf_logits``, checked against the Keras model on one random image."""
    return freeze_checked(logits_model(model), TFLITE_OUTPUTS)


def convert(model: Any, dtype: str, out_path: str | Path,
            representative: np.ndarray | None = None) -> int:
    """Convert a training or exported Keras detector and write the flatbuffer (outputs ``loc``
    and ``conf_logits``) atomically; returns its size in bytes."""
    data = converter_for(freeze_logits(model), dtype, representative).convert()
    write_bytes(out_path, data)
    return len(data)
