"""Tests for the benchmark_model / benchmark_app / trtexec output parsers.

The fixtures reproduce the line formats printed by real builds of the tools (TFLite
benchmark_model from ~2.4 to current LiteRT, OpenVINO benchmark_app 2020.x to 2025.x), with our
own numbers: log prefixes, scientific notation, optional percentiles, both memory wordings,
op-profiling tables, ``Avg``/``Average`` and latencies in ``us``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeprune.errors import TargetError
from edgeprune.measurement.devices.bench import app_precision, read_tool_output
from edgeprune.measurement.devices.parsers import (
    BenchmarkOutputError,
    parse_benchmark_app,
    parse_benchmark_model,
    parse_trtexec,
)

# Current LiteRT build on Android: "INFO:" prefix, warmup line with a single run,
# scientific notation in averages, new memory wording.
BM_NEW_WORDING = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/edgeprune/models/ssd_mobilenet_v2.tflite]
INFO: Signature to run: []
INFO: #threads used for CPU inference: [4]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/edgeprune/models/ssd_mobilenet_v2.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 24.1133
INFO: Initialized session in 152.301ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
INFO: count=1 curr=2104822

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
INFO: count=50 first=1873301 curr=1861774 min=1840562 max=1951230 avg=1.86977e+06 std=21044

INFO: Inference timings in us: Init: 152301, First inference: 2104822, Warmup (avg): \
2.10482e+06, Inference (avg): 1.86977e+06
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only \
APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at \
your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=31.4023 overall=88.1211
"""

# Older TFLite build (about 2.4-2.6): no prefix, several warmup runs, old memory wording.
BM_OLD_WORDING = """\
STARTING!
Min num runs: [50]
Num threads: [4]
Graph: [/data/local/tmp/yolo_tiny_fp32.tflite]
Loaded model /data/local/tmp/yolo_tiny_fp32.tflite
The input model file size (MB): 35.2031
Initialized session in 21.877ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
count=8 first=312044 curr=298811 min=290123 max=312044 avg=299870 std=6521

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
count=50 first=296402 curr=301137 min=288765 max=310032 avg=297514 std=4410

Inference timings in us: Init: 21877, First inference: 402113, Warmup (avg): 299870, \
Inference (avg): 297514
Note: as the benchmark tool itself affects memory footprint, the following is only \
APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at \
your discretion.
Peak memory footprint (MB): init=5.01172 overall=71.2305
"""

# Newer build through the Android benchmark app (logcat columns), percentiles appended to the
# phase lines, --report_peak_memory_footprint on, and --enable_op_profiling tables afterwards
# whose "Timings (microseconds): count=..." lines must not be taken for phase statistics.
BM_PERCENTILES_LOGCAT = """\
11-02 09:12:40.118 I/tflite  ( 7311): Use gpu: [1]
11-02 09:12:40.530 I/tflite  ( 7311): Created 1 GPU delegate kernels.
11-02 09:12:40.531 I/tflite  ( 7311): Initialized session in 411.902ms.
11-02 09:12:40.531 I/tflite  ( 7311): Running benchmark for at least 1 iterations and at least \
0.5 seconds but terminate if exceeding 150 seconds.
11-02 09:12:41.040 I/tflite  ( 7311): count=17 first=61022 curr=28814 min=28101 max=61022 \
avg=30742.6 std=7621 p5=28101 median=28790 p95=61022
11-02 09:12:41.040 I/tflite  ( 7311): Running benchmark for at least 50 iterations and at least \
1 seconds but terminate if exceeding 150 seconds.
11-02 09:12:42.611 I/tflite  ( 7311): count=54 first=28755 curr=28577 min=27911 max=33208 \
avg=28990.4 std=917 p5=28012 median=28702 p95=31044
11-02 09:12:42.611 I/tflite  ( 7311): Inference timings in us: Init: 411902, First inference: \
61022, Warmup (avg): 30742.6, Inference (avg): 28990.4
11-02 09:12:42.611 I/tflite  ( 7311): Memory footprint delta from the start of the tool (MB): \
init=102.41 overall=118.77
11-02 09:12:42.612 I/tflite  ( 7311): Overall peak memory footprint (MB) via periodic \
monitoring: 131.516
Profiling Info for Benchmark Initialization:
Timings (microseconds): count=1 curr=398112
Memory (bytes): count=0
Operator-wise Profiling Info for Regular Benchmark Runs:
Timings (microseconds): count=54 first=28611 curr=28448 min=27802 max=33090 avg=28870.1 std=915
Memory (bytes): count=0
"""

BM_FAILED = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/missing.tflite]
ERROR: Could not open '/data/local/tmp/missing.tflite'.
ERROR: Failed to load model /data/local/tmp/missing.tflite
ERROR: Benchmarking failed.
"""

# OpenVINO 2024.x Python benchmark_app, -hint latency -niter 200, CPU.
APP_AVERAGE = """\
[Step 1/11] Parsing and validating input arguments
[ INFO ] Parsing input parameters
[Step 2/11] Loading OpenVINO Runtime
[ INFO ] OpenVINO:
[ INFO ] Build ................................. 2024.4.0-16579-c3152d32c9c-releases/2024/4
[ INFO ]
[ INFO ] Device info:
[ INFO ] CPU
[ INFO ] Build ................................. 2024.4.0-16579-c3152d32c9c-releases/2024/4
[Step 10/11] Measuring performance (Start inference synchronously, limits: 200 iterations)
[ INFO ] Benchmarking in inference only mode (inputs filling are not included in measurement \
loop).
[ INFO ] First inference took 31.77 ms
[Step 11/11] Dumping statistics report
[ INFO ] Execution Devices:['CPU']
[ INFO ] Count:            200 iterations
[ INFO ] Duration:         4187.52 ms
[ INFO ] Latency:
[ INFO ]    Median:        20.64 ms
[ INFO ]    Average:       20.84 ms
[ INFO ]    Min:           19.84 ms
[ INFO ]    Max:           31.70 ms
[ INFO ] Throughput:   47.75 FPS
"""

# OpenVINO 2022.x C++ benchmark_app on a Raspberry Pi with the NCS2: "Avg:" wording.
APP_AVG = """\
[ INFO ] OpenVINO:
[ INFO ] Build ................................. 2022.3.0-9052-9752fafe8eb-releases/2022/3
[ INFO ] First inference took 97.43 ms
[Step 11/11] Dumping statistics report
[ INFO ] Count:      400 iterations
[ INFO ] Duration:   16342.11 ms
[ INFO ] Latency:
[ INFO ]    Median:  40.61 ms
[ INFO ]    Avg:     40.85 ms
[ INFO ]    Min:     39.92 ms
[ INFO ]    Max:     47.18 ms
[ INFO ] Throughput: 24.48 FPS
"""

# Recent benchmark_app switches to microseconds for sub-millisecond latencies and, with -pcseq,
# repeats a Latency block per input-shape group (the first block is the overall one).
APP_MICROSECONDS = """\
[ INFO ] Count:            12000 iterations
[ INFO ] Duration:         10012.34 ms
[ INFO ] Latency:
[ INFO ]    Median:        812.40 us
[ INFO ]    Average:       830.15 us
[ INFO ]    Min:           760.02 us
[ INFO ]    Max:           2400.90 us
[ INFO ] Latency for each data shape group:
[ INFO ] 1.image: [1,300,300,3]
[ INFO ]    Median:     5.00 ms
[ INFO ]    Average:    5.00 ms
[ INFO ]    Min:        5.00 ms
[ INFO ]    Max:        5.00 ms
[ INFO ] Throughput:   1198.52 FPS
"""

# OpenVINO 2020.x benchmark_app: one latency figure on the Latency line.
APP_SINGLE_LATENCY = """\
[Step 11/11] Dumping statistics report
Count:      33676 iterations
Duration:   60010.21 ms
Latency:    7.01 ms
Throughput: 561.17 FPS
"""

APP_FAILED = """\
[Step 2/11] Loading OpenVINO Runtime
[ ERROR ] Can not find a device MYRIAD
Traceback (most recent call last):
RuntimeError: Check 'false' failed
"""


# --------------------------------------------------------------------------- benchmark_model


def test_benchmark_model_new_wording_and_scientific_notation() -> None:
    r = parse_benchmark_model(BM_NEW_WORDING)
    assert r["init_us"] == 152301
    assert r["first_inference_us"] == 2104822
    assert r["warmup_avg_us"] == pytest.approx(2.10482e6)
    assert r["inference_avg_us"] == pytest.approx(1.86977e6)
    assert r["warmup"] == {"count": 1, "curr": 2104822}
    assert r["inference"] == {
        "count": 50, "first": 1873301, "curr": 1861774, "min": 1840562, "max": 1951230,
        "avg": pytest.approx(1.86977e6), "std": 21044,
    }
    assert (r["init_mb"], r["overall_mb"]) == (pytest.approx(31.4023), pytest.approx(88.1211))
    assert r["memory_wording"] == "delta" and r["peak_mb"] is None


def test_benchmark_model_old_wording() -> None:
    r = parse_benchmark_model(BM_OLD_WORDING)
    assert r["inference_avg_us"] == 297514 and r["warmup_avg_us"] == 299870
    assert r["warmup"]["count"] == 8 and r["warmup"]["std"] == 6521
    assert r["inference"]["count"] == 50 and r["inference"]["min"] == 288765
    assert "median" not in r["inference"]
    assert r["memory_wording"] == "peak"
    assert (r["init_mb"], r["overall_mb"]) == (pytest.approx(5.01172), pytest.approx(71.2305))


def test_benchmark_model_percentiles_logcat_and_op_profiling() -> None:
    r = parse_benchmark_model(BM_PERCENTILES_LOGCAT)
    assert r["inference"]["count"] == 54
    assert (r["inference"]["p5"], r["inference"]["median"], r["inference"]["p95"]) == (
        28012, 28702, 31044
    )
    assert r["inference"]["avg"] == pytest.approx(28990.4)
    assert r["warmup"]["count"] == 17 and r["warmup"]["median"] == 28790
    assert r["inference_avg_us"] == pytest.approx(28990.4)
    assert r["peak_mb"] == pytest.approx(131.516)
    assert r["overall_mb"] == pytest.approx(118.77)


def test_benchmark_model_timing_line_only() -> None:
    text = "Inference timings in us: Init: 10, First inference: 20, Warmup (avg): 15, " \
        "Inference (avg): 12.5\n"
    r = parse_benchmark_model(text)
    assert r["inference_avg_us"] == 12.5
    assert r["inference"] is None and r["warmup"] is None and r["init_mb"] is None


def test_benchmark_model_all_same_phase() -> None:
    text = (
        "INFO: count=1 curr=5120\n"
        "INFO: count=3 curr=5000(all same)\n"
        "INFO: Inference timings in us: Init: 900, First inference: 5120, Warmup (avg): 5120, "
        "Inference (avg): 5000\n"
    )
    r = parse_benchmark_model(text)
    assert r["warmup"] == {"count": 1, "curr": 5120}
    assert r["inference"] == {"count": 3, "curr": 5000}


def test_benchmark_model_windows_line_endings() -> None:
    r = parse_benchmark_model(BM_OLD_WORDING.replace("\n", "\r\n"))
    assert r["inference"]["count"] == 50


def test_benchmark_model_missing_timing_line_is_a_clear_error() -> None:
    with pytest.raises(BenchmarkOutputError, match="Inference timings") as info:
        parse_benchmark_model(BM_FAILED)
    assert "Benchmarking failed" in str(info.value)  # the tail of the output is quoted
    assert isinstance(info.value, ValueError) and isinstance(info.value, TargetError)


def test_benchmark_model_empty_output() -> None:
    with pytest.raises(ValueError, match="empty output"):
        parse_benchmark_model("")


# --------------------------------------------------------------------------- benchmark_app


def test_benchmark_app_average_wording() -> None:
    r = parse_benchmark_app(APP_AVERAGE)
    assert r["median_ms"] == 20.64 and r["average_ms"] == 20.84
    assert (r["min_ms"], r["max_ms"]) == (19.84, 31.70)
    assert r["throughput_fps"] == 47.75
    assert r["count"] == 200 and r["duration_ms"] == 4187.52
    assert r["first_inference_ms"] == 31.77
    assert r["build"] == "2024.4.0-16579-c3152d32c9c-releases/2024/4"


def test_benchmark_app_avg_wording() -> None:
    r = parse_benchmark_app(APP_AVG)
    assert (r["median_ms"], r["average_ms"], r["min_ms"], r["max_ms"]) == (
        40.61, 40.85, 39.92, 47.18
    )
    assert r["throughput_fps"] == 24.48 and r["count"] == 400
    assert r["build"].startswith("2022.3.0")


def test_benchmark_app_microseconds_and_shape_groups() -> None:
    r = parse_benchmark_app(APP_MICROSECONDS)
    assert r["median_ms"] == pytest.approx(0.8124)
    assert r["average_ms"] == pytest.approx(0.83015)
    assert r["max_ms"] == pytest.approx(2.4009)
    assert r["throughput_fps"] == 1198.52


def test_benchmark_app_single_latency_line() -> None:
    r = parse_benchmark_app(APP_SINGLE_LATENCY)
    assert r["median_ms"] == 7.01 and r["average_ms"] is None
    assert r["count"] == 33676 and r["throughput_fps"] == 561.17


def test_benchmark_app_failure() -> None:
    with pytest.raises(BenchmarkOutputError, match="no latency statistics") as info:
        parse_benchmark_app(APP_FAILED)
    assert "MYRIAD" in str(info.value)


# The compiled model's properties (step 8): the C++ tool prints the short type name, the Python
# tool (2024.x and later) the Type object.
APP_PROPERTIES_CPP = """\
[Step 8/11] Querying optimal runtime parameters
[ INFO ] Model:
[ INFO ]   NETWORK_NAME: torch-jit-export
[ INFO ]   INFERENCE_PRECISION_HINT: f32
[ INFO ]   KV_CACHE_PRECISION: u8
"""
APP_PROPERTIES_PY = """\
[ INFO ]   INFERENCE_NUM_THREADS: 1
[ INFO ]   INFERENCE_PRECISION_HINT: <Type: 'bfloat16'>
[ INFO ]   KV_CACHE_PRECISION: <Type: 'uint8_t'>
"""


def test_benchmark_app_inference_precision() -> None:
    assert app_precision(APP_PROPERTIES_CPP) == "f32"
    assert app_precision(APP_PROPERTIES_PY) == "bf16"
    assert app_precision(APP_PROPERTIES_PY.replace("bfloat16", "float32")) == "f32"
    assert app_precision(APP_AVERAGE) is None  # an output without the properties dump
    assert app_precision("[ INFO ]   INFERENCE_PRECISION_HINT: <Type: 'bflo") is None  # cut
    tool = read_tool_output("benchmark_app", APP_PROPERTIES_PY + APP_AVERAGE)["tool"]
    assert tool["inference_precision"] == "bf16" and tool["median_ms"] == 20.64
    assert read_tool_output("benchmark_app", APP_AVG)["tool"]["inference_precision"] is None


# --------------------------------------------------------------------------- trtexec

DATA = Path(__file__).with_name("data")  # reconstructed outputs, see tests/data/README.md


def test_trtexec_8_2_single_percentile_and_end_to_end_line() -> None:
    r = parse_trtexec((DATA / "trtexec_8.2_jetson_tx2.log").read_text())
    gpu = r["gpu_compute"]
    assert (gpu["min"], gpu["median"], gpu["mean"], gpu["max"]) == (9.08765, 9.18311, 9.20654,
                                                                     10.7529)
    assert gpu["percentiles"] == {"99": 10.5537}
    assert r["latency"]["median"] == 9.50391 and r["h2d"]["mean"] == 0.241406
    assert (r["queries"], r["seconds"]) == (100, 0.951882)
    assert (r["warmup_queries"], r["warmup_ms"]) == (22, 200.0)
    assert r["throughput_qps"] == 105.055 and r["version"] == "8.2.1"


def test_trtexec_8_6_and_10_three_percentiles() -> None:
    r86 = parse_trtexec((DATA / "trtexec_8.6.log").read_text())
    assert r86["gpu_compute"]["percentiles"] == {"90": 1.8584, "95": 1.87402, "99": 2.36426}
    assert r86["version"] == "8.6.1" and r86["queries"] == 50
    text10 = (DATA / "trtexec_10.3.log").read_text()
    r10 = parse_trtexec(text10)
    assert r10["gpu_compute"]["median"] == 0.647705 and r10["latency"]["max"] == 0.9375
    assert r10["version"] == "10.3.0" and r10["warmup_queries"] == 287
    # Without the "TensorRT version:" line the banner's v100300 / v8601 code is decoded.
    banner_only = "\n".join(x for x in text10.splitlines() if "TensorRT version" not in x)
    assert parse_trtexec(banner_only)["version"] == "10.3.0"
    assert parse_trtexec(text10.replace("v100300", "v8601").replace(
        "TensorRT version: 10.3.0", ""))["version"] == "8.6.1"


def test_trtexec_stats_come_from_gpu_compute_time() -> None:
    out = read_tool_output("trtexec", (DATA / "trtexec_10.3.log").read_text())
    stats = out["stats"]
    assert (stats["n"], stats["median_ms"], stats["mean_ms"]) == (50, 0.647705, 0.652344)
    assert (stats["min_ms"], stats["max_ms"], stats["p90_ms"]) == (0.636963, 0.88623, 0.659668)
    assert stats["std_ms"] is None and stats["fps"] == pytest.approx(1000 / 0.647705)
    assert (out["runtime"], out["runtime_version"], out["warmup"]) == ("tensorrt trtexec",
                                                                       "10.3.0", 287)
    tx2 = read_tool_output("trtexec", (DATA / "trtexec_8.2_jetson_tx2.log").read_text())
    assert tx2["stats"]["p90_ms"] is None  # 8.2 prints the 99th percentile only


def test_trtexec_failed_run_is_one_line_error() -> None:
    text = ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --loadEngine=x.plan\n"
            "[12/01/2026-10:02:11] [E] Error[1]: [stdArchiveReader.cpp::StdArchiveReader::32] "
            "Error Code 1: Serialization (Serialization assertion magicTagRead == kMAGIC_TAG "
            "failed.Magic tag does not match)\n"
            "&&&& FAILED TensorRT.trtexec [TensorRT v8601] # trtexec --loadEngine=x.plan\n")
    with pytest.raises(BenchmarkOutputError, match="GPU Compute Time") as info:
        parse_trtexec(text)
    assert "\n" not in str(info.value) and "Magic tag does not match" in str(info.value)
    assert info.value.field == "GPU Compute Time"


RUNNER_JSON = ('remote_runner: warming up\n{"edgeprune_runner": 1, "runtime": "ai-edge-litert", '
               '"runtime_version": "1.2.0", "samples_ms": [5.12, 5.08, 5.31, 5.02], '
               '"threads": 2}\n')


@pytest.mark.parametrize(("runtime", "text"), [
    ("benchmark_model", BM_NEW_WORDING),
    ("benchmark_model", BM_PERCENTILES_LOGCAT),
    ("benchmark_model", BM_OLD_WORDING),
    ("benchmark_app", APP_AVERAGE),
    ("benchmark_app", APP_MICROSECONDS),
    ("trtexec", (DATA / "trtexec_8.2_jetson_tx2.log").read_text()),
    ("trtexec", (DATA / "trtexec_10.3.log").read_text()),
    ("litert-python", RUNNER_JSON),
])
def test_truncated_output_gives_one_line_error_naming_the_field(runtime: str,
                                                                text: str) -> None:
    """Every cut of a complete output (each line end, and every 5th character) is either read
    or refused with a one-line BenchmarkOutputError naming the field: never another exception
    (KeyError, ValueError from empty samples, ...). The complete output is read."""
    full = read_tool_output(runtime, text, runs=30)
    cuts = sorted({i for i in range(0, len(text), 5)}
                  | {i + 1 for i, ch in enumerate(text) if ch == "\n"})
    refused = 0
    for cut in cuts:
        try:
            out = read_tool_output(runtime, text[:cut], runs=30)
        except BenchmarkOutputError as exc:
            refused += 1
            assert "\n" not in str(exc) and exc.field, (cut, str(exc))
            continue
        # what is read from a cut output is what the complete output says, or a tool-reported
        # subset of it (a percentile not yet printed)
        for key in ("n", "mean_ms", "min_ms", "max_ms"):
            assert out["stats"][key] == full["stats"][key], (cut, key)
    assert refused > 0.5 * len(cuts)
