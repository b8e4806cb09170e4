"""Post-training conversion to TFLite: float32, float16, full-integer int8 and a sparse
flatbuffer (``EXPERIMENTAL_SPARSITY``) so that pruning shows in the file size.

Every mode converts the same frozen batch-1 graph of the deployment model
(:func:`edgeprune.openvino_rt.freeze_detector`): converting a constant graph takes a few seconds,
where converting the Keras object (which is first serialised to a SavedModel) takes ~20 s here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.fileio import write_bytes

DTYPES: tuple[str, ...] = ("float32", "float16", "int8", "sparse")


def converter_for(frozen: Any, dtype: str, representative: np.ndarray | None = None) -> Any:
    """A configured ``TFLiteConverter`` for a :class:`~edgeprune.openvino_rt.FrozenDetector`."""
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


def convert(model: Any, dtype: str, out_path: str | Path,
            representative: np.ndarray | None = None) -> int:
    """Convert a training or exported detector (or a frozen one) and write the flatbuffer
    atomically; returns its size in bytes."""
    from edgeprune.openvino_rt import freeze_detector

    data = converter_for(freeze_detector(model), dtype, representative).convert()
    write_bytes(out_path, data)
    return len(data)
