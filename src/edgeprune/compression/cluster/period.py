"""Period of the latency minima (or accuracy maxima) in a single-layer sweep.

A hardware that prefers filter counts ``left ≡ r (mod p)`` shows dips in latency at those
counts. The detector tests for that pattern against the noise of the *replicate* timings
(block or group medians of the interleaved engine), not against the sweep points themselves:

1. **Point values and their noise.** With replicates, each point's value is the mean of its
   replicate units (a ``groups x blocks`` point is reduced to one unit per group: the median of
   its blocks, since instances are recreated per group) and its standard error is the
   replicate standard deviation over ``sqrt(units)``, shrunk towards the sweep's pooled
   variance (4 prior degrees of freedom) so that a point with few units cannot look
   artificially precise.
2. **Trend.** A weighted polynomial in the filters left (``trend_degree``, weights
   ``1/SE^2``). A low-order polynomial cannot follow a pattern that repeats ``min_cycles``
   times, and being linear it lets the contrast below be standardised exactly.
3. **Contrast.** For each candidate period ``p`` (multiples of the sweep step seen for at least
   ``min_cycles`` cycles, up to ``max_period``) and phase ``r``: the mean trend residual of the
   other points minus that of the points with ``left ≡ r (mod p)``, divided by its standard
   error (from the per-point SEs and the trend fit). To guard against scatter that the
   replicates do not explain (a mis-fitted trend, one odd model), the contrast is divided by
   ``f_p = max(1, s_p)``, where ``s_p`` is the residual scale (in SE units) after fitting the
   trend *plus a free profile over the p phases*: a true period is absorbed by that profile
   (``s_p ≈ 1``, no loss of power), other structure is not.
4. **Null.** The same maximum contrast over every ``(p, r)`` on ``permutations`` simulated
   sweeps with no periodic component: around the fitted trend (the statistic does not depend on
   it), each point's value is the mean of its replicate deviations resampled with replacement
   (rescaled to the shrunk SE). ``p_value = (1 + #{null >= observed}) / (permutations + 1)``,
   so the smallest p-value the sweep can reach is ``1 / (permutations + 1)`` -- above
   ``alpha`` the verdict is ``inconclusive`` whatever the data.
5. **Power.** Period-p dips at the best phase are planted on the observed noise (inflated by
   the observed ``f_p``) and the smallest step (% of the median value) found with
   ``power`` (80 %) probability is reported. A sweep that finds no period but could not have
   detected a step of ``min_step_pct`` is ``inconclusive``, not ``none``.
6. A multiple of the true period also shows the dips, so when a divisor of the winner is
   significant, nearly as strong (``harmonic_ratio``) and in phase, the divisor is chosen.

**Fallback without replicates** (one value per point, e.g. mAP): the noise is estimated from
the sweep itself -- every contrast is divided by ``s_p`` (the residual scale after the trend and
the phase profile, so dips do not inflate it) and the null is Gaussian white noise, for which
that statistic is pivotal. This test spends degrees of freedom on the noise estimate and
assumes independent Gaussian point noise (timing spikes make it conservative): it is weaker
than the replicate test and should only be used when no replicates exist.

No significant period gives ``period = 1`` (no constraint on the cluster size).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["minima", "maxima"]
Verdict = Literal["period", "none", "inconclusive"]
_Z80 = 0.8416
_POWER_GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


@dataclass(frozen=True)
class PeriodSettings:
    """Knobs of the detector (``paper2.period`` in the config).

    ``permutations`` is the number of simulated null sweeps (the name is kept from the former
    shuffle test); ``power_sims`` the simulations per planted step size; a sweep that finds no
    period is ``inconclusive`` unless it could detect a step of ``min_step_pct`` % of the
    median value with probability ``power``. ``candidates`` restricts the periods tried (e.g.
    the channel blockings hardware uses, 2/4/8/16/32): fewer candidates, fewer chances for
    noise to look like a period; None tries every multiple of the step up to ``max_period``.
    """

    max_period: int = 32
    min_cycles: int = 3
    candidates: tuple[int, ...] | None = None
    alpha: float = 0.01
    permutations: int = 1000
    harmonic_ratio: float = 0.85
    seed: int = 0
    trend_degree: int = 2
    power_sims: int = 100
    power: float = 0.8
    min_step_pct: float = 2.0


@dataclass(frozen=True)
class PeriodEvidence:
    """What the detector found and why (see the module docstring).

    ``period``/``phase``: the detected period (1 / None unless ``verdict == "period"``);
    ``best_period``/``best_phase``: the strongest candidate before the harmonic rule;
    ``strength``: the standardised contrast of the reported (or best) period; ``threshold``:
    the contrast needed for ``p <= alpha`` (None when no sweep can reach it);
    ``min_p_value``: the smallest p-value this design can give; ``step_pct`` and its
    ``step_ci95_pct``: the observed dip (minima) or peak (maxima) at the best period and phase,
    in % of ``median_value`` (the interval ignores that the period was selected);
    ``min_detectable_pct``: the smallest such step found with ``power`` probability (None: not
    within 5x the analytic guess, or not reachable); ``noise``: ``"replicates"`` or
    ``"residuals"`` (fallback); ``scatter``: ``f_p`` at the best period (1 = the replicates
    explain the scatter); ``replicates``: median replicate units per point.
    """

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
    verdict: str = "inconclusive"
    best_phase: int | None = None
    alpha: float = 0.01
    min_p_value: float = 1.0
    step_pct: float | None = None
    step_ci95_pct: tuple[float, float] | None = None
    min_detectable_pct: float | None = None
    power: float = 0.8
    noise: str = "residuals"
    scatter: float | None = None
    replicates: float = 1.0
    median_value: float | None = None
    strengths: dict[int, float] = field(default_factory=dict)
    phases: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (period keys become strings, intervals lists)."""
        d = asdict(self)
        d["strengths"] = {str(k): v for k, v in self.strengths.items()}
        d["phases"] = {str(k): v for k, v in self.phases.items()}
        if self.step_ci95_pct is not None:
            d["step_ci95_pct"] = [float(v) for v in self.step_ci95_pct]
        return d


def cluster_size(p_acc: int, p_lat: int) -> int:
    """Paper 2's optimum cluster size: the least common multiple of both periods."""
    if p_acc < 1 or p_lat < 1:
        raise ValueError(f"periods must be >= 1, got p_acc={p_acc}, p_lat={p_lat}")
    return math.lcm(int(p_acc), int(p_lat))


def cluster_phase(p_acc: int, r_acc: int | None, p_lat: int, r_lat: int | None) -> int | None:
    """Phase of the cluster size ``LCM(p_acc, p_lat)``: the smallest ``r`` with
    ``r ≡ r_lat (mod p_lat)`` and ``r ≡ r_acc (mod p_acc)`` for each detected period
    (period > 1 with a phase). When both cannot hold, latency wins; None when neither period
    was detected."""
    size = cluster_size(p_acc, p_lat)
    want = [(p, r) for p, r in ((p_lat, r_lat), (p_acc, r_acc)) if p > 1 and r is not None]
    if not want:
        return None
    for r in range(size):
        if all(r % p == q % p for p, q in want):
            return r
    p, q = want[0]
    return int(q % p)


def most_common(values: Sequence[int]) -> int | None:
    """The most frequent value (ties: the smaller); None for no values."""
    if not values:
        return None
    counts = Counter(int(v) for v in values)
    return min(counts, key=lambda v: (-counts[v], v))


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median; the window shrinks symmetrically at the ends."""
    n = len(values)
    half = max(0, window // 2)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        h = min(half, i, n - 1 - i)
        out[i] = np.median(values[i - h:i + h + 1])
    return out


# --------------------------------------------------------------------------- inputs


def _units(rep: Any) -> np.ndarray:
    """Replicate units of one point: 1-D values as given; ``groups x blocks`` -> the median of
    each group's blocks. Non-finite values are dropped."""
    items = list(rep) if rep is not None else []
    if items and all(isinstance(g, Sequence | np.ndarray) for g in items):
        meds = []
        for g in items:
            a = np.asarray(g, dtype=np.float64)
            a = a[np.isfinite(a)]
            if a.size:
                meds.append(float(np.median(a)))
        return np.asarray(meds, dtype=np.float64)
    a = np.asarray(items, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


@dataclass(frozen=True)
class _Series:
    x: np.ndarray            # filters left, ascending
    y: np.ndarray            # point values, flipped for maxima (dips are always low)
    units: list[np.ndarray] | None
    step: int


def _prepare(filters_left: Sequence[int], values: Sequence[float] | None,
             replicates: Sequence[Any] | None, kind: Kind) -> _Series:
    x = np.asarray(filters_left, dtype=np.int64)
    if x.ndim != 1:
        raise ValueError(f"filters_left must be 1-D, got shape {x.shape}")
    units: list[np.ndarray] | None = None
    if replicates is not None:
        if len(replicates) != len(x):
            raise ValueError(f"replicates must have one entry per point: {len(replicates)} "
                             f"entries for {len(x)} points")
        units = [_units(r) for r in replicates]
        y = np.array([u.mean() if u.size else np.nan for u in units])
    else:
        if values is None:
            raise ValueError("give values or replicates")
        y = np.asarray(values, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"filters_left and values must be 1-D and equally long, got "
                             f"{x.shape} and {y.shape}")
    ok = np.isfinite(y)
    order = np.argsort(x[ok], kind="stable")
    xs, ys = x[ok][order], y[ok][order]
    if units is not None:
        kept = [u for u, k in zip(units, ok, strict=True) if k]
        units = [kept[i] for i in order]
    if len(np.unique(xs)) != len(xs):
        raise ValueError("filters_left must not repeat")
    diffs = np.diff(xs)
    step = int(np.gcd.reduce(diffs)) if len(diffs) else 1
    sign = 1.0 if kind == "minima" else -1.0
    if units is not None:
        units = [sign * u for u in units]
    return _Series(xs, sign * ys, units, max(step, 1))


# --------------------------------------------------------------------------- noise


@dataclass(frozen=True)
class _Noise:
    """Per-point standard errors and a sampler of null noise (bootstrap or Gaussian)."""

    se: np.ndarray
    pools: list[np.ndarray | None]   # centred, rescaled replicate deviations (None: Gaussian)
    pivot: bool                      # fallback: noise scale estimated from the sweep
    df: float = math.inf             # degrees of freedom of the pooled spread

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` null noise vectors. Each is divided by ``sqrt(chi2_df / df)`` because the
        data's SEs are estimates (pooled, ``df`` degrees of freedom), as a t test allows for:
        far in the tail of the maximum contrast a few % of error in them matters."""
        out = np.empty((count, len(self.se)))
        for i, pool in enumerate(self.pools):
            if pool is None:
                out[:, i] = rng.normal(0.0, self.se[i], count)
            else:
                idx = rng.integers(0, pool.size, (count, pool.size))
                out[:, i] = pool[idx].mean(axis=1)
        if math.isfinite(self.df):
            out /= np.sqrt(rng.chisquare(self.df, count) / self.df)[:, None]
        return out


def _noise(units: list[np.ndarray] | None, level: np.ndarray) -> _Noise | None:
    """Replicate noise model, or None when the replicates cannot give one (fallback).

    The spread is pooled over the sweep as a relative variance (timing noise scales with the
    latency): per-point variances from a handful of units would make the test
    anti-conservative (their errors act like extra signal). Each point keeps the shape of its
    own deviations for the bootstrap, rescaled to the pooled spread at its level.
    """
    if units is None:
        return None
    m = np.array([u.size for u in units], dtype=np.float64)
    df = np.where(m > 1, m - 1, 0.0)
    scale = np.abs(level) if np.all(np.abs(level) > 0) else np.ones_like(level)
    rel = np.array([u.var(ddof=1) if u.size > 1 else 0.0 for u in units]) / scale ** 2
    if df.sum() < 1 or not np.sum(rel * df) > 0:
        return None
    var = float(np.sum(rel * df) / df.sum()) * scale ** 2
    se = np.sqrt(var / np.maximum(m, 1))
    pools: list[np.ndarray | None] = []
    for u, v in zip(units, var, strict=True):
        dev = u - u.mean()
        pop = float(dev.var()) if u.size > 1 else 0.0
        pools.append(dev * math.sqrt(v / pop) if pop > 0 else None)
    return _Noise(se, pools, pivot=False, df=float(df.sum()))


# --------------------------------------------------------------------------- statistic


def _candidates(x: np.ndarray, step: int, cfg: PeriodSettings) -> list[int]:
    """Periods that are multiples of the step, at least two samples long, and seen for at
    least ``min_cycles`` full cycles."""
    if not len(x):
        return []
    span = int(x.max() - x.min()) + step
    allowed = set(cfg.candidates) if cfg.candidates is not None else None
    return [p for p in range(2 * step, cfg.max_period + 1, step)
            if span // p >= cfg.min_cycles and (allowed is None or p in allowed)]


def _projector(m: np.ndarray) -> tuple[np.ndarray, int]:
    """Residual projector ``I - M M^+`` and the rank of ``M``."""
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    rank = int(np.sum(s > s.max() * 1e-10)) if s.size else 0
    q = u[:, :rank]
    return np.eye(m.shape[0]) - q @ q.T, rank


@dataclass(frozen=True)
class _Design:
    cols: list[tuple[int, int]]      # (period, phase) of each contrast
    col_period: np.ndarray           # index into periods of each column
    periods: list[int]
    weights: np.ndarray              # (n, K): raw contrast c = y @ weights
    sd: np.ndarray                   # (K,): SE of the raw contrast
    resid: list[np.ndarray]          # whitened trend+profile residual projector per period
    dof: np.ndarray
    w: np.ndarray
    pivot: bool
    masks: np.ndarray                # (n, K) in-phase indicator

    def stats(self, y: np.ndarray) -> np.ndarray:
        """Standardised contrasts (B, K) of series ``y`` (B, n), divided by ``f_p``."""
        z = (y @ self.weights) / self.sd
        return z / self.scales(y)[:, self.col_period]

    def scales(self, y: np.ndarray) -> np.ndarray:
        """``f_p`` (B, P): residual scale after trend + phase profile (SE units); floored at
        1 with replicates, used as is in the fallback (1 where no degrees of freedom)."""
        yw = y * self.w
        out = np.ones((y.shape[0], len(self.periods)))
        for j, (proj, dof) in enumerate(zip(self.resid, self.dof, strict=True)):
            if dof < 1:
                continue
            s = np.sqrt(np.sum((yw @ proj) ** 2, axis=1) / dof)
            out[:, j] = s if self.pivot else np.maximum(1.0, s)
        if self.pivot:
            out = np.where(out > 0, out, np.inf)
        return out


def _design(s: _Series, se: np.ndarray, pivot: bool, cands: list[int],
            cfg: PeriodSettings) -> _Design | None:
    n = len(s.x)
    half = max((s.x.max() - s.x.min()) / 2.0, 1.0)
    xs = (s.x - (s.x.max() + s.x.min()) / 2.0) / half
    degree = max(0, min(cfg.trend_degree, n - 3))
    w = 1.0 / se
    trend = np.vander(xs, degree + 1, increasing=True) * w[:, None]
    r0, _ = _projector(trend)
    cols, col_period, weights, sds, masks = [], [], [], [], []
    periods, resid, dofs = [], [], []
    for p in cands:
        phase = np.mod(s.x, p)
        values = np.unique(phase)
        onehot = (phase[:, None] == values[None, :]).astype(np.float64)
        proj, rank = _projector(np.hstack([trend, onehot * w[:, None]]))
        dof = n - rank
        if pivot and dof < 2:
            continue
        j = len(periods)
        for k, r in enumerate(values):
            m = onehot[:, k]
            k_in = m.sum()
            if k_in < cfg.min_cycles or n - k_in < 1:
                continue
            g = (1.0 - m) / (n - k_in) - m / k_in
            gw = g / w
            cols.append((p, int(r)))
            col_period.append(j)
            weights.append(w * (r0 @ gw))
            sds.append(math.sqrt(max(float(gw @ r0 @ gw), 1e-300)))
            masks.append(m)
        if col_period and col_period[-1] == j:
            periods.append(p)
            resid.append(proj)
            dofs.append(dof)
    if not cols:
        return None
    return _Design(cols, np.array(col_period), periods, np.stack(weights, axis=1),
                   np.array(sds), resid, np.array(dofs), w, pivot, np.stack(masks, axis=1))


def _threshold(null_max: np.ndarray, alpha: float) -> float | None:
    """Smallest statistic with ``p <= alpha`` is anything above this value (None: no
    statistic can reach ``alpha`` with this many null sweeps)."""
    allowed = math.floor(alpha * (null_max.size + 1) + 1e-9) - 1
    if allowed < 0:
        return None
    ordered = np.sort(null_max)[::-1]
    return float(ordered[allowed]) if allowed < ordered.size else -math.inf


def _min_detectable(design: _Design, noise: _Noise, k: int, scale: float,
                    threshold: float | None, cfg: PeriodSettings,
                    rng: np.random.Generator) -> float | None:
    """Smallest dip (value units) at column ``k`` detected (p <= alpha) with probability
    ``cfg.power`` on the observed noise times ``scale`` (None: not reachable)."""
    if threshold is None or cfg.power_sims < 1:
        return None
    base = (max(threshold, 0.0) + _Z80) * design.sd[k] * scale
    noise_draw = noise.draw(rng, cfg.power_sims) * scale
    mask = design.masks[:, k]
    power = []
    for f in _POWER_GRID:
        t = design.stats(noise_draw - f * base * mask[None, :]).max(axis=1)
        power.append(float(np.mean(t > threshold)))
    for j, pw in enumerate(power):
        if pw >= cfg.power:
            if j == 0:
                return _POWER_GRID[0] * base
            lo, hi = _POWER_GRID[j - 1], _POWER_GRID[j]
            frac = (cfg.power - power[j - 1]) / max(pw - power[j - 1], 1e-12)
            return (lo + frac * (hi - lo)) * base
    return None


# --------------------------------------------------------------------------- detector


def detect_period(filters_left: Sequence[int], values: Sequence[float] | None = None,
                  kind: Kind = "minima", cfg: PeriodSettings = PeriodSettings(), *,
                  replicates: Sequence[Any] | None = None) -> PeriodEvidence:
    """Find the period of the minima (``kind="minima"``, latency) or maxima (``"maxima"``,
    accuracy) of a sweep against the number of filters left; see the module docstring.

    ``replicates`` (one entry per point): that point's replicate timings, either a flat list
    (e.g. one value per group) or ``groups x blocks`` block medians (reduced to one median per
    group). With replicates the point values are their means and ``values`` is ignored;
    without them (or with fewer than two units anywhere) ``values`` are tested with the
    weaker residual-noise fallback.
    """
    if kind not in ("minima", "maxima"):
        raise ValueError(f"kind must be 'minima' or 'maxima', got {kind!r}")
    s = _prepare(filters_left, values, replicates, kind)
    n = len(s.x)
    noise = _noise(s.units, s.y)
    reps = float(np.median([u.size for u in s.units])) if s.units else 1.0
    base: dict[str, Any] = dict(kind=kind, step=s.step, points=n, alpha=cfg.alpha,
                                power=cfg.power, replicates=reps,
                                noise="replicates" if noise is not None else "residuals",
                                median_value=float(np.median(np.abs(s.y))) if n else None)
    cands = _candidates(s.x, s.step, cfg)
    if not cands:
        return PeriodEvidence(period=1, phase=None, strength=0.0, best_period=None,
                              threshold=None, p_value=None, verdict="inconclusive",
                              reason=f"{n} points with step {s.step} cover fewer than "
                                     f"{cfg.min_cycles} cycles of any period >= {2 * s.step}",
                              **base)
    if noise is None:
        resid = s.y - np.polyval(np.polyfit(s.x, s.y, min(cfg.trend_degree, n - 1)), s.x)
        if not np.ptp(resid) > 1e-12 * max(1.0, float(np.abs(s.y).max())):
            return PeriodEvidence(period=1, phase=None, strength=0.0, best_period=None,
                                  threshold=None, p_value=None, verdict="none",
                                  reason="the detrended series is constant", **base)
        noise = _Noise(np.ones(n), [None] * n, pivot=True)
    design = _design(s, noise.se, noise.pivot, cands, cfg)
    if design is None:
        return PeriodEvidence(period=1, phase=None, strength=0.0, best_period=None,
                              threshold=None, p_value=None, verdict="inconclusive",
                              reason=f"no phase of periods {cands} holds {cfg.min_cycles} "
                                     "points with enough degrees of freedom", **base)
    obs = design.stats(s.y[None, :])[0]
    obs_scale = design.scales(s.y[None, :])[0]
    strengths: dict[int, float] = {}
    phases: dict[int, int] = {}
    col_of: dict[int, int] = {}
    for k, (p, r) in enumerate(design.cols):
        if p not in strengths or obs[k] > strengths[p]:
            strengths[p], phases[p], col_of[p] = float(obs[k]), r, k
    best_p = max(strengths, key=lambda p: (strengths[p], -p))
    top = strengths[best_p]
    rng = np.random.default_rng(cfg.seed)
    null_max = design.stats(noise.draw(rng, cfg.permutations)).max(axis=1)
    threshold = _threshold(null_max, cfg.alpha)
    p_value = float((1 + np.sum(null_max >= top)) / (cfg.permutations + 1))
    min_p = 1.0 / (cfg.permutations + 1)
    significant = threshold is not None and top > threshold
    chosen = best_p
    if significant:
        for d in sorted(strengths):
            if d >= best_p or best_p % d:
                continue
            if (phases[best_p] % d == phases[d] and strengths[d] > threshold
                    and strengths[d] >= cfg.harmonic_ratio * top):
                chosen = d
                break
    k = col_of[chosen]
    j = design.periods.index(chosen)
    scale = float(obs_scale[j])
    level = base["median_value"] or 1.0
    contrast = float(s.y @ design.weights[:, k])
    half = 1.96 * float(design.sd[k]) * scale
    step_pct = 100.0 * contrast / level
    ci = (100.0 * (contrast - half) / level, 100.0 * (contrast + half) / level)
    mde = _min_detectable(design, noise, k, scale, threshold, cfg, rng)
    mde_pct = None if mde is None else 100.0 * mde / level
    common = dict(best_period=best_p, best_phase=phases[best_p], threshold=threshold,
                  p_value=p_value, min_p_value=min_p, step_pct=step_pct, step_ci95_pct=ci,
                  min_detectable_pct=mde_pct, scatter=scale, strengths=strengths,
                  phases=phases, strength=strengths[chosen], **base)
    thr = "unreachable" if threshold is None else f"{threshold:.2f}"
    found = (f"period {chosen} phase {phases[chosen]}: step {step_pct:.2f} % "
             f"[{ci[0]:.2f}, {ci[1]:.2f}], strength {strengths[chosen]:.2f} vs threshold {thr} "
             f"(p = {p_value:.3g}, alpha {cfg.alpha}, noise from {base['noise']})")
    detectable = ("no step within the simulated range" if mde_pct is None
                  else f"a {mde_pct:.2f} % step")
    if significant:
        reason = found + f"; {int(cfg.power * 100)} % power for {detectable}"
        if chosen != best_p:
            reason += f"; chosen over its multiple {best_p} (strength {top:.2f})"
        return PeriodEvidence(period=chosen, phase=phases[chosen], verdict="period",
                              reason=reason, **common)
    if min_p > cfg.alpha:
        verdict, why = "inconclusive", (f"the smallest reachable p-value {min_p:.3g} "
                                        f"({cfg.permutations} null sweeps) is above alpha")
    elif mde_pct is None or mde_pct > cfg.min_step_pct:
        verdict, why = "inconclusive", (f"the sweep had {int(cfg.power * 100)} % power only "
                                        f"for {detectable}, above {cfg.min_step_pct} %")
    else:
        verdict, why = "none", (f"the sweep had {int(cfg.power * 100)} % power for "
                                f"{detectable}")
    return PeriodEvidence(period=1, phase=None, verdict=verdict,
                          reason=f"no period: best {found}; {why}", **common)



# --------------------------------------------------------------------------- block steps


def _jump_scores(y: np.ndarray, se: np.ndarray) -> np.ndarray:
    """|y_i - y_(i-1)| in units of its standard error, for each row of ``y`` (B, n) -> (B, n-1)."""
    sd = np.sqrt(se[1:] ** 2 + se[:-1] ** 2)
    return np.abs(np.diff(y, axis=-1)) / sd


def _step_contrasts(z: np.ndarray, x_hi: np.ndarray, cands: Sequence[int],
                    min_cycles: int) -> dict[tuple[int, int], np.ndarray]:
    """For every period ``p`` and phase ``r``: median jump score at the boundaries (the jump
    into ``left ≡ r (mod p)`` from one filter fewer) minus the median elsewhere, per row."""
    out = {}
    for p in cands:
        for r in range(p):
            at = np.mod(x_hi, p) == r
            if at.sum() < min_cycles or (~at).sum() < 1:
                continue
            out[(p, r)] = np.median(z[:, at], axis=1) - np.median(z[:, ~at], axis=1)
    return out


def _median_draws(units: Sequence[np.ndarray], rng: np.random.Generator,
                  count: int) -> np.ndarray:
    """Bootstrap medians of each point's replicate units, centred: (count, points)."""
    out = np.empty((count, len(units)))
    for i, u in enumerate(units):
        idx = rng.integers(0, u.size, (count, u.size))
        out[:, i] = np.median(u[idx], axis=1) - np.median(u)
    return out


def detect_steps(filters_left: Sequence[int], replicates: Sequence[Any],
                 cfg: PeriodSettings = PeriodSettings()) -> PeriodEvidence:
    """Block-level steps: latency that stays flat for ``p`` filter counts and jumps at the
    block boundaries (kernels that pad channels to blocks of ``p``), the pattern
    :func:`detect_period`'s dips do not describe.

    Needs a step-1 sweep with replicate timings. Each point is the *median* of its replicate
    units (timing hiccups make them heavy-tailed: a 30 µs layer sometimes takes 70 µs), with
    its standard error from a bootstrap of that median. For each candidate period and phase the
    statistic is the median standardised jump at the boundaries minus the median elsewhere (a
    smooth trend gives the same jumps at every phase and cancels; one odd point moves a median
    of at least ``min_cycles`` boundaries little). The null: the fitted quadratic trend plus
    each point's bootstrap median noise, ``permutations`` sweeps, the maximum over every period
    and phase. Among periods whose strength is within ``harmonic_ratio`` of the best the
    smallest is reported (a multiple of the true period misses some of its boundaries and
    scores lower). ``phase`` is the filter count, mod the period, at the top of a flat block
    (the most filters for that latency); ``step_pct`` the median boundary jump in % of the
    median value.
    """
    s = _prepare(filters_left, None, replicates, "minima")
    n = len(s.x)
    common = dict(kind="steps", step=s.step, points=n, alpha=cfg.alpha, noise="replicates")
    units = [u for u in (s.units or []) if u.size > 1]
    cands = _candidates(s.x, 1, cfg) if s.step == 1 else []
    if s.units is None or len(units) != n or not cands:
        why = ("needs a step-1 sweep with at least two replicate timings per point"
               if s.units is None or len(units) != n or s.step != 1
               else f"{n} points hold fewer than {cfg.min_cycles} boundaries of any period")
        return PeriodEvidence(period=1, phase=None, strength=0.0, best_period=None,
                              threshold=None, p_value=None, reason=why, **common)
    rng = np.random.default_rng(cfg.seed)
    y = np.array([np.median(u) for u in units])
    draws = _median_draws(units, rng, cfg.permutations)
    se = np.maximum(draws.std(axis=0), 1e-12 * max(1.0, float(np.abs(y).max())))
    obs = _step_contrasts(_jump_scores(y[None, :], se), s.x[1:], cands, cfg.min_cycles)
    if not obs:
        return PeriodEvidence(period=1, phase=None, strength=0.0, best_period=None,
                              threshold=None, p_value=None,
                              reason=f"no phase holds {cfg.min_cycles} boundaries", **common)
    strengths = {p: max(float(v[0]) for (q, _), v in obs.items() if q == p)
                 for p in sorted({p for p, _ in obs})}
    bounds = {p: max(((r, float(v[0])) for (q, r), v in obs.items() if q == p),
                     key=lambda t: t[1])[0] for p in strengths}
    phases = {p: (r - 1) % p for p, r in bounds.items()}
    best = max(strengths, key=lambda p: (strengths[p], -p))
    top = strengths[best]
    trend = np.polyval(np.polyfit(s.x, y, min(2, n - 1)), s.x)
    null_draws = _median_draws(units, rng, cfg.permutations)
    sims = _step_contrasts(_jump_scores(trend[None, :] + null_draws, se), s.x[1:], cands,
                           cfg.min_cycles)
    null = np.max(np.stack(list(sims.values())), axis=0)
    p_value = float((1 + np.sum(null >= top)) / (cfg.permutations + 1))
    min_p = 1.0 / (cfg.permutations + 1)
    chosen = min(p for p in strengths if strengths[p] >= cfg.harmonic_ratio * top)
    at = np.mod(s.x[1:], chosen) == bounds[chosen]
    med = float(np.median(np.abs(y)))
    step_pct = 100.0 * float(np.median(np.abs(np.diff(y))[at])) / med if med > 0 else None
    found = p_value <= cfg.alpha
    verdict = "period" if found else ("inconclusive" if min_p > cfg.alpha else "none")
    reason = (f"flat blocks of {chosen} filters, ending at left ≡ {phases[chosen]} (mod "
              f"{chosen}), median jump {step_pct:.2f} %, p = {p_value:.3g}" if found else
              f"no block steps beat the replicate noise (best period {best}, p = "
              f"{p_value:.3g})")
    return PeriodEvidence(
        period=chosen if found else 1, phase=phases[chosen] if found else None, strength=top,
        best_period=best, best_phase=phases[best], threshold=_threshold(null, cfg.alpha),
        p_value=p_value, reason=reason, verdict=verdict, min_p_value=min_p,
        step_pct=step_pct, replicates=float(np.median([u.size for u in units])),
        median_value=med, strengths=strengths, phases=phases, **common)
