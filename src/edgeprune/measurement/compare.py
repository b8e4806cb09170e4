"""Latency comparisons you can trust: models timed together, interleaved, with 95 % intervals.

Timing one model after another cannot resolve differences of a few percent: drift between the
blocks and the instance a model happens to get (memory placement; +3.5 % between two compiled
instances of one OpenVINO IR was measured here) are as large as the effect. So every model of one
comparison is timed on the same target in the same session by
:func:`edgeprune.measurement.devices.remote_runner.interleave`: groups of blocks, fresh instances
per group
created in a seeded random order, the models of each block in a seeded random order. Statistics
(:func:`summarize_groups`):

* per model: the median of all block medians, with a 95 % interval from a cluster bootstrap over
  groups (resample groups with replacement, pool their block medians, take the median; the
  percentiles are those of the expanded percentile interval, which keeps 95 % coverage with
  only a few groups);
* per pair (model i against the reference, model 0 unless chosen): the median over blocks of the
  paired per-block difference (ms and % = 100 (b_i / b_0 - 1)), with its interval from the same
  bootstrap over groups; ``significant`` when the interval excludes 0.

:func:`compare_on_target` runs a comparison on a configured target: in this process for the
local LiteRT / OpenVINO targets, through ``remote_runner.py --compare`` over SSH for remote
litert-python / openvino targets, and as interleaved ``benchmark_model`` / ``benchmark_app``
invocations (one group of one block each) for those tools, ``trtexec`` too. The whole comparison
holds the device's lock (:func:`edgeprune.measurement.devices.bench.device_session`).
``python -m edgeprune.latency compare`` is its command line (:func:`main`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from edgeprune.errors import ConfigError, EdgepruneError, TargetError
from edgeprune.fileio import write_json
from edgeprune.measurement.targets import Target, get_target, parse_targets

__all__ = [
    "CompareSettings",
    "Comparison",
    "Difference",
    "ModelLatency",
    "compare_on_target",
    "difference",
    "main",
    "mean_rate_ci95",
    "settings_for",
    "summarize_groups",
]

#: Model file suffixes each runtime reads.
_FORMATS = {"litert-python": (".tflite",), "benchmark_model": (".tflite",),
            "openvino": (".xml", ".onnx", ".tflite"), "benchmark_app": (".xml", ".onnx"),
            "trtexec": (".onnx",)}
#: Bootstrap arrays are built in chunks of at most this many values.
_CHUNK_VALUES = 4_000_000


@dataclass(frozen=True)
class CompareSettings:
    """How long and how a comparison times (see
    :func:`edgeprune.measurement.devices.remote_runner.interleave`)
    and how many bootstrap resamples its intervals use."""

    seconds: float = 60.0
    block_runs: int = 10
    blocks_per_group: int = 4
    warmup: int = 10
    min_groups: int = 6
    max_groups: int = 100000
    seed: int = 0
    resamples: int = 2000


def settings_for(target: Target, seed: int = 0, **overrides: Any) -> CompareSettings:
    """The target's comparison settings (``seconds``, ``block_runs``, ``blocks_per_group``,
    ``warmup``) with ``seed``; ``overrides`` that are not None win."""
    base = CompareSettings(seconds=target.seconds, block_runs=target.block_runs,
                           blocks_per_group=target.blocks_per_group, warmup=target.warmup,
                           seed=seed)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class ModelLatency:
    """One model's latency: median of block medians (ms) and its 95 % interval."""

    path: str
    median_ms: float
    ci95_ms: tuple[float, float]
    block_medians_ms: list[list[float]]  # groups x blocks

    @property
    def fps(self) -> float:
        """Single-stream frames per second, 1000 / median."""
        return 1000.0 / self.median_ms

    @property
    def fps_ci95(self) -> tuple[float, float]:
        """The interval of :attr:`fps` (the latency interval inverted)."""
        return (1000.0 / self.ci95_ms[1], 1000.0 / self.ci95_ms[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields plus ``fps`` and ``fps_ci95``."""
        return {"path": self.path, "median_ms": self.median_ms, "ci95_ms": list(self.ci95_ms),
                "fps": self.fps, "fps_ci95": list(self.fps_ci95),
                "block_medians_ms": self.block_medians_ms}


@dataclass(frozen=True)
class Difference:
    """Paired latency difference of ``path`` against ``reference`` with 95 % intervals."""

    path: str
    diff_ms: float
    ci95_ms: tuple[float, float]
    diff_pct: float
    ci95_pct: tuple[float, float]
    significant: bool
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"path": self.path, "reference": self.reference, "diff_ms": self.diff_ms,
                "ci95_ms": list(self.ci95_ms), "diff_pct": self.diff_pct,
                "ci95_pct": list(self.ci95_pct), "significant": self.significant}


@dataclass(frozen=True)
class Comparison:
    """Every model's latency and each model's difference to the first, on one target."""

    target: str
    models: list[ModelLatency]
    differences: list[Difference]
    settings: dict[str, Any]
    identity: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``target``, ``models``, ``differences`` (to the first model), ``groups``,
        ``settings``, ``identity`` and ``raw`` (the interleaving orders and block medians)."""
        return {"target": self.target, "reference": self.models[0].path,
                "models": [m.to_dict() for m in self.models],
                "differences": [d.to_dict() for d in self.differences],
                "groups": len(self.raw.get("groups", [])), "settings": dict(self.settings),
                "identity": dict(self.identity), "raw": self.raw}


# --------------------------------------------------------------------------- statistics


def _group_array(raw: Mapping[str, Any], n_models: int) -> np.ndarray:
    """Block medians as groups x blocks x models, NaN-padded where groups have fewer blocks."""
    groups = raw.get("groups") or []
    if not groups:
        raise ValueError("the timing has no groups")
    blocks = max(len(g["block_medians_ms"]) for g in groups)
    out = np.full((len(groups), blocks, n_models), np.nan)
    for gi, group in enumerate(groups):
        values = np.asarray(group["block_medians_ms"], dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != n_models:
            raise ValueError(f"group {gi}: block medians of shape {values.shape}, expected "
                             f"blocks x {n_models} models")
        out[gi, : values.shape[0]] = values
    return out


def _bootstrap_medians(values: np.ndarray, resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Cluster bootstrap over groups: ``values`` is groups x blocks x k; returns resamples x k
    medians of the pooled block values of resampled groups."""
    n_groups, blocks, k = values.shape
    median = np.nanmedian if np.isnan(values).any() else np.median
    chunk = max(1, _CHUNK_VALUES // max(1, n_groups * blocks * k))
    parts = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = rng.integers(0, n_groups, size=(size, n_groups))
        parts.append(median(values[idx].reshape(size, n_groups * blocks, k), axis=1))
    return np.concatenate(parts, axis=0)


def _t_quantile(p: float, dof: int) -> float:
    """Student-t quantile from the normal one (Cornish-Fisher, 3 terms; < 0.2 % off for
    dof >= 5 at p = 0.975)."""
    z = NormalDist().inv_cdf(p)
    return (z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3))


def _tail_pct(n_groups: int) -> float:
    """Lower tail (%) of the expanded percentile interval (Hesterberg 2015) for ``n_groups``
    clusters: Phi(-sqrt(n/(n-1)) t_{0.975, n-1}). The plain percentile interval is too narrow
    with few groups: in A/A simulations (tests/test_compare.py's stand-ins) it gave 8 % false
    positives at 6 groups, this one 6 %, and under 5 % from about 15 groups."""
    if n_groups < 2:
        return 2.5
    stretch = (n_groups / (n_groups - 1)) ** 0.5 * _t_quantile(0.975, n_groups - 1)
    return 100.0 * NormalDist().cdf(-stretch)


def _interval(boot: np.ndarray, n_groups: int) -> list[tuple[float, float]]:
    tail = _tail_pct(n_groups)
    lo, hi = np.percentile(boot, [tail, 100.0 - tail], axis=0)
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def _pooled_median(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1, values.shape[-1])
    return np.nanmedian(flat, axis=0)


def difference(raw: Mapping[str, Any], paths: Sequence[str], index: int, reference: int = 0,
               resamples: int = 2000, seed: int = 0) -> Difference:
    """Paired difference of model ``index`` against model ``reference`` (per block, then the
    median over blocks), with 95 % intervals from a bootstrap over groups."""
    values = _group_array(raw, len(paths))
    a, b = values[..., index], values[..., reference]
    both = np.stack([a - b, 100.0 * (a / b - 1.0)], axis=-1)
    estimate = _pooled_median(both)
    boot = _bootstrap_medians(both, resamples, np.random.default_rng(seed))
    ci_ms, ci_pct = _interval(boot, values.shape[0])
    return Difference(path=str(paths[index]), diff_ms=float(estimate[0]), ci95_ms=ci_ms,
                      diff_pct=float(estimate[1]), ci95_pct=ci_pct,
                      significant=bool(ci_pct[0] > 0 or ci_pct[1] < 0),
                      reference=str(paths[reference]))


def summarize_groups(raw: dict[str, Any], paths: Sequence[str], target: str, resamples: int,
                     seed: int, identity: dict[str, Any] | None = None,
                     settings: dict[str, Any] | None = None) -> Comparison:
    """Medians with 95 % intervals per model and paired differences to model 0 (module doc)."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    values = _group_array(raw, len(paths))
    medians = _pooled_median(values)
    boot = _bootstrap_medians(values, resamples, np.random.default_rng(seed))
    intervals = _interval(boot, values.shape[0])
    models = [
        ModelLatency(path=str(path), median_ms=float(medians[i]), ci95_ms=intervals[i],
                     block_medians_ms=[[float(v) for v in group[:, i] if not np.isnan(v)]
                                       for group in values])
        for i, path in enumerate(paths)
    ]
    diffs = [difference(raw, paths, i, 0, resamples, seed) for i in range(1, len(paths))]
    return Comparison(target=target, models=models, differences=diffs,
                      settings=dict(settings or {}), identity=dict(identity or {}), raw=raw)


def mean_rate_ci95(samples_ms: Sequence[float], rate: float, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """95 % interval of a rate (e.g. application FPS) measured over per-item times.

    ``rate`` is the reported rate (items / wall time); the interval scales it by the bootstrap
    distribution of the mean per-item time (items resampled with replacement). It covers the
    item-to-item variation within that one run, not drift between runs or instance effects.
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_VALUES // values.size)
    means = np.concatenate([
        values[rng.integers(0, values.size, size=(min(chunk, resamples - s), values.size))]
        .mean(axis=1) for s in range(0, resamples, chunk)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    centre = values.mean()
    return (float(rate * centre / hi), float(rate * centre / lo))


# --------------------------------------------------------------------------- running


def _check_models(target: Target, paths: Sequence[Path]) -> None:
    if not target.enabled:
        raise TargetError(f"target '{target.name}' is disabled in config "
                          f"(targets.{target.name}.enabled: false)")
    if not paths:
        raise ConfigError("compare: no models given")
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"model not found: {path}")
    suffixes = sorted({p.suffix.lower() for p in paths})
    if len(suffixes) > 1:
        raise ConfigError(f"models of one comparison must share one format; got "
                          f"{', '.join(suffixes)} for target '{target.name}'")
    allowed = _FORMATS[target.runtime]
    if suffixes[0] not in allowed:
        raise ConfigError(f"target '{target.name}' ({target.runtime}) reads "
                          f"{', '.join(allowed)} models, not {suffixes[0]} ({paths[0]})")


def _in_process(target: Target, paths: Sequence[Path], settings: CompareSettings,
                progress: Callable[[int, float], None] | None, transport: Any
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Interleave local LiteRT / OpenVINO instances in this process."""
    from edgeprune.measurement.devices import remote_runner as rr
    from edgeprune.measurement.devices.bench import compare_identity

    infos: list[dict[str, Any]] = [{} for _ in paths]
    if target.runtime == "litert-python":
        no_xnnpack = target.delegates is not None and not target.delegates.xnnpack
        openers = [rr.litert_opener(str(p), target.threads, no_xnnpack, settings.seed, infos[i])
                   for i, p in enumerate(paths)]
    else:
        ov = rr.load_openvino()
        core = ov.Core()
        openers = [rr.openvino_opener(ov, core, str(p), target.device or "CPU", target.threads,
                                      settings.seed, infos[i]) for i, p in enumerate(paths)]
    try:
        raw = rr.interleave(openers, block_runs=settings.block_runs,
                            blocks_per_group=settings.blocks_per_group, warmup=settings.warmup,
                            seconds=settings.seconds, min_groups=settings.min_groups,
                            max_groups=settings.max_groups, seed=settings.seed,
                            progress=progress)
    except (RuntimeError, ValueError, SystemExit) as exc:
        raise TargetError(f"target '{target.name}' (local host): timing failed: {exc}") from exc
    info = infos[0]
    identity = compare_identity(dict(transport.identity()), target,
                                info.get("runtime"), info.get("runtime_version"),
                                info.get("threads_used"), info.get("inference_precision"))
    return raw, identity


def compare_on_target(target: Target, paths: Sequence[str | Path], settings: CompareSettings,
                      raw_log: str | Path | None = None,
                      progress: Callable[[int, float], None] | None = None) -> Comparison:
    """Time ``paths`` together on ``target`` and summarise them (module doc).

    ``raw_log`` keeps the tool's or runner's output (for in-process timing: the raw groups as
    JSON). ``progress(groups, elapsed_s)`` is called after each group where timing runs here.

    Raises:
        ConfigError: a model is missing or the formats are mixed or wrong for the runtime.
        TargetError: the target is disabled or unreachable, or its tool failed.
        BenchmarkOutputError: the tool's or runner's output is unreadable (field named).
    """
    models = [Path(p) for p in paths]
    _check_models(target, models)
    if raw_log is None:
        with tempfile.TemporaryDirectory(prefix="edgeprune-compare-") as tmp:
            return compare_on_target(target, models, settings, Path(tmp) / "raw.log", progress)
    from edgeprune.measurement.devices.bench import (
        compare_with_runner,
        device_session,
        interleave_tool,
    )
    from edgeprune.measurement.devices.parsers import BenchmarkOutputError

    log = Path(raw_log)
    knobs = {"warmup": settings.warmup, "seconds": settings.seconds,
             "min_groups": settings.min_groups, "max_groups": settings.max_groups,
             "seed": settings.seed}
    runner = target.runtime in ("litert-python", "openvino")
    with device_session(target, models) as (transport, waited):
        if runner and target.transport == "local" and target.python == sys.executable:
            raw, identity = _in_process(target, models, settings, progress, transport)
            write_json(log, {"identity": identity, "interleave": raw})
        elif runner:
            raw, identity = compare_with_runner(
                target, models, log, block_runs=settings.block_runs,
                blocks_per_group=settings.blocks_per_group, transport=transport, **knobs)
        else:
            raw, identity = interleave_tool(target, models, log, runs=target.runs,
                                            progress=progress, transport=transport, **knobs)
    identity["lock_wait_s"] = waited
    recorded = {**asdict(settings), "threads": target.threads,
                "threads_used": identity.get("threads_used"), "runtime": target.runtime,
                "block_runs": raw.get("block_runs"),
                "blocks_per_group": raw.get("blocks_per_group"), "warmup": raw.get("warmup")}
    try:
        return summarize_groups(raw, [str(p) for p in models], target.name, settings.resamples,
                                settings.seed, identity=identity, settings=recorded)
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchmarkOutputError(
            f"target '{target.name}' ({target.address}): {target.runtime} comparison result "
            f"unreadable, field 'groups': {exc}; raw output kept in {log}",
            field="groups") from None


# --------------------------------------------------------------------------- command line


def _fmt_interval(lo: float, hi: float, digits: int = 3, sign: bool = False) -> str:
    spec = f"+.{digits}f" if sign else f".{digits}f"
    return f"[{lo:{spec}}, {hi:{spec}}]"


def format_comparison(comparison: Comparison) -> str:
    """Human-readable table: each model's median with its interval, then the differences."""
    ident, s = comparison.identity, comparison.settings
    raw = comparison.raw
    lines = [f"target {comparison.target}: {ident.get('runtime')} {ident.get('runtime_version')}, "
             f"threads {ident.get('threads_used') or ident.get('threads')}, "
             f"{len(raw['groups'])} groups x {raw.get('blocks_per_group')} blocks x "
             f"{raw.get('block_runs')} runs in {raw.get('elapsed_s', 0):.1f} s, "
             f"warm-up {raw.get('warmup')}, seed {s.get('seed')}"]
    width = max(len(m.path) for m in comparison.models)
    lines.append(f"{'model':<{width}}  median ms  95 % interval ms    FPS")
    for m in comparison.models:
        lines.append(f"{m.path:<{width}}  {m.median_ms:9.4f}  "
                     f"{_fmt_interval(*m.ci95_ms, digits=4):<19} {m.fps:8.1f}")
    if comparison.differences:
        lines.append(f"difference to {comparison.models[0].path}:")
    for d in comparison.differences:
        verdict = "significant: yes" if d.significant else "significant: no (within noise)"
        lines.append(f"{d.path:<{width}}  {d.diff_ms:+.4f} ms  {d.diff_pct:+.2f} %  95 % interval "
                     f"{_fmt_interval(*d.ci95_pct, digits=2, sign=True)} %  {verdict}")
    return "\n".join(lines)


def _load_targets(config_path: str | None) -> dict[str, Target]:
    """Targets from ``--config`` (or config/config.yaml when present, else the built-ins)."""
    import yaml

    path = Path(config_path) if config_path else Path("config/config.yaml")
    if config_path is None and not path.is_file():
        return parse_targets({})
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return parse_targets(cfg)


def _default_target(paths: Sequence[Path]) -> str:
    suffixes = {p.suffix.lower() for p in paths}
    if suffixes == {".tflite"}:
        return "host-litert"
    if suffixes <= {".xml", ".onnx"}:
        return "host-openvino"
    raise ConfigError(f"cannot choose a target for models {', '.join(sorted(suffixes))}: give "
                      ".tflite files (host-litert) or OpenVINO .xml (host-openvino), not a mix, "
                      "or --target")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edgeprune.latency",
        description="Latency tools. 'compare' times models together, interleaved, and prints "
                    "each model's median with its 95 %% interval and each model's difference "
                    "to the first.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmp_ = sub.add_parser("compare", help="compare the latency of two or more models")
    cmp_.add_argument("models", nargs="+", metavar="MODEL", help=".tflite or OpenVINO .xml")
    cmp_.add_argument("--target", help="target name (default: host-litert for .tflite, "
                                       "host-openvino for .xml)")
    cmp_.add_argument("--seconds", type=float, help="timing budget (default: the target's)")
    cmp_.add_argument("--threads", type=int, help="inference threads (default: the target's)")
    cmp_.add_argument("--seed", type=int, default=0, help="interleaving seed (default 0)")
    cmp_.add_argument("--json", help="write the result as JSON here")
    cmp_.add_argument("--config", help="YAML whose `targets:` (and `threads:`) are read "
                                       "(default config/config.yaml if present)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgeprune.latency compare MODEL_A MODEL_B ...``; exit 2 on bad input."""
    from edgeprune.measurement.devices.remote_runner import stderr_progress

    args = _parser().parse_args(argv)
    try:
        if len(args.models) < 2:
            raise ConfigError("compare needs at least two models")
        if args.seconds is not None and not args.seconds > 0:
            raise ConfigError(f"--seconds: expected a number > 0, got {args.seconds}")
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads: expected an integer >= 1, got {args.threads}")
        paths = [Path(p) for p in args.models]
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"model not found: {path}")
        targets = _load_targets(args.config)
        target = get_target(targets, args.target or _default_target(paths))
        if args.threads is not None:
            target = replace(target, threads=args.threads)
        settings = settings_for(target, seed=args.seed, seconds=args.seconds)
        _check_models(target, paths)
        sys.stderr.write(f"compare: timing {len(paths)} models on {target.name} for about "
                         f"{settings.seconds:g} s\n")
        comparison = compare_on_target(target, paths, settings,
                                       progress=stderr_progress(settings.seconds, "compare", 5.0))
    except EdgepruneError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(format_comparison(comparison))
    if args.json:
        write_json(args.json, comparison.to_dict())
    return 0

