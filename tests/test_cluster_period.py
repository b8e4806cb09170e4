"""Period detection: noisy sawtooth and dip series give their true period, flat noise gives 1."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.cluster.period import PeriodSettings, cluster_size, detect_period, running_median

LEFT = np.arange(2, 129)


def _latency(rng: np.random.Generator, left: np.ndarray, period: int, amp: float) -> np.ndarray:
    """Falls with fewer filters, rises between multiples of ``period`` (sawtooth), Gaussian
    noise plus a few large timing spikes."""
    y = 5.0 + 0.05 * left + amp * np.mod(left, period) / (period - 1)
    y += rng.normal(0.0, 0.1, left.size)
    spikes = rng.choice(left.size, 6, replace=False)
    y[spikes] += rng.exponential(1.5, spikes.size)
    return y


@pytest.mark.parametrize("seed", range(6))
def test_noisy_sawtooth_gives_true_period(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ev = detect_period(LEFT, _latency(rng, LEFT, 8, 0.8), "minima", PeriodSettings(seed=seed))
    assert ev.period == 8, ev.reason
    assert ev.phase == 0
    assert ev.strength > ev.threshold and ev.p_value <= 0.01
    assert ev.strengths[8] == max(ev.strengths.values()) or ev.best_period in (16, 24)


def test_coarse_grid_and_period_16() -> None:
    rng = np.random.default_rng(3)
    left = np.arange(2, 257, 2)                       # sweep step 2
    ev = detect_period(left, _latency(rng, left, 16, 1.0), "minima")
    assert ev.step == 2 and ev.period == 16, ev.reason
    assert all(p % 2 == 0 for p in ev.strengths)      # only multiples of the step are tried


def test_accuracy_maxima() -> None:
    rng = np.random.default_rng(0)
    left = np.arange(2, 97)
    acc = 0.6 - 0.4 * np.exp(-left / 12) + 0.03 * (np.mod(left, 4) == 0)
    acc += rng.normal(0.0, 0.006, left.size)
    ev = detect_period(left, acc, "maxima")
    assert (ev.period, ev.phase, ev.kind) == (4, 0, "maxima"), ev.reason


@pytest.mark.parametrize("seed", range(5))
def test_flat_noise_gives_one(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    y = 5.0 + 0.03 * LEFT + rng.normal(0.0, 0.1, LEFT.size)
    y[rng.choice(LEFT.size, 6, replace=False)] += 2.0
    ev = detect_period(LEFT, y, "minima", PeriodSettings(seed=seed))
    assert ev.period == 1 and ev.phase is None
    assert ev.p_value is not None and ev.p_value > 0.01
    assert "does not beat shuffled data" in ev.reason


def test_degenerate_series_give_one() -> None:
    assert detect_period(LEFT, np.full(LEFT.size, 3.0)).period == 1
    short = detect_period([4, 3, 2], [1.0, 2.0, 3.0])
    assert short.period == 1 and "cycles" in short.reason
    nan = detect_period([8, 7, 6], [np.nan, np.nan, np.nan])
    assert nan.period == 1 and nan.points == 0
    with pytest.raises(ValueError, match="repeat"):
        detect_period([2, 2, 3], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="kind"):
        detect_period(LEFT, LEFT, "peaks")  # type: ignore[arg-type]


def test_evidence_is_deterministic_and_serialisable() -> None:
    y = _latency(np.random.default_rng(9), LEFT, 8, 0.8)
    a, b = detect_period(LEFT, y), detect_period(LEFT, y)
    assert a == b
    d = a.to_dict()
    assert d["period"] == 8 and set(d["strengths"]) == {str(p) for p in a.strengths}
    assert d["threshold"] == a.threshold and 0 < d["p_value"] <= 1


def test_lcm_and_running_median() -> None:
    assert cluster_size(1, 8) == 8
    assert cluster_size(4, 6) == 12
    assert cluster_size(1, 1) == 1
    with pytest.raises(ValueError):
        cluster_size(0, 8)
    np.testing.assert_allclose(running_median(np.array([1.0, 9.0, 2.0, 3.0, 4.0]), 3),
                               [1.0, 2.0, 3.0, 3.0, 4.0])
