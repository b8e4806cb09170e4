"""Period of the latency minima (or accuracy maxima) in a single-layer sweep.

A hardware that prefers filter counts in multiples of ``p`` shows dips in latency whenever the
number of filters left is ``≡ r (mod p)``. The detector looks for that pattern directly:

1. the slow trend (fewer filters -> faster, less accurate) is removed with a running median
   wide enough to span two periods, so isolated dips do not move it;
2. residuals are winsorised at ±4 robust standard deviations (MAD), so timing spikes from a
   busy machine cannot fake or hide a pattern;
3. for each candidate period ``p`` (multiples of the sweep step) and each phase ``r``, the
   *contrast* is a two-sample t-like score: how much lower the residuals of points with
   ``left ≡ r (mod p)`` are than the others, in units of the residual noise. The period's
   strength is its best phase's contrast;
4. significance comes from shuffling the residuals: the same maximum over all periods and
   phases is computed for each shuffle, and the observed best strength is significant when at
   most a fraction ``alpha`` of the shuffles reach it (a family-wise test over every
   candidate; ``threshold`` reports the ``1 - alpha`` quantile of those maxima);
5. a multiple of the true period also shows the dips (fewer, equally deep), so when a divisor
   of the winner is nearly as strong (``harmonic_ratio``), significant and in phase, the
   divisor is chosen.

No significant period gives ``period = 1`` (no constraint on the cluster size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["minima", "maxima"]


@dataclass(frozen=True)
class PeriodSettings:
    """Knobs of the detector (``paper2.period`` in the config)."""

    max_period: int = 32
    min_cycles: int = 3
    alpha: float = 0.01
    permutations: int = 400
    harmonic_ratio: float = 0.85
    seed: int = 0


@dataclass(frozen=True)
class PeriodEvidence:
    """What the detector found and why: the chosen period, each candidate's strength, and the
    shuffled-data threshold it had to beat."""

    kind: str
    period: int
    phase: int | None
    strength: float
    best_period: int | None
    threshold: float | None
    p_value: float | None
    step: int
    points: int
    reason: str
    strengths: dict[int, float] = field(default_factory=dict)
    phases: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (period keys become strings)."""
        d = asdict(self)
        d["strengths"] = {str(k): v for k, v in self.strengths.items()}
        d["phases"] = {str(k): v for k, v in self.phases.items()}
        return d


def cluster_size(p_acc: int, p_lat: int) -> int:
    """Paper 2's optimum cluster size: the least common multiple of both periods."""
    if p_acc < 1 or p_lat < 1:
        raise ValueError(f"periods must be >= 1, got p_acc={p_acc}, p_lat={p_lat}")
    return math.lcm(int(p_acc), int(p_lat))


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median; the window shrinks symmetrically at the ends."""
    n = len(values)
    half = max(0, window // 2)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        h = min(half, i, n - 1 - i)
        out[i] = np.median(values[i - h:i + h + 1])
    return out


def _robust_sigma(r: np.ndarray) -> float:
    mad = float(np.median(np.abs(r - np.median(r))))
    sigma = 1.4826 * mad
    return sigma if sigma > 0 else float(np.std(r))


def _candidates(x: np.ndarray, step: int, cfg: PeriodSettings) -> list[int]:
    """Periods that are multiples of the step, at least two samples long, and seen for at
    least ``min_cycles`` full cycles."""
    span = int(x.max() - x.min()) + step
    out = []
    for p in range(2 * step, cfg.max_period + 1, step):
        if span // p >= cfg.min_cycles:
            out.append(p)
    return out


def _phase_labels(x: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """One-hot (n, groups) matrix of ``x mod p`` and the phase value of each group."""
    phase = np.mod(x, p)
    values = np.unique(phase)
    onehot = (phase[:, None] == values[None, :]).astype(np.float64)
    return onehot, values


def _contrasts(r: np.ndarray, onehot: np.ndarray, sigma: float, min_count: int) -> np.ndarray:
    """Contrast of every phase group for each row of ``r`` (B, n) -> (B, groups)."""
    n = r.shape[1]
    counts = onehot.sum(axis=0)
    sums = r @ onehot
    total = r.sum(axis=1, keepdims=True)
    rest = n - counts
    valid = (counts >= min_count) & (rest >= 1)
    mean_in = sums / np.maximum(counts, 1)
    mean_out = (total - sums) / np.maximum(rest, 1)
    se = sigma * np.sqrt(1.0 / np.maximum(counts, 1) + 1.0 / np.maximum(rest, 1))
    score = (mean_out - mean_in) / se
    return np.where(valid[None, :], score, -np.inf)


def _none(kind: str, step: int, n: int, reason: str, **extra: Any) -> PeriodEvidence:
    return PeriodEvidence(kind=kind, period=1, phase=None, strength=0.0, best_period=None,
                          threshold=None, p_value=None, step=step, points=n, reason=reason,
                          **extra)


def _prepare(filters_left: Sequence[int], values: Sequence[float],
             kind: Kind) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.asarray(filters_left, dtype=np.int64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"filters_left and values must be 1-D and equally long, got "
                         f"{x.shape} and {y.shape}")
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if len(np.unique(x)) != len(x):
        raise ValueError("filters_left must not repeat")
    diffs = np.diff(x)
    step = int(np.gcd.reduce(diffs)) if len(diffs) else 1
    return x, (y if kind == "minima" else -y), max(step, 1)


def detect_period(filters_left: Sequence[int], values: Sequence[float], kind: Kind = "minima",
                  cfg: PeriodSettings = PeriodSettings()) -> PeriodEvidence:
    """Find the period of the minima (``kind="minima"``, latency) or maxima (``"maxima"``,
    accuracy) of ``values`` against the number of filters left; see the module docstring."""
    if kind not in ("minima", "maxima"):
        raise ValueError(f"kind must be 'minima' or 'maxima', got {kind!r}")
    x, y, step = _prepare(filters_left, values, kind)
    n = len(x)
    cands = _candidates(x, step, cfg) if n else []
    if not cands:
        return _none(kind, step, n, f"{n} points with step {step} cover fewer than "
                                    f"{cfg.min_cycles} cycles of any period >= {2 * step}")
    window = 2 * (max(cands) // step) + 1
    r = y - running_median(y, window)
    sigma = _robust_sigma(r)
    if not sigma > 0:
        return _none(kind, step, n, "the detrended series is constant")
    med = float(np.median(r))
    r = np.clip(r, med - 4 * sigma, med + 4 * sigma)
    strengths: dict[int, float] = {}
    phases: dict[int, int] = {}
    for p in cands:
        onehot, values_p = _phase_labels(x, p)
        obs = _contrasts(r[None, :], onehot, sigma, cfg.min_cycles)[0]
        best = int(np.argmax(obs))
        strengths[p] = float(obs[best])
        phases[p] = int(values_p[best])
    best_p = max(cands, key=lambda p: (strengths[p], -p))
    top = strengths[best_p]
    rng = np.random.default_rng(cfg.seed)
    shuffled = np.stack([rng.permutation(r) for _ in range(cfg.permutations)])
    null_max = np.full(cfg.permutations, -np.inf)
    for p in cands:
        onehot, _ = _phase_labels(x, p)
        null_max = np.maximum(null_max, _contrasts(shuffled, onehot, sigma,
                                                   cfg.min_cycles).max(axis=1))
    threshold = float(np.quantile(null_max, 1.0 - cfg.alpha))
    p_value = float((1 + np.sum(null_max >= top)) / (cfg.permutations + 1))
    common = dict(best_period=best_p, threshold=threshold, p_value=p_value, step=step, points=n,
                  strengths=strengths, phases=phases)
    if p_value > cfg.alpha:
        return PeriodEvidence(kind=kind, period=1, phase=None, strength=top,
                              reason=f"best period {best_p} (strength {top:.2f}, p = "
                                     f"{p_value:.3g}) does not beat shuffled data "
                                     f"({threshold:.2f} at alpha {cfg.alpha})",
                              **common)
    chosen = best_p
    for d in cands:
        if d >= best_p or best_p % d:
            continue
        in_phase = phases[best_p] % d == phases[d]
        if in_phase and strengths[d] > threshold and strengths[d] >= cfg.harmonic_ratio * top:
            chosen = d
            break
    reason = f"period {chosen} (strength {strengths[chosen]:.2f}) beats shuffled data " \
             f"({threshold:.2f} at alpha {cfg.alpha}, p = {p_value:.3g})"
    if chosen != best_p:
        reason += f"; chosen over its multiple {best_p} (strength {top:.2f})"
    return PeriodEvidence(kind=kind, period=chosen, phase=phases[chosen],
                          strength=strengths[chosen], reason=reason, **common)
