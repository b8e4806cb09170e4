"""The torch detectors on the project's measurement path: deployment files for the same runtimes
and timing engine as the Keras models, cost, and a runner for the shared evaluator.

* OpenVINO IR: ``openvino.convert_model`` reads the :class:`DeployModel` module itself
  (traced on one zero image); inputs and outputs are named ``image``, ``loc`` and ``conf`` as
  in the IR of a Keras detector, so :func:`edgeprune.compression.openvino_rt.openvino_runner`
  and the timing engine read both alike.
* ONNX (for TensorRT on a Jetson): ``torch.onnx.export`` (TorchScript exporter, which needs the
  ``onnx`` package), static batch 1, same names.
* ``.tflite``: the torch weights are written into the Keras twin of the same widths
  (:func:`~edgeprune.compression.torch_backend.port.torch_to_keras`) and that goes through the
  project's TFLite converter. litert-torch (the direct torch -> ``.tflite`` converter) does not
  install beside the pinned packages without downgrading them (see the README).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune.compression.cluster.convert import FORMATS as KERAS_FORMATS
from edgeprune.compression.cluster.convert import Artifact, tflite_bytes
from edgeprune.compression.openvino_rt import OUTPUT_NAMES, freeze_detector, save_ir
from edgeprune.compression.torch_backend.models import DeployModel, SSDTorch, spec_of
from edgeprune.compression.torch_backend.port import torch_to_keras
from edgeprune.errors import DataError
from edgeprune.fileio import atomic_path, write_bytes

#: Artifact formats of the torch backend and their file suffix.
FORMATS: dict[str, str] = {**KERAS_FORMATS, "onnx": ".onnx"}


def deploy_input(model: SSDTorch) -> torch.Tensor:
    """One zero NHWC image (1, H, W, 3): the example input of the deployment graph."""
    h, w = model.spec.input_size
    return torch.zeros(1, int(h), int(w), 3)


def openvino_model(model: SSDTorch) -> Any:
    """The deployment graph as an OpenVINO model with a static (1, H, W, 3) input ``image`` and
    outputs ``loc``, ``conf``."""
    import openvino as ov

    deploy = DeployModel(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tracer warnings about shape arithmetic
        example = deploy_input(model)
        ov_model = ov.convert_model(deploy, example_input=example)
    ov_model.reshape(list(example.shape))       # static batch 1, as the Keras IR
    ov_model.inputs[0].get_tensor().set_names({"image"})
    for out, name in zip(ov_model.outputs, OUTPUT_NAMES, strict=True):
        out.get_tensor().set_names({name})
    return ov_model


def write_ir(model: SSDTorch, xml_path: str | Path, fp16: bool = False) -> Path:
    """Write the IR (``.xml`` + ``.bin``, fp32 or fp16 weights) of a torch detector."""
    return save_ir(openvino_model(model), xml_path, fp16)


def write_onnx(model: SSDTorch, path: str | Path, opset: int = 17) -> Path:
    """Write the ONNX file of the deployment graph (static batch 1, input ``image``, outputs
    ``loc`` and ``conf``)."""
    try:
        import onnx  # noqa: F401 - the TorchScript exporter needs it
    except ImportError:
        raise DataError("ONNX export needs the onnx package (pinned in envs/requirements.txt); "
                        "run `make venv`") from None
    deploy = DeployModel(model).eval()
    with atomic_path(path, ".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(deploy, (deploy_input(model),), str(tmp), input_names=["image"],
                          output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=False)
    return Path(path)


def keras_twin(model: SSDTorch, keras: Any | None = None) -> Any:
    """The Keras detector of the torch model's current widths, holding its weights."""
    from edgeprune.detection.models import build_detector

    return torch_to_keras(model, build_detector(spec_of(model), keras))


def tflite_from_torch(model: SSDTorch, keras: Any | None = None) -> bytes:
    """Float32 ``.tflite`` of the torch detector, through its Keras twin."""
    return tflite_bytes(freeze_detector(keras_twin(model, keras)))


def write_torch_artifacts(model: SSDTorch, stem: Path, formats: tuple[str, ...],
                          keras: Any | None = None) -> dict[str, Artifact]:
    """``<stem>.xml/.bin`` (fp32), ``<stem>.onnx`` and/or ``<stem>.tflite`` per format, each
    with its conversion seconds -- the torch counterpart of
    :func:`edgeprune.compression.cluster.convert.write_artifacts`."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown artifact format {fmt!r}; expected one of {list(FORMATS)}")
    out: dict[str, Artifact] = {}
    for fmt in formats:
        t0 = time.perf_counter()
        path = Path(stem).with_suffix(FORMATS[fmt])
        if fmt == "ir":
            write_ir(model, path)
        elif fmt == "onnx":
            write_onnx(model, path)
        else:
            write_bytes(path, tflite_from_torch(model, keras))
        out[fmt] = Artifact(fmt, path, time.perf_counter() - t0)
    return out


def torch_cost(model: nn.Module) -> dict[str, int]:
    """``params`` (every weight and batch-norm statistic, as the Keras count) and ``macs`` of
    one image -- the torch counterpart of
    :func:`edgeprune.compression.cluster.cost.model_cost`."""
    params = sum(p.numel() for p in model.parameters())
    params += sum(b.numel() for name, b in model.named_buffers()
                  if not name.endswith("num_batches_tracked"))
    macs = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            h, w = m.out_hw
            macs += h * w * m.weight.numel()
    return {"params": int(params), "macs": int(macs)}


def torch_runner(model: SSDTorch) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A :data:`edgeprune.detection.detect.Runner`: NHWC float batch (0..255) -> ``(loc,
    probs)`` in float32, through the deployment graph in eval mode."""
    deploy = DeployModel(model).eval()

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            loc, conf = deploy(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return loc.numpy(), conf.numpy()

    return run


def write_unit_artifacts(unit: Any, stem: Path, formats: tuple[str, ...]) -> dict[str, Artifact]:
    """Files of an isolated torch unit (:class:`~edgeprune.compression.torch_backend.isolate.
    TorchUnit`): IR and ONNX from the module, ``.tflite`` from its Keras twin
    (``unit.keras_unit()``, set by the backend)."""
    import openvino as ov

    from edgeprune.compression.cluster.convert import freeze_model

    out: dict[str, Artifact] = {}
    example = torch.zeros(unit.input_shape)
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown artifact format {fmt!r}; expected one of {list(FORMATS)}")
        t0 = time.perf_counter()
        path = Path(stem).with_suffix(FORMATS[fmt])
        if fmt == "ir":
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ov_model = ov.convert_model(unit, example_input=example)
                ov_model.reshape(list(example.shape))
                save_ir(ov_model, path, fp16=False)
        elif fmt == "onnx":
            with atomic_path(path, ".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(unit, (example,), str(tmp), input_names=["x"], dynamo=False)
        else:
            write_bytes(path, tflite_bytes(freeze_model(unit.keras_unit())))
        out[fmt] = Artifact(fmt, path, time.perf_counter() - t0)
    return out
