"""Parsers for the text printed by LiteRT ``benchmark_model`` and OpenVINO ``benchmark_app``.

Both tools print human-oriented logs whose wording drifted between releases; the parsers accept
the known variants (log prefixes such as ``INFO:`` or Android logcat columns, numbers printed in
scientific notation, optional percentile fields, old and new memory wording, ``Avg``/``Average``,
latencies printed in ``us`` by recent benchmark_app builds).
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgeprune.errors import TargetError

__all__ = ["BenchmarkOutputError", "parse_benchmark_app", "parse_benchmark_model"]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


class BenchmarkOutputError(TargetError, ValueError):
    """A benchmark tool's output lacks the lines a result needs (it crashed or changed format)."""


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
        tail = "\n".join(lines[-5:]) or "<empty output>"
        raise BenchmarkOutputError(
            "benchmark_model output has no 'Inference timings in us: ...' line (the run failed "
            f"or the output format is unknown); last lines:\n{tail}"
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
        tail = "\n".join(lines[-5:]) or "<empty output>"
        raise BenchmarkOutputError(
            "benchmark_app output has no latency statistics ('Latency:' block with Median/Average)"
            f"; the run failed or the format is unknown; last lines:\n{tail}"
        )
    return result


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
