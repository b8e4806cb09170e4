"""OpenVINO for the detectors: Keras -> IR conversion (fp32 or fp16 weights) and a runner with the
same contract as every other runtime in :mod:`edgeprune.detection.detect`.

Conversion goes through a *frozen* batch-1 TensorFlow function of the deployment graph (see
:func:`freeze_detector`): variables become constants, so OpenVINO (and LiteRT, see
``edgeprune.compression.cluster.convert``) never has to serialise the Keras object graph, which is
what
makes converting a Keras model slow. The batch dimension is static (1) because
``benchmark_app`` and the NCS2 only take static shapes; the runner therefore feeds images one at
a time. Outputs keep their Keras names (``loc``, ``conf``) and are looked up by name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import DataError
from edgeprune.fileio import TEMP_MARK

__all__ = [
    "FrozenDetector", "FrozenGraph", "convert_to_ir", "freeze_checked", "freeze_detector",
    "freeze_graph", "ir_files", "openvino_runner", "save_ir",
]

OUTPUT_NAMES = ("loc", "conf")


@dataclass(frozen=True)
class FrozenDetector:
    """A constant-folded ``tf.function`` of an exported detector with a static input shape.

    ``function`` is a concrete function taking ``image`` (1, H, W, 3) float32 (0..255) and
    returning ``{"loc": ..., "conf": ...}``; ``module`` keeps it alive and gives converters a
    small object to serialise.
    """

    function: Any
    module: Any
    input_shape: tuple[int, int, int, int]


def _is_export(model: Any) -> bool:
    return set(getattr(model, "output_names", ())) == set(OUTPUT_NAMES)


@dataclass(frozen=True)
class FrozenGraph:
    """A single-input Keras model traced at batch 1 and constant-folded.

    ``function`` is the folded graph re-wrapped with an input signature (converters need it),
    returning the model's output structure; ``module`` keeps it alive and gives converters a
    small object to serialise; ``traced`` is the variable-capturing function it was folded from.
    """

    function: Any
    module: Any
    traced: Any
    input_shape: tuple[int, ...]


def freeze_graph(net: Any, input_name: str = "image") -> FrozenGraph:
    """Freeze a single-input Keras model with a static input shape: trace it at batch 1 with a
    float32 input called ``input_name``, turn its variables into constants and re-wrap the
    constant graph (``import_graph_def``) as a ``tf.function`` with that input signature.

    The shared route of :func:`freeze_detector`,
    :func:`edgeprune.compression.quantize.freeze_logits` and
    :func:`edgeprune.compression.cluster.convert.freeze_model`; it checks nothing about the outputs.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from edgeprune.tfenv import setup

    tf, _ = setup()
    shape = (1, *(int(d) for d in net.inputs[0].shape[1:]))
    spec = tf.TensorSpec(list(shape), tf.float32, name=input_name)
    traced = tf.function(lambda x: net(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(traced)
    graph_def = frozen.graph.as_graph_def()
    graph_input = frozen.inputs[0].name
    # The frozen function keeps the outputs in order but may drop their dict structure (models
    # loaded from disk), so the structure is taken from the traced function.
    output_names = [t.name for t in frozen.outputs]
    structure = traced.structured_outputs

    @tf.function(input_signature=[spec])
    def serve(x: Any) -> Any:
        outs = tf.graph_util.import_graph_def(graph_def, input_map={graph_input: x},
                                              return_elements=output_names, name="")
        return tf.nest.pack_sequence_as(structure, outs)

    module = tf.Module()
    module.serve = serve
    return FrozenGraph(serve.get_concrete_function(), module, traced, shape)


def freeze_detector(model: Any) -> FrozenDetector:
    """Freeze a training or exported Keras detector into a batch-1 constant graph.

    A training model (``conf_logits``) is wrapped by :func:`edgeprune.detection.models.export_model`
    first, so the frozen graph always ends in softmax scores named ``conf``.
    """
    from edgeprune.detection.models import export_model
    from edgeprune.tfenv import setup

    if isinstance(model, FrozenDetector):
        return model
    _, keras = setup()
    export = model if _is_export(model) else export_model(model, keras)
    return freeze_checked(export, OUTPUT_NAMES)


def freeze_checked(net: Any, names: tuple[str, ...]) -> FrozenDetector:
    """:func:`freeze_graph` for a detector-shaped ``net`` (input (1, H, W, C) float32 named
    ``image``, dict outputs ``names``), checked against the Keras model on one random image."""
    graph = freeze_graph(net)
    shape = graph.input_shape
    if len(shape) != 4:
        raise DataError(f"detector input shape {shape}: expected (1, height, width, channels)")
    image_shape = (shape[0], shape[1], shape[2], shape[3])
    _check_frozen(net, graph.function, image_shape, names)
    return FrozenDetector(graph.function, graph.module, image_shape)


def _check_frozen(net: Any, function: Any, shape: tuple[int, int, int, int],
                  names: tuple[str, ...]) -> None:
    """The frozen graph must give the Keras outputs ``names``, name for name (one random
    image)."""
    image = np.random.default_rng(0).uniform(0.0, 255.0, shape).astype(np.float32)
    got = function(image)
    want = net(image, training=False)
    if not isinstance(got, dict) or set(got) != set(names):
        raise DataError(f"frozen detector outputs are {got!r}, expected {names}")
    for name in names:
        a, b = np.asarray(got[name]), np.asarray(want[name])
        if a.shape != b.shape:
            raise DataError(f"frozen detector output {name!r} has shape {a.shape}, the Keras "
                            f"model {b.shape}")
        # Constant folding (batch norm into convolutions) reorders float32 arithmetic, so the
        # two differ by rounding noise that grows with the output magnitude (~1e-4 on loc
        # values of a few units); a mis-wired output differs on the order of the values.
        scale = max(1.0, float(np.abs(b).max(initial=0.0)))
        if not np.allclose(a, b, rtol=1e-3, atol=1e-3 * scale):
            raise DataError(f"frozen detector output {name!r} differs from the Keras model "
                            f"(max abs difference {float(np.abs(a - b).max()):.3g})")


def ir_files(xml_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``.xml`` topology and ``.bin`` weights of an IR."""
    xml = Path(xml_path)
    return xml, xml.with_suffix(".bin")


def convert_to_ir(keras_model_or_export: Any, xml_path: str | os.PathLike[str],
                  fp16: bool) -> Path:
    """Convert a detector (training model, export model or :class:`FrozenDetector`) to IR.

    ``fp16`` stores weights as float16 (the CPU plugin still computes in float32 unless told
    otherwise). The pair ``.xml`` + ``.bin`` is written under temporary names in the target
    directory and renamed into place, weights first, so a reader never sees a half-written IR.
    Returns the path of the ``.xml``.
    """
    import openvino as ov

    frozen = freeze_detector(keras_model_or_export)
    model = ov.convert_model(frozen.function)
    names = {n for out in model.outputs for n in out.get_names()}
    missing = set(OUTPUT_NAMES) - names
    if missing:
        raise DataError(f"converted IR lacks outputs {sorted(missing)} (has {sorted(names)})")
    return save_ir(model, xml_path, fp16)


def save_ir(model: Any, xml_path: str | os.PathLike[str], fp16: bool) -> Path:
    """``ov.save_model`` an OpenVINO model under temporary names beside ``xml_path``, renamed
    into place weights first, so a reader never sees a half-written IR. Returns the ``.xml``."""
    import openvino as ov

    xml, weights = ir_files(xml_path)
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{xml.stem}{TEMP_MARK}", dir=xml.parent))
    try:
        tmp_xml = tmp_dir / xml.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=bool(fp16))
        os.replace(tmp_xml.with_suffix(".bin"), weights)
        os.replace(tmp_xml, xml)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return xml


def _compile(model_path: Path, threads: int | None) -> Any:
    """Compile an IR (``.xml`` with its ``.bin``) or an ``.onnx`` file on the CPU with the
    options of every OpenVINO timing (:func:`edgeprune.measurement.devices.remote_runner.
    openvino_config`): LATENCY hint, ``threads`` inference threads when given, and f32
    inference precision, so a CPU with bf16 support does not run the f32 model in bf16."""
    import openvino as ov

    from edgeprune.measurement.devices.remote_runner import openvino_config

    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise DataError(f"ONNX model {path} does not exist")
    else:
        xml, weights = ir_files(path)
        if not xml.is_file() or not weights.is_file():
            raise DataError(f"OpenVINO IR {xml} (with {weights.name}) does not exist")
    core = ov.Core()
    model = core.read_model(str(path))
    return core.compile_model(model, "CPU", openvino_config("CPU", threads))


def openvino_runner(model_path: str | os.PathLike[str],
                    threads: int | None) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A :data:`edgeprune.detection.detect.Runner` over an IR or an ``.onnx`` file on the CPU
    (latency hint, f32 precision, synchronous; see :func:`_compile`).

    Takes a float32 batch (B, H, W, 3) with pixel values 0..255 and returns ``(loc, probs)``;
    the model has a static batch of 1 and outputs named ``loc`` and ``conf`` (the project's IR
    and ONNX exports), so images go through one synchronous request each.
    """
    compiled = _compile(Path(model_path), threads)
    request = compiled.create_infer_request()
    loc_port, conf_port = compiled.output("loc"), compiled.output("conf")

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        locs, probs = [], []
        for image in batch:
            result = request.infer({0: image[None]})
            locs.append(np.array(result[loc_port][0], dtype=np.float32))
            probs.append(np.array(result[conf_port][0], dtype=np.float32))
        return np.stack(locs), np.stack(probs)

    return run
