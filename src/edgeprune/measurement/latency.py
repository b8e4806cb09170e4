"""Latency statistics and host-side LiteRT execution.

Two things live here:

* :func:`summarize` turns per-run latency samples (milliseconds) into a :class:`LatencyStats`
  record, the common currency of every benchmark result in the project;
* :class:`LiteRTRunner` and :func:`time_tflite_host` run ``.tflite`` models on this machine with
  the LiteRT Python interpreter (``ai_edge_litert``), for evaluation (outputs by name, int8
  handled transparently) and for timing.

TensorFlow is deliberately not imported: ``tf.lite.Interpreter`` is deprecated in favour of
``ai_edge_litert.interpreter``.

Run as a module it compares models' latency (:func:`edgeprune.measurement.compare.main`)::

    python -m edgeprune.latency compare MODEL_A MODEL_B [MODEL ...] [--target NAME]
        [--seconds S] [--threads N] [--seed N] [--json PATH] [--config PATH]
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LatencyStats",
    "LiteRTRunner",
    "TensorInfo",
    "host_cpu_model",
    "summarize",
    "time_callable",
    "time_tflite_host",
]

_QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one benchmark: every duration is in milliseconds.

    ``std_ms`` is the *population* standard deviation (``ddof=0``), the convention TFLite's
    ``benchmark_model`` also uses, so numbers from both sources are comparable. ``cv`` is
    ``std_ms / mean_ms`` and ``fps`` is ``1000 / median_ms`` (single-stream frames per second).
    Fields are ``None`` when a tool does not report them (e.g. ``benchmark_app`` prints no std).
    """

    n: int
    median_ms: float | None
    mean_ms: float
    p90_ms: float | None
    std_ms: float | None
    cv: float | None
    min_ms: float
    max_ms: float
    fps: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_summary(
        cls,
        *,
        n: int,
        mean_ms: float,
        min_ms: float,
        max_ms: float,
        median_ms: float | None = None,
        p90_ms: float | None = None,
        std_ms: float | None = None,
    ) -> LatencyStats:
        """Build stats from figures a tool already aggregated (no raw samples available)."""
        return cls(
            n=int(n),
            median_ms=median_ms,
            mean_ms=mean_ms,
            p90_ms=p90_ms,
            std_ms=std_ms,
            cv=None if std_ms is None or mean_ms <= 0 else std_ms / mean_ms,
            min_ms=min_ms,
            max_ms=max_ms,
            fps=None if not median_ms else 1000.0 / median_ms,
        )


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Summarise per-run latencies in milliseconds.

    The 90th percentile uses linear interpolation between order statistics (numpy's default
    ``method="linear"``); the standard deviation is the population one (``ddof=0``).

    Raises:
        ValueError: if ``samples_ms`` is empty, not one-dimensional, or holds a value that is not
            a finite positive number.
    """
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"latency samples must be a non-empty 1-D sequence, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ValueError(
            f"latency samples must be finite and > 0 ms; {int(bad.sum())} invalid value(s), "
            f"first at index {int(np.argmax(bad))}: {arr[np.argmax(bad)]!r}"
        )
    mean = float(arr.mean())
    median = float(np.median(arr))
    std = float(arr.std(ddof=0))
    return LatencyStats(
        n=int(arr.size),
        median_ms=median,
        mean_ms=mean,
        p90_ms=float(np.percentile(arr, 90)),
        std_ms=std,
        cv=std / mean,
        min_ms=float(arr.min()),
        max_ms=float(arr.max()),
        fps=1000.0 / median,
    )


def time_callable(fn: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; return each run's ms."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


# --------------------------------------------------------------------------- LiteRT


@dataclass(frozen=True)
class TensorInfo:
    """What a caller needs to know about one model input or output tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        """True when the tensor holds affine-quantised integers (non-zero scale)."""
        return self.scale != 0.0 and self.dtype.type in _QUANTIZED_DTYPES


def _tensor_info(name: str, details: Mapping[str, Any]) -> TensorInfo:
    scale, zero_point = details.get("quantization", (0.0, 0))
    return TensorInfo(
        name=name,
        shape=tuple(int(d) for d in details["shape"]),
        dtype=np.dtype(details["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


def _make_interpreter(model_path: str | os.PathLike[str], threads: int | None, use_xnnpack: bool):
    """Create a LiteRT interpreter; ``use_xnnpack=False`` disables LiteRT's default delegate."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"TFLite model not found: {path}")
    resolver = OpResolverType.AUTO if use_xnnpack else (
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return Interpreter(
        model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver
    )


def quantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Map real values onto ``info``'s integer grid, rounding half away from zero as TFLite does."""
    limits = np.iinfo(info.dtype)
    scaled = np.asarray(values, dtype=np.float64) / info.scale
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + info.zero_point
    return np.clip(q, limits.min, limits.max).astype(info.dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Map integers on ``info``'s grid back to float32 real values."""
    return ((values.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)


class LiteRTRunner:
    """Run a ``.tflite`` model through its signature, with inputs and outputs keyed by name.

    Output tensor order in a converted model is not stable, so outputs are looked up through the
    model's SignatureDef (the Keras output names, e.g. ``"loc"`` and ``"conf"``). Float inputs fed
    to an int8/uint8 input are quantised with the input's scale and zero point; integer outputs
    are dequantised to float32, so callers see real values whatever the model's precision.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        num_threads: int | None = None,
        use_xnnpack: bool = True,
        signature_key: str | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.num_threads = num_threads
        self.use_xnnpack = use_xnnpack
        interpreter = _make_interpreter(self.model_path, num_threads, use_xnnpack)
        signatures = interpreter.get_signature_list()
        if not signatures:
            raise ValueError(
                f"{self.model_path}: model has no SignatureDef, so outputs cannot be identified "
                "by name; export it with TFLiteConverter.from_keras_model or from_saved_model"
            )
        self._runner = interpreter.get_signature_runner(signature_key)
        # Shapes are only meaningful once tensors are allocated; a zero batch runs nothing.
        self.inputs = {k: _tensor_info(k, d) for k, d in self._runner.get_input_details().items()}
        self._interpreter = interpreter

    @property
    def outputs(self) -> dict[str, TensorInfo]:
        """Output tensors by signature name (shapes reflect the last invocation)."""
        details = self._runner.get_output_details()
        return {k: _tensor_info(k, d) for k, d in details.items()}

    def invoke(self, batch: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch and return ``{output name: array}`` with integer outputs dequantised.

        ``batch`` is an array when the model has a single input (e.g. an NHWC float image batch
        with pixel values 0..255), otherwise a mapping from input name to array.
        """
        feeds = self._feeds(batch)
        raw = self._runner(**{k: self._prepare(self.inputs[k], v) for k, v in feeds.items()})
        infos = self.outputs
        return {k: self._finish(infos[k], v) for k, v in raw.items()}

    def _feeds(self, batch: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if isinstance(batch, Mapping):
            missing = set(self.inputs) - set(batch)
            extra = set(batch) - set(self.inputs)
            if missing or extra:
                raise ValueError(
                    f"{self.model_path}: inputs {sorted(self.inputs)} expected; "
                    f"missing {sorted(missing)}, unexpected {sorted(extra)}"
                )
            return dict(batch)
        if len(self.inputs) != 1:
            raise ValueError(
                f"{self.model_path}: model has inputs {sorted(self.inputs)}; pass a mapping"
            )
        return {next(iter(self.inputs)): np.asarray(batch)}

    @staticmethod
    def _prepare(info: TensorInfo, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value)
        if info.quantized and np.issubdtype(value.dtype, np.floating):
            return quantize(value, info)
        return np.ascontiguousarray(value, dtype=info.dtype)

    @staticmethod
    def _finish(info: TensorInfo, value: np.ndarray) -> np.ndarray:
        if info.quantized:
            return dequantize(value, info)
        return np.array(value, copy=True)


# --------------------------------------------------------------------------- host timing


def host_cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (x86 ``model name``, ARM ``Hardware``/``Model``)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def _random_input(details: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    shape = tuple(int(d) for d in details["shape"])
    dtype = np.dtype(details["dtype"])
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        return rng.integers(limits.min, limits.max, size=shape, endpoint=True, dtype=dtype)
    return rng.uniform(0.0, 255.0, size=shape).astype(dtype)


def litert_version() -> str:
    """Installed ``ai_edge_litert`` version."""
    import ai_edge_litert

    return str(getattr(ai_edge_litert, "__version__", "unknown"))


def time_tflite_host(
    model_path: str | os.PathLike[str],
    threads: int | None,
    warmup: int,
    runs: int,
    use_xnnpack: bool = True,
) -> dict[str, Any]:
    """Time ``Interpreter.invoke()`` of a model on this machine with random input.

    Like TFLite's ``benchmark_model``, only ``invoke`` is timed (input copy and output readout
    are outside the clock) on the model's primary subgraph. Returns the stats dict, the raw
    samples, and what identifies the measurement (runtime and version, threads, delegate, CPU, OS).
    """
    interpreter = _make_interpreter(model_path, threads, use_xnnpack)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for details in interpreter.get_input_details():
        interpreter.set_tensor(details["index"], _random_input(details, rng))
    samples = time_callable(interpreter.invoke, warmup, runs)
    return {
        "runtime": "ai-edge-litert",
        "runtime_version": litert_version(),
        "threads": threads,
        "delegate": "xnnpack" if use_xnnpack else "none",
        "cpu": host_cpu_model(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "warmup": warmup,
        "runs": runs,
        "stats": summarize(samples).to_dict(),
        "samples_ms": samples,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (``python -m edgeprune.latency compare ...``): see
    :mod:`edgeprune.measurement.compare`."""
    from edgeprune.measurement.compare import main as compare_main

    return compare_main(argv)


if __name__ == "__main__":
    sys.exit(main())
