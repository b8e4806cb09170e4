"""Intervals for paper 2's tables: latency gains as paired differences of the interleaved
engine's block medians, and application frame rates measured over interleaved passes.

* **Latency** (Table II): every model of one architecture and target was timed in one
  interleaved comparison, so two models' block medians pair block by block; a gain is the
  engine's paired difference (:func:`edgeprune.measurement.compare.difference`, bootstrap over
  groups),
  turned into the paper's sign convention (positive = faster).
* **Application FPS** (Table III): each model runs ``passes`` passes over the clip, the models
  of a pass in a seeded random order. The rate is ``1000 / mean frame time`` over all frames of
  all passes; its 95 % interval is a two-level bootstrap -- passes resampled with replacement,
  then frames within each drawn pass -- so both pass-to-pass drift and frame-to-frame
  variation count. A gain pairs passes: one bootstrap draw of pass indices serves both models
  (frames are then drawn within each model's pass), so drift common to a pass cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Passes = Sequence[Sequence[float]]


@dataclass(frozen=True)
class Estimate:
    """A value with its 95 % interval."""

    value: float
    lo: float
    hi: float

    @property
    def holds_zero(self) -> bool:
        """True when the interval contains 0 (a difference "within noise")."""
        return bool(self.lo <= 0.0 <= self.hi)


NAN = Estimate(float("nan"), float("nan"), float("nan"))


def latency_gain(blocks: Sequence[Sequence[float]], reference: Sequence[Sequence[float]],
                 resamples: int = 2000, seed: int = 0) -> Estimate:
    """Paper 2's latency gain (%) of a model over ``reference``: ``-diff_pct`` of the paired
    difference of their block medians (groups x blocks, from the same interleaved comparison),
    with its interval. Positive = faster than the reference."""
    if len(blocks) != len(reference) or any(
            len(a) != len(b) for a, b in zip(blocks, reference, strict=True)):
        raise ValueError("block medians of the two models do not pair (different comparisons?)")
    from edgeprune.measurement.compare import difference

    raw = {"groups": [{"block_medians_ms": [[b, a] for a, b in zip(ga, gb, strict=True)]}
                      for ga, gb in zip(blocks, reference, strict=True)]}
    d = difference(raw, ["reference", "model"], 1, 0, resamples, seed)
    return Estimate(-d.diff_pct, -d.ci95_pct[1], -d.ci95_pct[0])


def _check(passes: Passes) -> list[np.ndarray]:
    arrays = [np.asarray(p, dtype=np.float64) for p in passes]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("need at least one pass, each with at least one frame time")
    return arrays


def _draw(arrays: list[np.ndarray], picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean frame time of each bootstrap draw: ``picks`` (resamples x passes) are pass
    indices; frames are resampled within each picked pass."""
    out = np.empty(picks.shape[0])
    for r, row in enumerate(picks):
        total, count = 0.0, 0
        for i in row:
            a = arrays[i]
            total += float(a[rng.integers(0, a.size, a.size)].sum())
            count += a.size
        out[r] = total / count
    return out


def _fps(arrays: list[np.ndarray]) -> float:
    return 1000.0 / float(np.concatenate(arrays).mean())


def _tails(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def app_fps(frames_ms: Passes, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Application FPS (``1000 / mean frame time``, frames of every pass) and its 95 % interval
    by the two-level bootstrap over passes and frames (module doc)."""
    arrays = _check(frames_ms)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    boot = 1000.0 / _draw(arrays, picks, rng)
    return Estimate(_fps(arrays), *_tails(boot))


def app_fps_gain(frames_ms: Passes, reference_ms: Passes, resamples: int = 1000,
                 seed: int = 0) -> Estimate:
    """Paper 2's FPS gain (%) of a model over ``reference``, ``100 (fps / fps_ref - 1)``, with
    its interval from the pass-paired two-level bootstrap (pass ``i`` of both models ran in the
    same round)."""
    a, b = _check(frames_ms), _check(reference_ms)
    if len(a) != len(b):
        raise ValueError(f"passes do not pair: {len(a)} against {len(b)}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    boot = 100.0 * (_draw(b, picks, rng) / _draw(a, picks, rng) - 1.0)
    return Estimate(100.0 * (_fps(a) / _fps(b) - 1.0), *_tails(boot))


def wording(est: Estimate, better: str, worse: str, digits: int = 1) -> str:
    """Words that follow an interval (positive = better): "within noise (+0.4 % [-1.2, +2.0])"
    when it holds 0, else "<better> by 3.1 % [1.9, 4.3]" or "<worse> by 2.0 % [1.0, 3.0]"
    (magnitudes)."""
    if not np.isfinite(est.value):
        return "not measured"
    if est.holds_zero:
        return (f"within noise ({est.value:+.{digits}f} % [{est.lo:+.{digits}f}, "
                f"{est.hi:+.{digits}f}])")
    if est.value > 0:
        return f"{better} by {est.value:.{digits}f} % [{est.lo:.{digits}f}, {est.hi:.{digits}f}]"
    return f"{worse} by {-est.value:.{digits}f} % [{-est.hi:.{digits}f}, {-est.lo:.{digits}f}]"
