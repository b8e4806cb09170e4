"""Period detection at the real sweep sizes (16, 32, 64 points) with replicate timings: planted
staircases are found with their phase, trend-only sweeps are not (false-positive rate), a short
noisy sweep is inconclusive with its reachable p-value and power; the values-only fallback."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.compression.cluster.period import (
    PeriodSettings,
    cluster_phase,
    cluster_size,
    detect_period,
    detect_steps,
    most_common,
    running_median,
)

FAST = PeriodSettings(permutations=300, power_sims=40)


def _left(points: int, step: int = 1) -> np.ndarray:
    """Filters left of a sweep down to 2: 33 .. 2 (step 1), 32, 30 .. 2 (the conv1 sweep)."""
    return np.arange(2 + (points - 1) * step, 1, -step)


def _sweep(seed: int, left: np.ndarray, period: int = 8, phase: int = 0, amp: float = 0.0,
           groups: int = 8, sd: float = 0.02, curve: float = 0.0) -> list[list[float]]:
    """Replicate timings (one value per group) of a sweep: ~1 ms falling with fewer filters,
    a staircase of ``amp`` ms (lowest at ``left ≡ phase``, highest one filter later), each
    group's median off by ``sd`` relative noise (about 0.7 % SE per point with 8 groups)."""
    rng = np.random.default_rng(seed)
    mu = 0.8 + 0.015 * left + curve * np.sin(left / 12.0)
    mu = mu + amp * np.mod(phase - left, period) / period
    return (mu[:, None] * (1.0 + rng.normal(0.0, sd, (left.size, groups)))).tolist()


@pytest.mark.parametrize("points", [32, 64])
def test_period_8_staircase_found_with_phase(points: int) -> None:
    left = _left(points)
    for seed in range(4):
        reps = _sweep(seed, left, 8, 4, amp=0.06)           # ~5 % of the latency
        ev = detect_period(left, None, "minima", FAST, replicates=reps)
        assert (ev.verdict, ev.period, ev.phase) == ("period", 8, 4), ev.reason
        assert ev.noise == "replicates" and ev.replicates == 8
        assert ev.p_value <= ev.alpha and ev.strength > ev.threshold
        lo, hi = ev.step_ci95_pct
        assert 0 < lo < ev.step_pct < hi
        assert ev.min_detectable_pct is not None and ev.min_detectable_pct < ev.step_pct


def test_period_16_staircase_at_64_points() -> None:
    left = _left(64)
    for seed in range(4):
        ev = detect_period(left, None, "minima", FAST,
                           replicates=_sweep(seed, left, 16, 4, amp=0.1))
        assert ev.verdict == "period" and ev.period == 16, ev.reason
        assert ev.phase in (3, 4)           # the staircase's two lowest phases differ by 1/16
        assert 16 in ev.strengths and 32 not in ev.strengths      # 64 // 32 < min_cycles
    long = _left(96)
    assert 32 in detect_period(long, None, "minima", FAST,
                               replicates=_sweep(0, long, 8)).strengths


def test_candidates_restrict_the_periods_tried() -> None:
    left = _left(64)
    reps = _sweep(0, left, 12, 4, amp=0.1)          # a period-12 staircase
    free = detect_period(left, None, "minima", FAST, replicates=reps)
    assert (free.verdict, free.period) == ("period", 12), free.reason
    blocked = PeriodSettings(permutations=300, power_sims=40, candidates=(2, 4, 8, 16, 32))
    ev = detect_period(left, None, "minima", blocked, replicates=reps)
    assert set(ev.strengths) <= {2, 4, 8, 16} and ev.period != 12


@pytest.mark.parametrize("points,step", [(16, 2), (32, 1), (64, 1)])
def test_trend_only_false_positive_rate(points: int, step: int) -> None:
    """Seeded repeats without a period (curved trend the polynomial does not fit exactly, few
    groups): the rate of 'period' verdicts stays within alpha plus binomial slack."""
    left = _left(points, step)
    cfg = PeriodSettings(alpha=0.1, permutations=100, power_sims=0)
    repeats = 40
    hits = 0
    for seed in range(repeats):
        reps = _sweep(1000 + seed, left, groups=4, curve=0.05)
        ev = detect_period(left, None, "minima",
                           PeriodSettings(**{**cfg.__dict__, "seed": seed}), replicates=reps)
        hits += ev.verdict == "period"
    assert hits / repeats <= 0.1 + 0.12


def test_short_noisy_sweep_is_inconclusive() -> None:
    left = _left(16, 2)                                       # the default conv1 sweep
    reps = _sweep(3, left, 8, 0, amp=0.01, groups=4, sd=0.05)
    ev = detect_period(left, None, "minima", PeriodSettings(), replicates=reps)
    assert ev.verdict == "inconclusive" and ev.period == 1 and ev.phase is None, ev.reason
    assert ev.min_p_value == pytest.approx(1 / 1001) and ev.p_value > ev.alpha
    assert ev.min_detectable_pct > PeriodSettings().min_step_pct
    assert "power only" in ev.reason
    few = detect_period(left, None, "minima", PeriodSettings(permutations=50), replicates=reps)
    assert few.verdict == "inconclusive" and few.min_p_value == pytest.approx(1 / 51)
    assert few.threshold is None and few.min_detectable_pct is None
    assert "smallest reachable p-value" in few.reason
    # The same sweep with precise timings and no period: a confident "none".
    quiet = detect_period(left, None, "minima", FAST,
                          replicates=_sweep(3, left, groups=16, sd=0.005))
    assert quiet.verdict == "none" and quiet.min_detectable_pct < FAST.min_step_pct


def test_groups_by_blocks_reduce_to_group_medians() -> None:
    rng = np.random.default_rng(0)
    left = _left(32)
    blocks = (1.0 + 0.01 * left[:, None, None] + rng.normal(0, 0.02, (32, 6, 4))).tolist()
    medians = [[float(np.median(g)) for g in point] for point in blocks]
    a = detect_period(left, None, "minima", FAST, replicates=blocks)
    b = detect_period(left, None, "minima", FAST, replicates=medians)
    assert a == b and a.replicates == 6
    with pytest.raises(ValueError, match="one entry per point"):
        detect_period(left, None, "minima", FAST, replicates=blocks[:-1])


def test_values_fallback_finds_strong_period_and_rejects_noise() -> None:
    left = np.arange(2, 129)
    rng = np.random.default_rng(0)
    y = 5.0 + 0.05 * left + 0.8 * np.mod(left, 8) / 7 + rng.normal(0.0, 0.1, left.size)
    ev = detect_period(left, y, "minima", FAST)
    assert (ev.verdict, ev.period, ev.phase, ev.noise) == ("period", 8, 0, "residuals")
    flat = 5.0 + 0.03 * left + rng.normal(0.0, 0.1, left.size)
    flat[rng.choice(left.size, 6, replace=False)] += 2.0            # timing spikes
    ev = detect_period(left, flat, "minima", FAST)
    assert ev.period == 1 and ev.phase is None and ev.p_value > ev.alpha
    # Replicates with a single unit per point carry no spread: the same fallback.
    single = detect_period(left, None, "minima", FAST, replicates=[[v] for v in flat])
    assert single.noise == "residuals" and single.period == 1


def test_accuracy_maxima() -> None:
    rng = np.random.default_rng(0)
    left = np.arange(2, 97)
    acc = 0.6 - 0.4 * np.exp(-left / 12) + 0.03 * (np.mod(left, 4) == 0)
    acc += rng.normal(0.0, 0.006, left.size)
    ev = detect_period(left, acc, "maxima", FAST)
    assert (ev.period, ev.phase, ev.kind) == (4, 0, "maxima"), ev.reason
    assert ev.step_pct > 0


def test_degenerate_series() -> None:
    left = np.arange(2, 66)
    const = detect_period(left, np.full(left.size, 3.0))
    assert const.period == 1 and const.verdict == "none"
    short = detect_period([4, 3, 2], [1.0, 2.0, 3.0])
    assert short.period == 1 and short.verdict == "inconclusive" and "cycles" in short.reason
    nan = detect_period([8, 7, 6], [np.nan, np.nan, np.nan])
    assert nan.period == 1 and nan.points == 0
    with pytest.raises(ValueError, match="repeat"):
        detect_period([2, 2, 3], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="kind"):
        detect_period(left, left, "peaks")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="values or replicates"):
        detect_period(left)


def test_evidence_is_deterministic_and_serialisable() -> None:
    left = _left(32)
    reps = _sweep(9, left, 8, 0, amp=0.06)
    a = detect_period(left, None, "minima", FAST, replicates=reps)
    assert a == detect_period(left, None, "minima", FAST, replicates=reps)
    d = a.to_dict()
    for key in ("period", "phase", "p_value", "min_p_value", "verdict", "step_pct",
                "step_ci95_pct", "min_detectable_pct", "threshold", "strength", "best_period",
                "best_phase", "alpha", "power", "noise", "scatter", "median_value"):
        assert key in d
    assert d["verdict"] == "period" and d["period"] == 8 and d["phase"] == 0
    assert set(d["strengths"]) == {str(p) for p in a.strengths}
    assert isinstance(d["step_ci95_pct"], list) and len(d["step_ci95_pct"]) == 2
    assert 0 < d["p_value"] <= 1 and d["min_p_value"] == pytest.approx(1 / 301)


def test_lcm_phase_and_helpers() -> None:
    assert cluster_size(1, 8) == 8
    assert cluster_size(4, 6) == 12
    with pytest.raises(ValueError):
        cluster_size(0, 8)
    assert cluster_phase(1, None, 8, 4) == 4
    assert cluster_phase(4, 1, 8, 5) == 5              # 5 ≡ 1 (mod 4)
    assert cluster_phase(3, 2, 8, 4) == 20             # CRT: 20 ≡ 4 (mod 8), ≡ 2 (mod 3)
    assert cluster_phase(4, 0, 8, 5) == 5              # incompatible: latency wins
    assert cluster_phase(1, None, 1, None) is None
    assert most_common([8, 16, 16, 8, 4]) == 8 and most_common([]) is None
    np.testing.assert_allclose(running_median(np.array([1.0, 9.0, 2.0, 3.0, 4.0]), 3),
                               [1.0, 2.0, 3.0, 3.0, 4.0])


def _blocks(seed: int, left: np.ndarray, block: int = 16, jump: float = 0.12,
            groups: int = 30, spikes: float = 0.1) -> list[list[float]]:
    """Replicates of a layer whose latency is flat over blocks of ``block`` filters (padded
    channels: cost ~ ceil(left / block)), with heavy-tailed hiccups in ``spikes`` of them."""
    rng = np.random.default_rng(seed)
    mu = 0.03 * (1.0 + jump * np.ceil(left / block))
    reps = mu[:, None] * (1.0 + rng.normal(0.0, 0.01, (left.size, groups)))
    hiccup = rng.random(reps.shape) < spikes
    return np.where(hiccup, reps * rng.uniform(1.5, 3.0, reps.shape), reps).tolist()


def test_block_steps_found_despite_hiccups() -> None:
    left = np.arange(192, 257)                         # a 64-filter window at step 1
    cfg = PeriodSettings(permutations=300, candidates=(2, 4, 8, 16, 32))
    for seed in range(3):
        ev = detect_steps(left, _blocks(seed, left), cfg)
        # Flat over (16k, 16k + 16]: the most filters for a latency are multiples of 16.
        assert (ev.verdict, ev.period, ev.phase, ev.kind) == ("period", 16, 0, "steps"), ev.reason
        assert ev.step_pct is not None and 3.5 < ev.step_pct < 6   # 0.12 / (1 + 0.12 * 14)
        assert ev.to_dict()["strengths"]["16"] > ev.to_dict()["strengths"]["8"]


def test_block_steps_false_positive_rate_on_smooth_trend() -> None:
    left = np.arange(192, 257)
    cfg = PeriodSettings(permutations=200, candidates=(2, 4, 8, 16, 32), alpha=0.05)
    hits = sum(detect_steps(left, _blocks(seed, left, block=1, jump=0.002), cfg).verdict
               == "period" for seed in range(40))
    assert hits <= 5                                   # 5 % expected; binomial slack


def test_block_steps_need_a_step_1_sweep_with_replicates() -> None:
    left = np.arange(2, 66, 2)
    ev = detect_steps(left, _blocks(0, left))
    assert ev.verdict == "inconclusive" and ev.p_value is None and "step-1" in ev.reason
