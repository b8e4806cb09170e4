"""Tests for edgeprune.measurement.latency: statistics by hand, the LiteRT runner on converted
models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tiny_models import NUM_ANCHORS, NUM_CLASSES, TinyModels, tiny_models

from edgeprune.measurement.latency import (
    LatencyStats,
    LiteRTRunner,
    summarize,
    time_callable,
    time_tflite_host,
)

# --------------------------------------------------------------------------- statistics


def test_summarize_even_count_by_hand() -> None:
    stats = summarize([40.0, 10.0, 30.0, 20.0])
    assert stats.n == 4
    assert stats.median_ms == pytest.approx(25.0)
    assert stats.mean_ms == pytest.approx(25.0)
    # Linear interpolation: rank 0.9 * (4 - 1) = 2.7 -> 30 + 0.7 * (40 - 30) = 37.
    assert stats.p90_ms == pytest.approx(37.0)
    # Population std: deviations -15, -5, 5, 15 -> variance (225 + 25 + 25 + 225) / 4 = 125.
    assert stats.std_ms == pytest.approx(math.sqrt(125.0))
    assert stats.cv == pytest.approx(math.sqrt(125.0) / 25.0)
    assert (stats.min_ms, stats.max_ms) == (10.0, 40.0)
    assert stats.fps == pytest.approx(1000.0 / 25.0)


def test_summarize_odd_count_and_skew_by_hand() -> None:
    stats = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, 10.0, 50.0])
    assert stats.median_ms == pytest.approx(5.0)
    assert stats.mean_ms == pytest.approx(10.0)
    # rank 0.9 * 9 = 8.1 -> sorted[8] + 0.1 * (sorted[9] - sorted[8]) = 10 + 0.1 * 40 = 14.
    assert stats.p90_ms == pytest.approx(14.0)
    # squared deviations: 64+36+36+36+25+25+9+1+0+1600 = 1832 -> variance 183.2
    assert stats.std_ms == pytest.approx(math.sqrt(183.2))
    assert stats.fps == pytest.approx(200.0)


def test_summarize_single_sample() -> None:
    stats = summarize([12.5])
    assert (stats.n, stats.median_ms, stats.p90_ms, stats.std_ms, stats.cv) == (
        1, 12.5, 12.5, 0.0, 0.0
    )


def test_summarize_matches_numpy_defaults() -> None:
    samples = np.random.default_rng(3).gamma(4.0, 5.0, size=101)
    stats = summarize(samples.tolist())
    assert stats.p90_ms == pytest.approx(float(np.percentile(samples, 90)))
    assert stats.std_ms == pytest.approx(float(np.std(samples)))


@pytest.mark.parametrize(
    "samples", [[], [1.0, 0.0], [3.0, -1.0], [1.0, float("nan")], [float("inf")]]
)
def test_summarize_rejects_bad_samples(samples: list[float]) -> None:
    with pytest.raises(ValueError, match="latency samples"):
        summarize(samples)


def test_to_dict_round_trip() -> None:
    stats = summarize([1.0, 2.0, 3.0])
    assert LatencyStats(**stats.to_dict()) == stats
    assert set(stats.to_dict()) == {
        "n", "median_ms", "mean_ms", "p90_ms", "std_ms", "cv", "min_ms", "max_ms", "fps"
    }


def test_from_summary_leaves_unknown_fields_empty() -> None:
    stats = LatencyStats.from_summary(n=50, mean_ms=20.0, min_ms=18.0, max_ms=30.0, std_ms=2.0)
    assert stats.median_ms is None and stats.p90_ms is None and stats.fps is None
    assert stats.cv == pytest.approx(0.1)


def test_time_callable_counts_calls() -> None:
    calls: list[int] = []
    samples = time_callable(lambda: calls.append(1), warmup=3, runs=5)
    assert len(calls) == 8
    assert len(samples) == 5 and all(s >= 0 for s in samples)


def test_time_callable_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        time_callable(lambda: None, warmup=-1, runs=1)
    with pytest.raises(ValueError):
        time_callable(lambda: None, warmup=0, runs=0)


# --------------------------------------------------------------------------- LiteRT runner


@pytest.fixture(scope="module")
def models() -> TinyModels:
    return tiny_models()


def test_runner_float_outputs_by_name_match_keras(models: TinyModels) -> None:
    runner = LiteRTRunner(models.float_path, num_threads=1)
    assert set(runner.inputs) == {"image"}
    info = runner.inputs["image"]
    assert info.dtype == np.float32 and not info.quantized
    out = runner.invoke(models.images)
    assert set(out) == {"loc", "conf"}
    assert out["loc"].shape == (3, NUM_ANCHORS, 4)
    assert out["conf"].shape == (3, NUM_ANCHORS, NUM_CLASSES + 1)
    np.testing.assert_allclose(out["loc"], models.keras_outputs["loc"], atol=1e-5)
    np.testing.assert_allclose(out["conf"], models.keras_outputs["conf"], atol=1e-5)
    np.testing.assert_allclose(out["conf"].sum(axis=-1), 1.0, atol=1e-5)


def test_runner_accepts_mapping_and_rejects_wrong_names(models: TinyModels) -> None:
    runner = LiteRTRunner(models.float_path)
    out = runner.invoke({"image": models.images[:1]})
    assert out["loc"].shape == (1, NUM_ANCHORS, 4)
    with pytest.raises(ValueError, match="missing"):
        runner.invoke({"picture": models.images[:1]})


def test_runner_int8_quantizes_input_and_dequantizes_outputs(models: TinyModels) -> None:
    runner = LiteRTRunner(models.int8_path, num_threads=1)
    info = runner.inputs["image"]
    assert info.dtype == np.int8 and info.quantized and info.scale > 0
    assert runner.outputs["conf"].dtype == np.int8
    out = runner.invoke(models.images)  # float 0..255 pixels in
    assert out["loc"].dtype == np.float32 and out["conf"].dtype == np.float32
    reference = LiteRTRunner(models.float_path).invoke(models.images)
    for name in ("loc", "conf"):
        span = float(np.ptp(reference[name]))
        err = np.abs(out[name] - reference[name])
        assert err.max() <= 0.05 * span, f"{name}: max error {err.max():.4f} vs span {span:.4f}"
    assert np.abs(out["conf"] - reference["conf"]).mean() < 0.01
    # Same argmax class for the clear majority of anchors.
    agree = (out["conf"].argmax(-1) == reference["conf"].argmax(-1)).mean()
    assert agree > 0.9


def test_runner_without_xnnpack_gives_same_outputs(models: TinyModels) -> None:
    plain = LiteRTRunner(models.float_path, use_xnnpack=False).invoke(models.images)
    default = LiteRTRunner(models.float_path).invoke(models.images)
    for name in ("loc", "conf"):
        np.testing.assert_allclose(plain[name], default[name], atol=1e-5)


def test_runner_missing_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        LiteRTRunner(tmp_path / "absent.tflite")


def test_time_tflite_host_identity_and_stats(models: TinyModels) -> None:
    result = time_tflite_host(models.int8_path, threads=1, warmup=2, runs=7)
    assert result["runtime"] == "ai-edge-litert" and result["runtime_version"]
    assert result["threads"] == 1 and result["delegate"] == "xnnpack"
    assert result["cpu"] and result["os"]
    assert result["stats"]["n"] == 7 and len(result["samples_ms"]) == 7
    assert result["stats"]["median_ms"] > 0
    plain = time_tflite_host(models.float_path, threads=None, warmup=0, runs=2, use_xnnpack=False)
    assert plain["delegate"] == "none"
