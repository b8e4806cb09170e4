"""Deployment artifacts for pruned detectors: float32 TFLite and OpenVINO IR from one frozen
graph. Freezing once and converting the constant graph keeps one sweep point to a few seconds
(converting the Keras object directly serialises it to a SavedModel first, about 20 s here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgeprune.compression.openvino_rt import (
    FrozenDetector,
    convert_to_ir,
    freeze_detector,
    freeze_graph,
    save_ir,
)
from edgeprune.fileio import write_bytes

F = TypeVar("F", FrozenDetector, "FrozenModel")

#: Artifact formats and their file suffix; runtimes that read them.
FORMATS: dict[str, str] = {"tflite": ".tflite", "ir": ".xml"}
RUNTIME_FORMAT: dict[str, str] = {
    "litert-python": "tflite",
    "benchmark_model": "tflite",
    "openvino": "ir",
    "benchmark_app": "ir",
}


def tflite_bytes(frozen: FrozenDetector | FrozenModel) -> bytes:
    """Float32 flatbuffer of a frozen graph; for a detector it has a ``serving_default``
    signature (inputs ``image``, outputs ``loc`` and ``conf``), so
    :class:`edgeprune.measurement.latency.LiteRTRunner` finds outputs by name."""
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


def _timed_artifacts(freeze: Callable[[], F], stem: Path, formats: tuple[str, ...],
                     write_ir: Callable[[F, Path], object]) -> dict[str, Artifact]:
    """Freeze once, then write ``<stem>.tflite`` (:func:`tflite_bytes`) and/or the IR
    (``write_ir``) per format, each timed with the freezing time added."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown artifact format {fmt!r}; expected one of {list(FORMATS)}")
    t0 = time.perf_counter()
    frozen = freeze()
    freeze_s = time.perf_counter() - t0
    out: dict[str, Artifact] = {}
    for fmt in formats:
        t1 = time.perf_counter()
        path = stem.with_suffix(FORMATS[fmt])
        if fmt == "tflite":
            write_bytes(path, tflite_bytes(frozen))
        else:
            write_ir(frozen, path)
        out[fmt] = Artifact(fmt, path, freeze_s + time.perf_counter() - t1)
    return out


def write_artifacts(model: Any, stem: Path, formats: tuple[str, ...]) -> dict[str, Artifact]:
    """Write ``<stem>.tflite`` and/or ``<stem>.xml/.bin`` (fp32) for a Keras detector."""
    return _timed_artifacts(lambda: freeze_detector(model), stem, formats,
                            lambda frozen, path: convert_to_ir(frozen, path, fp16=False))


@dataclass(frozen=True)
class FrozenModel:
    """A constant-folded batch-1 concrete function of a single-input Keras model (the isolated
    layer of a sweep), the module that keeps it alive, and the traced (variable-capturing)
    function it was folded from (OpenVINO reads that one with a single input)."""

    function: Any
    module: Any
    traced: Any


def freeze_model(model: Any) -> FrozenModel:
    """Freeze any single-input Keras model with a static input shape into a constant graph
    (:func:`edgeprune.compression.openvino_rt.freeze_graph`, input ``x``, without the detector's
    output
    contract or check)."""
    graph = freeze_graph(model, input_name="x")
    return FrozenModel(graph.function, graph.module, graph.traced)


def write_model_artifacts(model: Any, stem: Path,
                          formats: tuple[str, ...]) -> dict[str, Artifact]:
    """Write ``<stem>.tflite`` and/or ``<stem>.xml/.bin`` (fp32) for any single-input Keras
    model (e.g. :func:`edgeprune.compression.cluster.isolate.isolate_layer`'s)."""

    def write_ir(frozen: FrozenModel, path: Path) -> None:
        import openvino as ov

        save_ir(ov.convert_model(frozen.traced), path, fp16=False)

    return _timed_artifacts(lambda: freeze_model(model), stem, formats, write_ir)
