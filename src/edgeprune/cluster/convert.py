"""Deployment artifacts for pruned detectors: float32 TFLite and OpenVINO IR from one frozen
graph. Freezing once and converting the constant graph keeps one sweep point to a few seconds
(converting the Keras object directly serialises it to a SavedModel first, about 20 s here)."""

from __future__ import annotations

import os
import shutil
import tempfile
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
    (the same route as :func:`edgeprune.openvino_rt.freeze_detector`, without the detector's
    output contract)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from edgeprune.tfenv import setup

    tf, _ = setup()
    shape = [1, *(int(d) for d in model.inputs[0].shape[1:])]
    spec = tf.TensorSpec(shape, tf.float32, name="x")
    traced = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(traced)
    graph_def = frozen.graph.as_graph_def()
    input_name = frozen.inputs[0].name
    output_name = frozen.outputs[0].name

    # Re-wrapped with an input signature: converters (OpenVINO) need the structured one the
    # constant-folded function lacks.
    @tf.function(input_signature=[spec])
    def serve(x: Any) -> Any:
        return tf.graph_util.import_graph_def(graph_def, input_map={input_name: x},
                                              return_elements=[output_name], name="")[0]

    module = tf.Module()
    module.serve = serve
    function = serve.get_concrete_function()
    return FrozenModel(function, module, traced)


def _save_ir(ir: Any, xml: Path) -> None:
    """``ov.save_model`` (fp32) under temporary names beside ``xml``, renamed into place
    weights first, so a reader never sees a half-written IR."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{xml.stem}.", dir=xml.parent))
    try:
        tmp_xml = tmp_dir / xml.name
        ov.save_model(ir, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp_xml, xml)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_model_artifacts(model: Any, stem: Path,
                          formats: tuple[str, ...]) -> dict[str, Artifact]:
    """Write ``<stem>.tflite`` and/or ``<stem>.xml/.bin`` (fp32) for any single-input Keras
    model (e.g. :func:`edgeprune.cluster.isolate.isolate_layer`'s)."""
    import openvino as ov

    from edgeprune.tfenv import setup

    tf, _ = setup()
    t0 = time.perf_counter()
    frozen = freeze_model(model)
    freeze_s = time.perf_counter() - t0
    out: dict[str, Artifact] = {}
    for fmt in formats:
        t1 = time.perf_counter()
        path = stem.with_suffix(FORMATS[fmt])
        if fmt == "tflite":
            conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen.function],
                                                                   frozen.module)
            write_bytes(path, conv.convert())
        elif fmt == "ir":
            _save_ir(ov.convert_model(frozen.traced), path)
        else:
            raise ValueError(f"unknown artifact format {fmt!r}; expected one of {list(FORMATS)}")
        out[fmt] = Artifact(fmt, path, freeze_s + time.perf_counter() - t1)
    return out
