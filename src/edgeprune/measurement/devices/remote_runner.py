#!/usr/bin/env python3
"""Time models on the machine this script runs on; print one JSON line with the result.

This file is copied to benchmark targets and run there with the target's own Python, so it must
stay standalone: standard library, numpy, and one inference runtime -- ``ai_edge_litert`` (or the
older ``tflite_runtime``) for ``.tflite`` models, ``openvino`` for IR/ONNX/TFLite models. It never
imports edgeprune, and it runs on Python 3.7 or newer (OpenVINO 2022.3 on a Raspberry Pi).

Only the inference call is timed: inputs are random (uniform 0..255 for float inputs, the full
range for integer ones) and set once before the clock starts. Two modes:

* one model (``--model M``): ``warmup`` untimed then ``runs`` timed calls; output (stdout, last
  line) ``{"edgeprune_runner": 1, "runtime": ..., "runtime_version": ..., "samples_ms": [...]}``;
* ``--compare --model A --model B ...``: the models are timed together, interleaved, by
  :func:`interleave` (fresh instances per group, seeded random orders); output
  ``{"edgeprune_runner": 1, "mode": "compare", "runtime": ..., "interleave": {...}}``.
  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
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


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def interleave(openers: Sequence[Callable[[], Callable[[], object]]], *, block_runs: int,
               blocks_per_group: int, warmup: int, seconds: float, min_groups: int,
               max_groups: int, seed: int, clock: Callable[[], int] = time.perf_counter_ns,
               progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Time several models together, interleaved, and return every block median (JSON-ready).

    ``openers[i]()`` creates a FRESH instance of model i and returns a zero-argument callable
    running one inference. Per group: every model gets a fresh instance, created in a seeded
    random order (the previous group's instances are dropped first), and is warmed up with
    ``warmup`` untimed calls; then ``blocks_per_group`` blocks follow, each running the models in
    a fresh seeded random order, each model ``block_runs`` timed calls back to back, and each
    model's median of those calls (ms) is recorded. Groups repeat until ``seconds`` of ``clock``
    (nanoseconds) have passed and at least ``min_groups`` groups ran, or ``max_groups`` ran.
    ``progress(groups_done, elapsed_s)`` is called after every group when given.

    Returns ``{"seed", "block_runs", "blocks_per_group", "warmup", "seconds", "elapsed_s",
    "groups": [{"instance_order", "block_orders", "block_medians_ms"}]}`` where
    ``block_medians_ms`` is blocks x models, models in the order of ``openers``.
    """
    n = len(openers)
    if n < 1:
        raise ValueError("interleave needs at least one model")
    if block_runs < 1 or blocks_per_group < 1 or warmup < 0:
        raise ValueError("block_runs and blocks_per_group must be >= 1 and warmup >= 0")
    if min_groups < 1 or max_groups < min_groups or seconds < 0:
        raise ValueError("need 1 <= min_groups <= max_groups and seconds >= 0")
    rng = random.Random(seed)
    groups: list[dict[str, Any]] = []
    start = clock()
    elapsed = 0.0
    while len(groups) < max_groups and (len(groups) < min_groups or elapsed < seconds):
        instance_order = list(range(n))
        rng.shuffle(instance_order)
        runs: list[Any] = [None] * n
        for i in instance_order:
            runs[i] = openers[i]()
        for i in instance_order:
            for _ in range(warmup):
                runs[i]()
        block_orders = []
        block_medians = []
        for _ in range(blocks_per_group):
            order = list(range(n))
            rng.shuffle(order)
            medians = [0.0] * n
            for i in order:
                fn = runs[i]
                samples = []
                for _ in range(block_runs):
                    t0 = clock()
                    fn()
                    samples.append((clock() - t0) / 1e6)
                medians[i] = _median(samples)
            block_orders.append(order)
            block_medians.append(medians)
        runs = []  # release this group's instances before the next group creates its own
        groups.append({"instance_order": instance_order, "block_orders": block_orders,
                       "block_medians_ms": block_medians})
        elapsed = (clock() - start) / 1e9
        if progress is not None:
            progress(len(groups), elapsed)
    return {"seed": seed, "block_runs": block_runs, "blocks_per_group": blocks_per_group,
            "warmup": warmup, "seconds": seconds, "min_groups": min_groups,
            "max_groups": max_groups, "elapsed_s": elapsed, "groups": groups}


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


def litert_opener(model_path: str, threads: int | None, no_xnnpack: bool, seed: int,
                  info: dict[str, Any]) -> Callable[[], Callable[[], object]]:
    """An opener for :func:`interleave`: each call builds a fresh LiteRT interpreter with the
    same seeded random inputs and returns its ``invoke``. ``info`` receives the runtime
    identity and ``threads_used`` (LiteRT's Python interpreter runs one thread when none is set).
    """

    def open_instance() -> Callable[[], object]:
        interpreter, identity = litert_interpreter(model_path, threads, no_xnnpack)
        interpreter.allocate_tensors()
        rng = np.random.default_rng(seed)
        for details in interpreter.get_input_details():
            value = random_array(tuple(details["shape"]), details["dtype"], rng)
            interpreter.set_tensor(details["index"], value)
        info.update(identity, threads_used=threads if threads and threads > 0 else 1)
        return interpreter.invoke

    return open_instance


def time_litert(args: argparse.Namespace) -> dict[str, Any]:
    """Time Interpreter.invoke() of a .tflite model."""
    info: dict[str, Any] = {}
    invoke = litert_opener(args.model[0], args.threads, args.no_xnnpack, args.seed, info)()
    samples = time_loop(invoke, args.warmup, args.runs)
    return {**info, "samples_ms": samples}


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


#: The compile option naming the precision a device computes in (``ov::hint::inference_precision``).
PRECISION_KEY = "INFERENCE_PRECISION_HINT"


def openvino_config(device: str, threads: int | None) -> dict[str, str]:
    """Compile options: the LATENCY hint; on CPU also f32 inference precision and the thread
    count when one is set. The CPU plugin otherwise runs an f32 model in bf16 on CPUs with
    AVX512-BF16/AMX (and in f16 on recent ARM), so results would depend on the CPU; other devices
    (MYRIAD, GPU, NPU) keep their own precision and may reject the option."""
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        config[PRECISION_KEY] = "f32"
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


def compile_openvino(core: Any, model: Any, device: str, config: dict[str, str]) -> Any:
    """``core.compile_model(model, device, config)``; if that fails with the precision option in
    ``config`` (an old or third-party plugin that does not know it), compile once more without
    it, with a note on stderr -- :func:`inference_precision` then records what the device used."""
    try:
        return core.compile_model(model, device, config)
    except Exception as exc:  # noqa: BLE001 - plugins raise RuntimeError or their own types
        if PRECISION_KEY not in config:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        sys.stderr.write(f"remote_runner: {device} refused {PRECISION_KEY}=f32 ({first}); "
                         "compiling with the device's default precision\n")
        rest = {k: v for k, v in config.items() if k != PRECISION_KEY}
        return core.compile_model(model, device, rest)


def inference_precision(compiled: Any) -> str | None:
    """The precision a compiled model computes in, as OpenVINO names it (``f32``, ``bf16``,
    ``f16``), or None where the build or device does not report it."""
    try:
        value = compiled.get_property(PRECISION_KEY)
    except Exception:  # noqa: BLE001 - older builds and some devices do not report it
        return None
    type_name = getattr(value, "get_type_name", None)
    return str(type_name()) if callable(type_name) else str(value)


def openvino_opener(ov: Any, core: Any, model_path: str, device: str, threads: int | None,
                    seed: int, info: dict[str, Any]) -> Callable[[], Callable[[], object]]:
    """An opener for :func:`interleave`: each call reads and compiles the model anew (LATENCY
    hint, f32 on CPU: :func:`openvino_config`), sets the same seeded random inputs and returns a
    synchronous ``infer``. ``info`` receives the runtime identity, the input shapes, the
    compiled model's precision as ``inference_precision`` (:func:`inference_precision`) and,
    on CPU, its ``INFERENCE_NUM_THREADS`` as ``threads_used``."""
    config = openvino_config(device, threads)

    def open_instance() -> Callable[[], object]:
        model = core.read_model(model_path)
        shapes = _static_shapes(model, ov.PartialShape)
        compiled = compile_openvino(core, model, device, config)
        request = compiled.create_infer_request()
        rng = np.random.default_rng(seed)
        for index, port in enumerate(compiled.inputs):
            value = random_array(tuple(shapes[index]), _ov_dtype(port.get_element_type()), rng)
            request.set_input_tensor(index, ov.Tensor(value))
        info.update(runtime="openvino", runtime_version=str(ov.get_version()), device=device,
                    input_shapes=shapes, threads_used=threads,
                    inference_precision=inference_precision(compiled))
        if device == "CPU":
            try:
                info["threads_used"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
            except Exception:  # noqa: BLE001 - older builds may not report it
                pass
        keep = (compiled, request)  # the request's compiled model lives as long as the callable

        def infer() -> object:
            return keep[1].infer()

        return infer

    return open_instance


def time_openvino(args: argparse.Namespace) -> dict[str, Any]:
    """Time synchronous infer() of a model compiled with the LATENCY performance hint."""
    ov = load_openvino()
    info: dict[str, Any] = {}
    infer = openvino_opener(ov, ov.Core(), args.model[0], args.device, args.threads, args.seed,
                            info)()
    samples = time_loop(infer, args.warmup, args.runs)
    return {**info, "samples_ms": samples}


def stderr_progress(seconds: float, label: str = "remote_runner",
                    every: float = 10.0) -> Callable[[int, float], None]:
    """An :func:`interleave` ``progress`` callback writing ``<label>: <n> groups, <elapsed> of
    <seconds> s`` lines on stderr, at most one every ``every`` s of timing."""
    state = {"next": every}

    def report(groups: int, elapsed: float) -> None:
        if elapsed >= state["next"]:
            sys.stderr.write(f"{label}: {groups} groups, {elapsed:.0f} of {seconds:g} s\n")
            sys.stderr.flush()
            state["next"] = elapsed + every

    return report


def compare_models(args: argparse.Namespace) -> dict[str, Any]:
    """Time every ``--model`` together with :func:`interleave`; identity plus the raw groups."""
    infos: list[dict[str, Any]] = [{} for _ in args.model]
    if args.runtime == "litert":
        openers = [litert_opener(m, args.threads, args.no_xnnpack, args.seed, infos[i])
                   for i, m in enumerate(args.model)]
    else:
        ov = load_openvino()
        core = ov.Core()
        openers = [openvino_opener(ov, core, m, args.device, args.threads, args.seed, infos[i])
                   for i, m in enumerate(args.model)]
    raw = interleave(openers, block_runs=args.block_runs, blocks_per_group=args.blocks_per_group,
                     warmup=args.warmup, seconds=args.seconds, min_groups=args.min_groups,
                     max_groups=args.max_groups, seed=args.seed,
                     progress=stderr_progress(args.seconds))
    identity = {k: v for k, v in infos[0].items() if k != "input_shapes"}
    return {**identity, "mode": "compare", "models": list(args.model),
            "input_shapes": [info.get("input_shapes") for info in infos], "interleave": raw}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("litert", "openvino"), required=True)
    parser.add_argument("--model", action="append", required=True,
                        help="model file; repeat it with --compare")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-xnnpack", action="store_true")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true",
                        help="time every --model together, interleaved")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--block-runs", type=int, default=10)
    parser.add_argument("--blocks-per-group", type=int, default=4)
    parser.add_argument("--min-groups", type=int, default=6)
    parser.add_argument("--max-groups", type=int, default=100000)
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.runs < 1:
        parser.error("--warmup must be >= 0 and --runs >= 1")
    if not args.compare and len(args.model) != 1:
        parser.error("exactly one --model without --compare")
    if args.compare and (args.block_runs < 1 or args.blocks_per_group < 1 or args.seconds < 0
                         or not 1 <= args.min_groups <= args.max_groups):
        parser.error("--compare needs --block-runs, --blocks-per-group >= 1, --seconds >= 0 "
                     "and 1 <= --min-groups <= --max-groups")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    args = parse_args(argv)
    if args.compare:
        result = compare_models(args)
    else:
        timer = time_litert if args.runtime == "litert" else time_openvino
        result = timer(args)
        result["runs"] = args.runs
    result.update(
        edgeprune_runner=FORMAT_VERSION,
        threads=args.threads,
        warmup=args.warmup,
        seed=args.seed,
        python=platform.python_version(),
        numpy=np.__version__,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
