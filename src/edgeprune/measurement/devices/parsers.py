"""Parsers for the text printed by LiteRT ``benchmark_model``, OpenVINO ``benchmark_app`` and
TensorRT ``trtexec``.

The tools print human-oriented logs whose wording drifted between releases; the parsers accept
the known variants (log prefixes such as ``INFO:`` or Android logcat columns, numbers printed in
scientific notation, optional percentile fields, old and new memory wording, ``Avg``/``Average``,
latencies printed in ``us`` by recent benchmark_app builds; trtexec's summary with one
percentile (TensorRT 8.0-8.4) or several (8.5 and 10.x)). Output they cannot read raises a
one-line :class:`BenchmarkOutputError` naming the missing field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgeprune.errors import TargetError

__all__ = ["BenchmarkOutputError", "parse_benchmark_app", "parse_benchmark_model",
           "parse_trtexec"]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


class BenchmarkOutputError(TargetError, ValueError):
    """A benchmark tool's output lacks the lines a result needs (it crashed or changed format).

    ``field`` names what is missing or unreadable; the message is one line.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(" ".join(message.split()) if "\n" in message else message)
        self.field = field


def _last_lines(lines: list[str], n: int = 5) -> str:
    """The last ``n`` non-empty lines joined by `` | `` (error messages stay on one line)."""
    kept = [line.strip() for line in lines if line.strip()]
    return " | ".join(kept[-n:])[-600:] or "<empty output>"


# --------------------------------------------------------------------------- benchmark_model

_TIMINGS_RE = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<inference>{_NUM})"
)
_MEMORY_RES = (
    ("delta", re.compile(
        rf"Memory footprint delta from the start of the tool \(MB\): "
        rf"init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})"
    )),
    ("peak", re.compile(
        rf"Peak memory footprint \(MB\): init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})"
    )),
)
_PEAK_MONITOR_RE = re.compile(
    rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{_NUM})"
)
# A phase statistics line: "count=50 first=... curr=... min=... max=... avg=... std=..." with an
# optional "p5=... median=... p95=..." tail, or "count=1 curr=..." when every run took the same.
_PHASE_RE = re.compile(r"(?:^|[\s:])count=\d")
_FIELD_RE = re.compile(rf"\b(count|first|curr|min|max|avg|std|p5|median|p95)=({_NUM})")
_PHASE_FIELDS = ("count", "first", "curr", "min", "max", "avg", "std", "p5", "median", "p95")


def _number(text: str) -> float:
    return float(text)


def _phase_lines(lines: list[str]) -> list[dict[str, float]]:
    phases = []
    for line in lines:
        if not _PHASE_RE.search(line) or "(microseconds)" in line or "(bytes)" in line:
            continue
        fields = {k: _number(v) for k, v in _FIELD_RE.findall(line)}
        if "count" not in fields:  # e.g. "count=" cut off before its number
            continue
        fields["count"] = int(fields["count"])
        phases.append({k: fields[k] for k in _PHASE_FIELDS if k in fields})
    return phases


def _memory(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"init_mb": None, "overall_mb": None, "peak_mb": None,
                           "memory_wording": None}
    for wording, pattern in _MEMORY_RES:
        match = pattern.search(text)
        if match:
            out.update(init_mb=_number(match["init"]), overall_mb=_number(match["overall"]),
                       memory_wording=wording)
            break
    peak = _PEAK_MONITOR_RE.search(text)
    if peak:
        out["peak_mb"] = _number(peak["peak"])
    return out


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Extract timings (µs), per-phase statistics and memory (MB) from ``benchmark_model`` output.

    Returns ``init_us``, ``first_inference_us``, ``warmup_avg_us``, ``inference_avg_us``;
    ``warmup`` and ``inference`` phase dicts (``count first curr min max avg std`` and, from newer
    builds, ``p5 median p95``; ``None`` when absent); ``init_mb``/``overall_mb`` from either the
    ``Memory footprint delta ...`` or the older ``Peak memory footprint ...`` wording (which one is
    in ``memory_wording``), and ``peak_mb`` when ``--report_peak_memory_footprint`` was on.

    Raises:
        BenchmarkOutputError: (a ValueError and a TargetError) if the timing line is missing.
    """
    text = text.replace("\r\n", "\n")
    lines = text.splitlines()
    index = next((i for i, line in enumerate(lines) if _TIMINGS_RE.search(line)), None)
    if index is None:
        raise BenchmarkOutputError(
            "benchmark_model output has no 'Inference timings in us: ...' line (the run failed "
            f"or the output format is unknown); last lines: {_last_lines(lines)}",
            field="Inference timings in us",
        )
    timing = _TIMINGS_RE.search(lines[index])
    assert timing is not None
    # Per-op profiling tables come after the timing line; phase lines come before it.
    phases = _phase_lines(lines[:index])
    result: dict[str, Any] = {
        "init_us": _number(timing["init"]),
        "first_inference_us": _number(timing["first"]),
        "warmup_avg_us": _number(timing["warmup"]),
        "inference_avg_us": _number(timing["inference"]),
        "warmup": phases[-2] if len(phases) >= 2 else None,
        "inference": phases[-1] if phases else None,
    }
    result.update(_memory(text))
    return result


# --------------------------------------------------------------------------- benchmark_app

_APP_VALUE = rf"(?P<value>{_NUM})\s*(?P<unit>ms|us|µs)"
_APP_LATENCY_RES = {
    "median_ms": re.compile(rf"^\s*Median:\s*{_APP_VALUE}", re.IGNORECASE),
    "average_ms": re.compile(rf"^\s*(?:Average|Avg):\s*{_APP_VALUE}", re.IGNORECASE),
    "min_ms": re.compile(rf"^\s*Min:\s*{_APP_VALUE}", re.IGNORECASE),
    "max_ms": re.compile(rf"^\s*Max:\s*{_APP_VALUE}", re.IGNORECASE),
}
_APP_SINGLE_LATENCY_RE = re.compile(rf"^\s*Latency:\s*{_APP_VALUE}")
_APP_HEADER_RE = re.compile(r"^\s*Latency:\s*$")
_APP_THROUGHPUT_RE = re.compile(rf"Throughput:\s*(?P<value>{_NUM})\s*FPS", re.IGNORECASE)
_APP_COUNT_RE = re.compile(r"Count:\s*(?P<value>\d+)\s*iterations")
_APP_DURATION_RE = re.compile(rf"Duration:\s*{_APP_VALUE}")
_APP_FIRST_RE = re.compile(rf"First inference took\s*{_APP_VALUE}")
_APP_BUILD_RE = re.compile(r"Build \.+ (?P<value>\S+)")
_LOG_PREFIX_RE = re.compile(r"^\s*\[\s*[A-Z]+\s*\]\s?")


def _ms(match: re.Match[str]) -> float:
    value = _number(match["value"])
    return value if match["unit"] == "ms" else value / 1000.0


def _strip_prefix(line: str) -> str:
    return _LOG_PREFIX_RE.sub("", line, count=1)


def _latency_block(lines: list[str]) -> dict[str, float]:
    """Read the first ``Latency:`` block (later blocks are per-shape-group repeats)."""
    found: dict[str, float] = {}
    start = next((i for i, line in enumerate(lines) if _APP_HEADER_RE.match(line)), None)
    if start is None:
        single = next((m for m in map(_APP_SINGLE_LATENCY_RE.match, lines) if m), None)
        return {"median_ms": _ms(single)} if single else {}
    for line in lines[start + 1:start + 6]:
        for key, pattern in _APP_LATENCY_RES.items():
            match = pattern.match(line)
            if match and key not in found:
                found[key] = _ms(match)
    return found


def _first(pattern: re.Pattern[str], lines: list[str]) -> re.Match[str] | None:
    return next((m for m in map(pattern.search, lines) if m), None)


def parse_benchmark_app(text: str) -> dict[str, Any]:
    """Extract latency (ms), throughput (FPS) and iteration count from ``benchmark_app`` output.

    Returns ``median_ms``, ``average_ms``, ``min_ms``, ``max_ms`` (``None`` if not printed; very
    old builds print a single ``Latency: X ms``, taken as the median), ``throughput_fps``,
    ``count`` (iterations), ``duration_ms``, ``first_inference_ms`` and ``build`` when printed.

    Raises:
        BenchmarkOutputError: if neither a latency nor a throughput figure is present.
    """
    lines = [_strip_prefix(line) for line in text.replace("\r\n", "\n").splitlines()]
    result: dict[str, Any] = dict.fromkeys(_APP_LATENCY_RES)
    result.update(_latency_block(lines))
    throughput = _first(_APP_THROUGHPUT_RE, lines)
    count = _first(_APP_COUNT_RE, lines)
    duration = _first(_APP_DURATION_RE, lines)
    first = _first(_APP_FIRST_RE, lines)
    build = _first(_APP_BUILD_RE, lines)
    result.update(
        throughput_fps=_number(throughput["value"]) if throughput else None,
        count=int(count["value"]) if count else None,
        duration_ms=_ms(duration) if duration else None,
        first_inference_ms=_ms(first) if first else None,
        build=build["value"] if build else None,
    )
    if result["median_ms"] is None and result["average_ms"] is None:
        raise BenchmarkOutputError(
            "benchmark_app output has no latency statistics ('Latency:' block with Median/Average)"
            f"; the run failed or the format is unknown; last lines: {_last_lines(lines)}",
            field="Latency: Median/Average",
        )
    return result


# --------------------------------------------------------------------------- trtexec

# "[06/26/2023-11:30:51] [I] GPU Compute Time: min = 4.2 ms, max = ..., mean = ..., median = ...,
# percentile(90%) = ... ms, ..." (TensorRT 8.5+ and 10.x print three percentiles, 8.0-8.4 one).
_TRT_STATS = {"latency": "Latency", "gpu_compute": "GPU Compute Time", "enqueue": "Enqueue Time",
              "h2d": "H2D Latency", "d2h": "D2H Latency"}
_TRT_LINE_RE = re.compile(r"(?:^|\]\s)(?P<name>Latency|GPU Compute Time|Enqueue Time|H2D Latency|"
                          r"D2H Latency):\s*(?P<body>min\b.*)$")
_TRT_FIELD_RE = re.compile(rf"\b(min|max|mean|median)\s*=?\s*({_NUM})\s*ms")
_TRT_PCT_RE = re.compile(rf"percentile\((?P<p>{_NUM})%\)\s*=?\s*(?P<v>{_NUM})\s*ms")
_TRT_QUERIES_RE = re.compile(rf"Timing trace has (?P<n>\d+) queries over (?P<s>{_NUM}) s")
_TRT_WARMUP_RE = re.compile(rf"Warmup completed (?P<n>\d+) queries over (?P<ms>{_NUM}) ms")
_TRT_THROUGHPUT_RE = re.compile(rf"Throughput:\s*(?P<v>{_NUM})\s*qps")
_TRT_VERSION_RE = re.compile(r"TensorRT version:\s*(?P<v>\d+\.\d+\.\d+)")
_TRT_BANNER_RE = re.compile(r"\[TensorRT v(?P<v>\d+)\]")


def _trt_version(text: str) -> str | None:
    """``TensorRT version: 8.6.1``, else the banner's ``v8601`` (8.x: M*1000 + m*100 + p) or
    ``v100200`` (10.x: M*10000 + m*100 + p)."""
    match = _TRT_VERSION_RE.search(text)
    if match:
        return match["v"]
    banner = _TRT_BANNER_RE.search(text)
    if not banner:
        return None
    code = int(banner["v"])
    major, rest = (code // 10000, code % 10000) if code >= 10000 else (code // 1000, code % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def parse_trtexec(text: str) -> dict[str, Any]:
    """Extract the performance summary (ms) of a ``trtexec`` run.

    Returns ``latency``, ``gpu_compute``, ``enqueue``, ``h2d``, ``d2h`` (each ``min max mean
    median`` and ``percentiles`` ``{"90": ..., "99": ...}``, or ``None`` when not printed),
    ``queries`` (timed inferences), ``seconds``, ``warmup_queries``, ``warmup_ms``,
    ``throughput_qps`` and ``version``.

    Raises:
        BenchmarkOutputError: the ``GPU Compute Time`` line, one of its fields, or the
            ``Timing trace has N queries`` line is missing (a crash or truncated output).
    """
    lines = text.replace("\r\n", "\n").splitlines()
    stats: dict[str, Any] = dict.fromkeys(_TRT_STATS)
    names = {v: k for k, v in _TRT_STATS.items()}
    for line in lines:
        match = _TRT_LINE_RE.search(line.rstrip())
        if not match or stats[names[match["name"]]] is not None:
            continue
        fields: dict[str, Any] = {k: _number(v) for k, v in _TRT_FIELD_RE.findall(match["body"])}
        fields["percentiles"] = {f"{float(m['p']):g}": _number(m["v"])
                                 for m in _TRT_PCT_RE.finditer(match["body"])}
        stats[names[match["name"]]] = fields
    gpu = stats["gpu_compute"]
    if gpu is None:
        raise BenchmarkOutputError(
            "trtexec output has no 'GPU Compute Time: min = ...' line (the run failed or was cut "
            f"short); last lines: {_last_lines(lines)}", field="GPU Compute Time")
    missing = [k for k in ("min", "max", "mean", "median") if k not in gpu]
    if missing:
        raise BenchmarkOutputError(
            f"trtexec 'GPU Compute Time' line lacks {', '.join(missing)}; last lines: "
            f"{_last_lines(lines)}", field=f"GPU Compute Time {missing[0]}")
    queries = _first(_TRT_QUERIES_RE, lines)
    if queries is None:
        raise BenchmarkOutputError(
            "trtexec output has no 'Timing trace has N queries over S s' line; last lines: "
            f"{_last_lines(lines)}", field="Timing trace has N queries")
    warmup = _first(_TRT_WARMUP_RE, lines)
    throughput = _first(_TRT_THROUGHPUT_RE, lines)
    return {**stats, "queries": int(queries["n"]), "seconds": _number(queries["s"]),
            "warmup_queries": int(warmup["n"]) if warmup else None,
            "warmup_ms": _number(warmup["ms"]) if warmup else None,
            "throughput_qps": _number(throughput["v"]) if throughput else None,
            "version": _trt_version(text)}


def last_json_line(text: str, key: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object holding ``key`` (how the runners this
    project ships report their result among other output), or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                payload = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(payload, dict) and key in payload:
                return payload
    return None
