"""Deployment artifacts for pruned detectors: float32 TFLite and OpenVINO IR from one frozen
graph. Freezing once and converting the constant graph keeps one sweep point to a few seconds
(converting the Keras object directly serialises it to a SavedModel first, about 20 s here)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune.fileio import write_bytes
from edgeprune.openvino_rt import FrozenDetector, convert_to_ir, freeze_detector

#: Artifact formats and their file suffix; runtimes that read them.
FORMATS: dict[str, str] = {"tflite": ".tflite", "ir": ".xml"}
RUNTIME_FORMAT: dict[str, str] = {
    "litert-python": "tflite",
    "benchmark_model": "tflite",
    "openvino": "ir",
    "benchmark_app": "ir",
}


def tflite_bytes(frozen: FrozenDetector) -> bytes:
    """Float32 flatbuffer with a ``serving_default`` signature (inputs ``image``, outputs
    ``loc`` and ``conf``), so :class:`edgeprune.latency.LiteRTRunner` finds outputs by name."""
    from edgeprune.tfenv import setup

    tf, _ = setup()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen.function], frozen.module)
    return converter.convert()


@dataclass(frozen=True)
class Artifact:
    """One converted file and how long its conversion took (freezing included once)."""

    fmt: str
    path: Path
    seconds: float


def write_artifacts(model: Any, stem: Path, formats: tuple[str, ...]) -> dict[str, Artifact]:
    """Write ``<stem>.tflite`` and/or ``<stem>.xml/.bin`` (fp32) for a Keras detector."""
    t0 = time.perf_counter()
    frozen = freeze_detector(model)
    freeze_s = time.perf_counter() - t0
    out: dict[str, Artifact] = {}
    for fmt in formats:
        t1 = time.perf_counter()
        path = stem.with_suffix(FORMATS[fmt])
        if fmt == "tflite":
            write_bytes(path, tflite_bytes(frozen))
        elif fmt == "ir":
            convert_to_ir(frozen, path, fp16=False)
        else:
            raise ValueError(f"unknown artifact format {fmt!r}; expected one of {list(FORMATS)}")
        out[fmt] = Artifact(fmt, path, freeze_s + time.perf_counter() - t1)
    return out
