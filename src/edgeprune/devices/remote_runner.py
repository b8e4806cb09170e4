#!/usr/bin/env python3
"""Time one model on the machine this script runs on; print one JSON line with the samples.

This file is copied to benchmark targets and run there with the target's own Python, so it must
stay standalone: standard library, numpy, and one inference runtime -- ``ai_edge_litert`` (or the
older ``tflite_runtime``) for ``.tflite`` models, ``openvino`` for IR/ONNX/TFLite models. It never
imports edgeprune, and it runs on Python 3.7 or newer (OpenVINO 2022.3 on a Raspberry Pi).

Only the inference call is timed: inputs are random (uniform 0..255 for float inputs, the full
range for integer ones) and set once before the clock starts. Output (stdout, last line)::

    {"edgeprune_runner": 1, "runtime": "...", "runtime_version": "...", "samples_ms": [...], ...}
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

FORMAT_VERSION = 1
_OV_TYPES = {"f32": np.float32, "f16": np.float16, "u8": np.uint8, "i8": np.int8,
             "i32": np.int32, "i64": np.int64, "boolean": np.bool_}


def random_array(shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Random input of the given shape: image-like floats, full-range integers."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 1, size=shape, endpoint=True).astype(np.bool_)
    return rng.uniform(0.0, 255.0, size=shape).astype(dtype)


def time_loop(fn: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Call fn warmup times, then time runs calls; return milliseconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def load_litert() -> tuple[Any, Any, str, str]:
    """Return (Interpreter class, OpResolverType or None, runtime name, version)."""
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter as mod

        return mod.Interpreter, mod.OpResolverType, "ai-edge-litert", ai_edge_litert.__version__
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime import interpreter as mod
    except ImportError:
        sys.exit("remote_runner: neither ai_edge_litert nor tflite_runtime is installed")
    resolver = getattr(mod, "OpResolverType", None)
    return mod.Interpreter, resolver, "tflite-runtime", getattr(tflite_runtime, "__version__", "?")


def litert_interpreter(model_path: str, threads: int,
                       no_xnnpack: bool) -> tuple[Any, dict[str, str]]:
    """A LiteRT Interpreter for ``model_path`` (XNNPACK unless ``no_xnnpack``) and its identity
    (runtime, version, delegate). Shared with ``remote_app.py``."""
    interpreter_cls, resolver, name, version = load_litert()
    kwargs = {"model_path": model_path, "num_threads": threads}
    if no_xnnpack:
        if resolver is None:
            sys.exit(f"remote_runner: {name} {version} cannot disable the default delegates")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    identity = {"runtime": name, "runtime_version": str(version),
                "delegate": "none" if no_xnnpack else "xnnpack"}
    return interpreter_cls(**kwargs), identity


def time_litert(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    """Time Interpreter.invoke() of a .tflite model."""
    interpreter, identity = litert_interpreter(args.model, args.threads, args.no_xnnpack)
    interpreter.allocate_tensors()
    for details in interpreter.get_input_details():
        value = random_array(tuple(details["shape"]), details["dtype"], rng)
        interpreter.set_tensor(details["index"], value)
    samples = time_loop(interpreter.invoke, args.warmup, args.runs)
    return {**identity, "samples_ms": samples}


def load_openvino() -> Any:
    """The module holding Core/Tensor/PartialShape: ``openvino`` (2023.1+) or
    ``openvino.runtime`` (2022.x, e.g. the 2022.3 LTS that still drives the NCS2)."""
    try:
        import openvino
    except ImportError:
        sys.exit("remote_runner: openvino is not installed")
    if hasattr(openvino, "Core"):
        return openvino
    return importlib.import_module("openvino.runtime")


def _static_shapes(model: Any, partial_shape_cls: Any) -> list[list[int]]:
    """Input shapes with every dynamic dimension (usually the batch) set to 1; the model is
    reshaped accordingly, since MYRIAD and benchmark-style timing need static shapes."""
    shapes = [[d.get_length() if d.is_static else 1 for d in port.get_partial_shape()]
              for port in model.inputs]
    if any(port.get_partial_shape().is_dynamic for port in model.inputs):
        model.reshape({port: partial_shape_cls(shapes[i]) for i, port in enumerate(model.inputs)})
    return shapes


def _ov_dtype(element_type: Any) -> Any:
    name = element_type.get_type_name()
    if name not in _OV_TYPES:
        sys.exit(f"remote_runner: unsupported OpenVINO input type {name}")
    return _OV_TYPES[name]


def time_openvino(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    """Time synchronous infer() of a model compiled with the LATENCY performance hint."""
    ov = load_openvino()
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if args.threads and args.device == "CPU":
        config["INFERENCE_NUM_THREADS"] = str(args.threads)
    model = core.read_model(args.model)
    shapes = _static_shapes(model, ov.PartialShape)
    compiled = core.compile_model(model, args.device, config)
    request = compiled.create_infer_request()
    for index, port in enumerate(compiled.inputs):
        value = random_array(tuple(shapes[index]), _ov_dtype(port.get_element_type()), rng)
        request.set_input_tensor(index, ov.Tensor(value))
    samples = time_loop(request.infer, args.warmup, args.runs)
    return {"runtime": "openvino", "runtime_version": str(ov.get_version()),
            "device": args.device, "input_shapes": shapes, "samples_ms": samples}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("litert", "openvino"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-xnnpack", action="store_true")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.runs < 1:
        parser.error("--warmup must be >= 0 and --runs >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    timer = time_litert if args.runtime == "litert" else time_openvino
    result = timer(args, rng)
    result.update(
        edgeprune_runner=FORMAT_VERSION,
        threads=args.threads,
        warmup=args.warmup,
        runs=args.runs,
        python=platform.python_version(),
        numpy=np.__version__,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
