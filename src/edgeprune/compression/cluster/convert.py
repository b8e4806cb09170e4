"""Deployment artifacts for pruned detectors: float32 TFLite and OpenVINO IR from one frozen
graph. Freezing once and converting the constant graph keeps one sweep point to a few seconds
(converting the Keras object directly serialises it to a SavedModel first, about 20 s here).

ONNX (for TensorRT's ``trtexec`` on a Jetson) is converted from the Keras model itself by tf2onnx
(:func:`keras_onnx_bytes`), for every architecture and without torch; it needs no freezing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgeprune.compression.openvino_rt import (
    OUTPUT_NAMES,
    FrozenDetector,
    convert_to_ir,
    freeze_detector,
    freeze_graph,
    save_ir,
)
from edgeprune.errors import DataError
from edgeprune.fileio import write_bytes

F = TypeVar("F", FrozenDetector, "FrozenModel")

#: Artifact formats and their file suffix; runtimes that read them.
FORMATS: dict[str, str] = {"tflite": ".tflite", "ir": ".xml", "onnx": ".onnx"}
RUNTIME_FORMAT: dict[str, str] = {
    "litert-python": "tflite",
    "benchmark_model": "tflite",
    "openvino": "ir",
    "benchmark_app": "ir",
    "trtexec": "onnx",
}
#: ONNX opset of the Keras backend's files, as of the torch backend's (TensorRT 8.5+ reads it).
ONNX_OPSET = 17
#: The pinned tf2onnx (envs/requirements.txt), named in errors when it is missing.
TF2ONNX_PIN = "tf2onnx==1.17.0"


def tflite_bytes(frozen: FrozenDetector | FrozenModel) -> bytes:
    """Float32 flatbuffer of a frozen graph; for a detector it has a ``serving_default``
    signature (inputs ``image``, outputs ``loc`` and ``conf``), so
    :class:`edgeprune.measurement.latency.LiteRTRunner` finds outputs by name."""
    from edgeprune.tfenv import setup

    tf, _ = setup()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen.function], frozen.module)
    return converter.convert()


def _static_input_shape(model: Any) -> tuple[int, ...]:
    """Batch-1 input shape of a single-input Keras model whose other dimensions are static."""
    if len(model.inputs) != 1:
        raise DataError(f"Keras model {model.name!r}: ONNX export takes one input, the model has "
                        f"{len(model.inputs)}")
    dims = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in dims):
        raise DataError(f"Keras model {model.name!r}: ONNX export needs a static input shape, "
                        f"got (batch, {', '.join(str(d) for d in dims)})")
    return (1, *(int(d) for d in dims))


def _order_outputs(graph: Any, names: tuple[str, ...], model_name: str) -> None:
    """Put the graph outputs of an ONNX ``graph`` in the order ``names`` (DataError if the
    graph's outputs are other names)."""
    import onnx

    have = {o.name: o for o in graph.output}
    if sorted(have) != sorted(names):
        raise DataError(f"Keras model {model_name!r}: tf2onnx gave outputs {sorted(have)}, "
                        f"expected {list(names)}")
    ordered = []
    for name in names:
        info = onnx.ValueInfoProto()
        info.CopyFrom(have[name])
        ordered.append(info)
    del graph.output[:]
    graph.output.extend(ordered)


def keras_onnx_bytes(model: Any, input_name: str = "image",
                     output_names: tuple[str, ...] | None = OUTPUT_NAMES,
                     opset: int = ONNX_OPSET) -> bytes:
    """The ONNX file (serialised ``ModelProto``) of a single-input Keras model, converted by
    tf2onnx (``from_keras``) at a static batch of 1: input ``input_name``, outputs
    ``output_names`` in that order (``None``: the model's own output names), checked by
    ``onnx.checker``. A detector must be its export model (softmax ``conf`` and ``loc``, see
    :func:`edgeprune.detection.models.export_model`); :func:`write_artifacts` passes that."""
    import onnx

    try:
        import tf2onnx
    except ImportError:
        raise DataError(f"Keras model {model.name!r}: ONNX export needs tf2onnx, which is not "
                        f"installed; run `make venv` (or pip install {TF2ONNX_PIN})") from None
    from edgeprune.tfenv import setup

    tf, _ = setup()
    signature = [tf.TensorSpec(_static_input_shape(model), tf.float32, name=input_name)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    inputs = [i.name for i in proto.graph.input]
    if inputs != [input_name]:
        raise DataError(f"Keras model {model.name!r}: tf2onnx gave inputs {inputs}, expected "
                        f"[{input_name!r}]")
    if output_names is not None:
        _order_outputs(proto.graph, output_names, model.name)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"Keras model {model.name!r}: tf2onnx wrote an invalid ONNX model "
                        f"({first})") from None
    return proto.SerializeToString()


def _export_of(model: Any) -> Any:
    """The export model (outputs ``loc`` and softmax ``conf``) of a training or export detector."""
    if set(getattr(model, "output_names", ())) == set(OUTPUT_NAMES):
        return model
    from edgeprune.detection.models import export_model

    return export_model(model)


@dataclass(frozen=True)
class Artifact:
    """One converted file and how long its conversion took (freezing included once)."""

    fmt: str
    path: Path
    seconds: float


def _check_formats(formats: tuple[str, ...]) -> None:
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown artifact format {fmt!r}; expected one of {list(FORMATS)}")


def _timed_artifacts(freeze: Callable[[], F], stem: Path, formats: tuple[str, ...],
                     write_ir: Callable[[F, Path], object],
                     write_onnx: Callable[[Path], object]) -> dict[str, Artifact]:
    """Freeze once (only if a ``tflite`` or ``ir`` file is asked for), then write
    ``<stem>.tflite`` (:func:`tflite_bytes`) and/or the IR (``write_ir``), each timed with the
    freezing time added, and/or ``<stem>.onnx`` (``write_onnx``, which needs no freezing)."""
    _check_formats(formats)
    freeze_s = 0.0
    frozen: F | None = None
    if {"tflite", "ir"} & set(formats):
        t0 = time.perf_counter()
        frozen = freeze()
        freeze_s = time.perf_counter() - t0
    out: dict[str, Artifact] = {}
    for fmt in formats:
        t1 = time.perf_counter()
        path = stem.with_suffix(FORMATS[fmt])
        if fmt == "onnx":
            write_onnx(path)
            out[fmt] = Artifact(fmt, path, time.perf_counter() - t1)
            continue
        if fmt == "tflite":
            write_bytes(path, tflite_bytes(frozen))
        else:
            write_ir(frozen, path)
        out[fmt] = Artifact(fmt, path, freeze_s + time.perf_counter() - t1)
    return out


def write_artifacts(model: Any, stem: Path, formats: tuple[str, ...]) -> dict[str, Artifact]:
    """Write ``<stem>.tflite``, ``<stem>.xml/.bin`` (fp32) and/or ``<stem>.onnx`` (tf2onnx;
    input ``image``, outputs ``loc`` and ``conf``) for a Keras detector."""
    return _timed_artifacts(lambda: freeze_detector(model), stem, formats,
                            lambda frozen, path: convert_to_ir(frozen, path, fp16=False),
                            lambda path: write_bytes(path, keras_onnx_bytes(_export_of(model))))


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
    """Write ``<stem>.tflite``, ``<stem>.xml/.bin`` (fp32) and/or ``<stem>.onnx`` (tf2onnx) for
    any single-input Keras model (e.g. :func:`edgeprune.compression.cluster.isolate.
    isolate_layer`'s); all name the input ``x``."""

    def write_ir(frozen: FrozenModel, path: Path) -> None:
        import openvino as ov

        save_ir(ov.convert_model(frozen.traced), path, fp16=False)

    def write_onnx(path: Path) -> None:
        write_bytes(path, keras_onnx_bytes(model, input_name="x", output_names=None))

    return _timed_artifacts(lambda: freeze_model(model), stem, formats, write_ir, write_onnx)
