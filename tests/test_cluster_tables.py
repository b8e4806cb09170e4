"""Tables II and III with 95 % intervals from hand-made engine results: gain rows are paired
differences with intervals, and the summary's words follow the intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from edgeprune.compression.cluster.report import (
    GAIN_ROWS,
    gain_sentences,
    host_verdicts,
    speed_table,
    with_intervals,
)
from edgeprune.compression.cluster.stats import (
    Estimate,
    app_fps,
    app_fps_gain,
    latency_gain,
    wording,
)


def _blocks(scale: float, groups: int = 8, blocks: int = 4, seed: int = 0,
            drift: np.ndarray | None = None) -> list[list[float]]:
    """Block medians (groups x blocks) of a model ``scale`` x a common drifting baseline."""
    rng = np.random.default_rng(seed)
    base = drift if drift is not None else 10.0 + np.linspace(0, 2, groups * blocks)
    noise = rng.normal(0, 0.005, groups * blocks)
    return (scale * base * (1 + noise)).reshape(groups, blocks).tolist()


def _whole() -> pd.DataFrame:
    """Base, filter (10 % faster) and cluster (same as base) rows of one arch and target, as the
    whole-model CSV stores them (block medians JSON, interval columns, frames per pass)."""
    drift = 10.0 + np.linspace(0, 3, 32)
    rng = np.random.default_rng(1)
    frames_base = [list(rng.normal(50, 2, 40)) for _ in range(3)]
    rows = []
    for method, scale, fps_scale, seed in (("base", 1.0, 1.0, 0), ("filter", 0.9, 1.25, 1),
                                           ("cluster", 1.0, 1.0, 2)):
        blocks = _blocks(scale, seed=seed, drift=drift)
        flat = np.concatenate(blocks)
        frames = [list(np.asarray(p) / fps_scale + rng.normal(0, 0.5, len(p)))
                  for p in frames_base]
        est = app_fps(frames, resamples=300)
        rows.append({"arch": "a", "target": "cpu", "method": method, "finetuned": False,
                     "step": 0 if method == "base" else 1,
                     "removed": 0 if method == "base" else 8,
                     "latency_median_ms": float(np.median(flat)),
                     "latency_ci95_lo_ms": float(np.median(flat)) * 0.98,
                     "latency_ci95_hi_ms": float(np.median(flat)) * 1.02,
                     "latency_block_medians_ms": json.dumps(blocks),
                     "app_fps": est.value, "app_fps_ci95_lo": est.lo,
                     "app_fps_ci95_hi": est.hi, "app_frames_ms": json.dumps(frames)})
    return pd.DataFrame(rows)


def test_latency_gain_is_a_paired_difference_with_interval() -> None:
    drift = 10.0 + np.linspace(0, 3, 32)       # drift far larger than the effect
    faster = latency_gain(_blocks(0.97, seed=1, drift=drift), _blocks(1.0, seed=0, drift=drift),
                          resamples=500)
    assert faster.value == pytest.approx(3.0, abs=0.5)
    assert 0 < faster.lo < faster.value < faster.hi
    same = latency_gain(_blocks(1.0, seed=3, drift=drift), _blocks(1.0, seed=0, drift=drift),
                        resamples=500)
    assert same.holds_zero
    with pytest.raises(ValueError, match="pair"):
        latency_gain([[1.0, 2.0]], [[1.0]])


def test_app_fps_interval_and_paired_gain() -> None:
    rng = np.random.default_rng(0)
    # Pass-to-pass drift (3rd pass slow for every model) cancels in the paired gain.
    slow = [1.0, 1.0, 1.3]
    ref = [list(rng.normal(20, 1, 50) * s) for s in slow]
    fast = [list(rng.normal(20 / 1.1, 1, 50) * s) for s in slow]
    est = app_fps(ref, resamples=400)
    assert est.lo < est.value < est.hi
    assert est.value == pytest.approx(1000 / np.mean(np.concatenate(ref)))
    gain = app_fps_gain(fast, ref, resamples=400)
    assert gain.value == pytest.approx(10.0, abs=1.5)
    assert gain.lo > 0
    with pytest.raises(ValueError, match="pair"):
        app_fps_gain(fast[:2], ref)


def test_table2_gain_rows_carry_intervals_and_words() -> None:
    t = speed_table(_whole(), "latency_median_ms", False, -1, False, seed=0).set_index("row")
    assert list(t.index[-3:]) == list(GAIN_ROWS)
    assert {"cpu", "cpu_ci95_lo", "cpu_ci95_hi"} <= set(t.columns)
    f = t.loc["gain from filter pruning (%)"]
    assert f["cpu"] == pytest.approx(10.0, abs=1.0)
    assert f["cpu_ci95_lo"] > 0
    c = t.loc["gain from cluster pruning (%)"]
    assert c["cpu_ci95_lo"] <= 0 <= c["cpu_ci95_hi"]
    cf = t.loc["gain of cluster over filter pruning (%)"]
    assert cf["cpu"] == pytest.approx(-11.1, abs=1.5)    # cluster 1/0.9 slower than filter
    assert cf["cpu_ci95_hi"] < 0
    assert t.loc["without pruning", "cpu_ci95_lo"] < t.loc["without pruning", "cpu"]
    words = "\n".join(gain_sentences(t.reset_index(), "faster", "slower"))
    assert "filter pruning vs without pruning: faster by" in words
    assert "cluster pruning vs without pruning: within noise" in words
    assert "cluster pruning vs filter pruning: slower by 1" in words
    cells = with_intervals(t.reset_index()).set_index("row")
    assert cells.loc["gain from filter pruning (%)", "cpu"].startswith("+")
    assert "[" in cells.loc["without pruning", "cpu"]


def test_table3_fps_gains() -> None:
    t = speed_table(_whole(), "app_fps", False, -1, True, seed=0).set_index("row")
    f = t.loc["gain from filter pruning (%)"]
    assert f["cpu"] == pytest.approx(25.0, abs=3.0)
    assert f["cpu_ci95_lo"] > 0
    assert t.loc["gain from cluster pruning (%)", "cpu_ci95_lo"] <= 0 \
        <= t.loc["gain from cluster pruning (%)", "cpu_ci95_hi"]
    words = "\n".join(gain_sentences(t.reset_index(), "higher FPS", "lower FPS"))
    assert "filter pruning vs without pruning: higher FPS by" in words


def test_table_without_replicates_has_point_gains_only() -> None:
    df = _whole().drop(columns=["latency_block_medians_ms"])
    t = speed_table(df, "latency_median_ms", False, -1, False).set_index("row")
    assert t.loc["gain from filter pruning (%)", "cpu"] == pytest.approx(10.0, abs=1.0)
    assert math.isnan(t.loc["gain from filter pruning (%)", "cpu_ci95_lo"])
    assert "no interval" in "\n".join(gain_sentences(t.reset_index(), "faster", "slower"))


def test_wording_follows_interval() -> None:
    assert wording(Estimate(0.4, -1.2, 2.0), "faster", "slower").startswith("within noise")
    assert wording(Estimate(3.1, 1.9, 4.3), "faster", "slower") == \
        "faster by 3.1 % [1.9, 4.3]"
    assert wording(Estimate(-2.0, -3.0, -1.0), "faster", "slower") == \
        "slower by 2.0 % [1.0, 3.0]"
    assert wording(Estimate(math.nan, math.nan, math.nan), "a", "b") == "not measured"


def _ev(verdict: str, period: int = 1, p: float | None = 0.3) -> dict:
    return {"verdict": verdict, "period": period, "phase": 3 if period > 1 else None,
            "p_value": p, "min_p_value": 0.0025, "step_pct": 1.5, "min_detectable_pct": 0.8}


def test_host_verdict_per_runtime() -> None:
    sizes = [{"arch": "a", "sweeps": {
        "conv11": {"host-openvino": {"latency": _ev("none"), "layer_latency": _ev("period", 16,
                                                                                  0.001)},
                   "host-litert": {"latency": _ev("none"), "layer_latency": _ev("none")}}}}]
    lines = "\n".join(host_verdicts(sizes, {"host-openvino": "openvino",
                                            "host-litert": "litert-python",
                                            "phone": "benchmark_model"}))
    assert "**host-openvino (openvino): yes** -- a/conv11 (layer alone): period 16" in lines
    assert "**host-litert (litert-python): no period**" in lines
    assert "phone" not in lines
    assert "p = 0.0010 (smallest reachable 0.0025), observed step 1.50 %, " \
           "detectable step 0.80 %" in lines
    # Significant on its own (p <= 0.01) but not over the runtime's two series (0.005).
    sizes[0]["sweeps"]["conv11"]["host-openvino"]["layer_latency"] = _ev("period", 17, 0.0075)
    lines = "\n".join(host_verdicts(sizes, {"host-openvino": "openvino"}))
    assert "**host-openvino (openvino): not confirmed** -- a/conv11 (layer alone): period 17, " \
           "p = 0.0075" in lines and "Bonferroni bound 0.0050" in lines
    sizes[0]["sweeps"]["conv11"]["host-litert"]["latency"] = _ev("inconclusive", p=None)
    lines = "\n".join(host_verdicts(sizes, {"host-litert": "litert-python"}))
    assert "inconclusive" in lines and "p = n/a" in lines


def test_sweep_figure_shows_both_scopes_with_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeprune.compression.cluster.report as report

    captured = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, paths: captured.update(fig=fig))
    rows = []
    for scope, step, scale in (("network", 4, 1.0), ("layer", 1, 0.05)):
        for left in range(32, 15, -step):
            v = scale * left
            rows.append({"layer": "conv11", "target": "cpu", "scope": scope,
                         "filters_left": left, "latency_median_ms": v,
                         "latency_ci95_lo_ms": 0.99 * v, "latency_ci95_hi_ms": 1.01 * v})
    report.plot_sweeps(pd.DataFrame(rows), "arch", "latency_median_ms", "ms", [])
    axes = captured["fig"].axes
    assert [ax.get_title() for ax in axes] == ["arch: conv11 (whole network)",
                                                "arch: conv11 (layer alone)"]
    for ax, points in zip(axes, (5, 17), strict=True):
        assert len(ax.lines[0].get_xdata()) == points
        assert ax.collections, "no interval band"
