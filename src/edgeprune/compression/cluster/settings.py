"""Typed view of the ``paper2:`` config section, with the defaults of the default (cheap) run.

The ``paper2`` part of ``workflow/schemas/config.schema.yaml`` declares the same keys and
defaults (a test keeps the two in step); this module adds the checks a schema cannot make --
layer names against each architecture, target names against ``targets:`` -- and every error
names the offending key.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeprune.compression.cluster.backend import BACKENDS, TORCH_ARCHS
from edgeprune.compression.cluster.period import PeriodSettings
from edgeprune.compression.cluster.surgery import prunable_layers
from edgeprune.detection.models import ARCHITECTURES
from edgeprune.errors import ConfigError
from edgeprune.measurement.targets import Target, parse_targets

#: How sweep and pruning points get their mAP: once on the Keras model, or per converted file.
ACCURACY_MODES = ("keras", "per_format")

#: Fine-tuning optimisers: Adam (the base training's) or SGD with momentum (the paper's Caffe).
OPTIMIZERS = ("adam", "sgd")

DEFAULTS: dict[str, Any] = {
    "archs": ["ssd_mobilenet_v1", "ssd_squeezenet"],
    "targets": ["host-openvino", "host-litert"],
    "backend": "keras",
    "accuracy": "keras",
    "eval_images": 50,
    "sweep": {
        "layers": {
            "ssd_mobilenet_v1": ["conv11"],
            "ssd_squeezenet": ["fire8_expand3x3"],
        },
        "step": 4,
        "min_filters": 2,
        "max_removed": 64,
        "isolated": {"enabled": True, "step": 1},
        "timing": {"seconds": 15.0, "block_runs": 10, "blocks_per_group": 8, "warmup": 5,
                   "min_groups": 6},
    },
    "period": {"max_period": 32, "min_cycles": 3, "candidates": [2, 4, 8, 16, 32],
               "alpha": 0.01, "permutations": 1000, "harmonic_ratio": 0.85,
               "min_step_pct": 2.0},
    "cluster": {"size": 8, "size_from": "host-openvino"},
    "whole": {
        "layers": {
            "ssd_mobilenet_v1": ["conv[1-9]"],
            "ssd_squeezenet": ["fire[2-8]_*"],
        },
        "measure_every": 8,
        "steps": 2,
        "min_filters": 8,
        "timing": {"seconds": 20.0, "block_runs": 10, "blocks_per_group": 4, "warmup": 5,
                   "min_groups": 6},
        "finetune": {"enabled": True, "updates": 10, "lr_factor": 0.1, "optimizer": "sgd",
                     "momentum": 0.9},
    },
    "tables": {"step": -1, "finetuned": False},
    "app_fps": {"frames": 100, "warmup": 10, "passes": 3},
}


@dataclass(frozen=True)
class TimingSettings:
    """One interleaved comparison (:mod:`edgeprune.measurement.compare`): its time budget, timed
    runs per
    block, blocks per group of fresh instances, warm-up calls per instance, minimum groups."""

    seconds: float
    block_runs: int
    blocks_per_group: int
    warmup: int
    min_groups: int

    def compare_settings(self, seed: int) -> Any:
        """The :class:`edgeprune.measurement.compare.CompareSettings` of these settings and
        ``seed``."""
        from edgeprune.measurement.compare import CompareSettings

        return CompareSettings(seconds=self.seconds, block_runs=self.block_runs,
                               blocks_per_group=self.blocks_per_group, warmup=self.warmup,
                               min_groups=self.min_groups, seed=seed)


@dataclass(frozen=True)
class SweepSettings:
    """Single-layer sweeps (paper 2, Sec. IV-B)."""

    layers: dict[str, list[str]]
    step: int
    min_filters: int
    max_removed: int | None
    isolated: bool
    isolated_step: int
    timing: TimingSettings


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning after each pruning step: optimiser updates, learning-rate factor, optimiser
    (``adam`` | ``sgd``) and SGD momentum."""

    enabled: bool
    updates: int
    lr_factor: float
    optimizer: str = "sgd"
    momentum: float = 0.9


@dataclass(frozen=True)
class WholeSettings:
    """Whole-model filter vs cluster pruning (paper 2, Sec. IV-C)."""

    layers: dict[str, list[str]]
    measure_every: int
    steps: int
    min_filters: int
    timing: TimingSettings
    finetune: FinetuneSettings


@dataclass(frozen=True)
class Paper2Settings:
    """Everything the paper-2 rules read from the config."""

    archs: list[str]
    targets: dict[str, Target]
    accuracy: str
    eval_images: int | None
    sweep: SweepSettings
    period: PeriodSettings
    size: str | int | dict[str, int]
    size_from: str
    whole: WholeSettings
    table_step: int
    table_finetuned: bool
    app_frames: int
    app_warmup: int
    app_passes: int
    backend: str = "keras"
    backends: tuple[str, ...] = ("keras",)

    def for_backend(self, name: str | None) -> Paper2Settings:
        """These settings for one of :attr:`backends` (``None``: the first, :attr:`backend`)."""
        if name is None or name == self.backend:
            return self
        if name not in self.backends:
            raise ConfigError(f"config key 'paper2.backend': {name!r} is not listed "
                              f"(configured: {list(self.backends)})")
        return dataclasses.replace(self, backend=name)


def _backends(raw: Any) -> tuple[str, ...]:
    """``paper2.backend``: one name or a list of distinct names (both run, side by side)."""
    names = [raw] if isinstance(raw, str) else raw
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n in BACKENDS for n in names)
            or len(set(names)) != len(names)):
        raise ConfigError(f"config key 'paper2.backend': expected one of {BACKENDS} or a list "
                          f"of distinct ones, got {raw!r}")
    return tuple(names)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, Mapping):
        out = copy.deepcopy(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def _int(raw: Mapping[str, Any], key: str, path: str, lo: int) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"config key '{path}.{key}': expected an integer >= {lo}, got {value!r}")
    return value


def _number(raw: Mapping[str, Any], key: str, path: str, lo: float, hi: float) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo < value <= hi:
        raise ConfigError(f"config key '{path}.{key}': expected a number in ({lo}, {hi}], "
                          f"got {value!r}")
    return float(value)


def _momentum(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"config key 'paper2.whole.finetune.momentum': expected a number in "
                          f"[0, 1), got {value!r}")
    return float(value)


def _timing(raw: Any, path: str) -> TimingSettings:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{path}': expected a mapping")
    return TimingSettings(
        seconds=_number(raw, "seconds", path, 0.0, 86400.0),
        block_runs=_int(raw, "block_runs", path, 1),
        blocks_per_group=_int(raw, "blocks_per_group", path, 1),
        warmup=_int(raw, "warmup", path, 0),
        min_groups=_int(raw, "min_groups", path, 2),
    )


def expand_layers(arch: str, patterns: Any, key: str) -> list[str]:
    """Layer names (or shell-style patterns such as ``conv[1-9]``) -> prunable layers of
    ``arch`` in network order; ConfigError naming ``key`` for a pattern that matches none."""
    if not isinstance(patterns, list) or not patterns or not all(
            isinstance(p, str) for p in patterns):
        raise ConfigError(f"config key '{key}': expected a non-empty list of layer names")
    names = prunable_layers(arch)
    chosen: set[str] = set()
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(f"config key '{key}': {pattern!r} matches no prunable layer of "
                              f"{arch}; prunable layers are {names}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _layers(raw: Any, archs: list[str], key: str) -> dict[str, list[str]]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{key}': expected a mapping of architecture to layers")
    missing = [a for a in archs if a not in raw]
    if missing:
        raise ConfigError(f"config key '{key}': no layers given for {missing}")
    return {a: expand_layers(a, raw[a], f"{key}.{a}") for a in archs}


def _size(raw: Any) -> str | int | dict[str, int]:
    key = "paper2.cluster.size"
    if raw == "auto":
        return "auto"
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return raw
    if isinstance(raw, Mapping) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                        for v in raw.values()):
        return {str(k): int(v) for k, v in raw.items()}
    raise ConfigError(f"config key '{key}': expected 'auto', an integer >= 1 or a mapping "
                      f"{{layer: integer >= 1}}, got {raw!r}")


def _targets(config: Mapping[str, Any], names: Any) -> dict[str, Target]:
    key = "paper2.targets"
    if not isinstance(names, list) or not names:
        raise ConfigError(f"config key '{key}': expected a non-empty list of target names")
    known = parse_targets(config)
    out = {}
    for name in names:
        if name not in known:
            raise ConfigError(f"config key '{key}': unknown target {name!r}; configured targets "
                              f"are {sorted(known)}")
        if not known[name].enabled:
            raise ConfigError(f"config key '{key}': target {name!r} is disabled "
                              f"(targets.{name}.enabled: false)")
        out[name] = known[name]
    return out


def _onnx_export(targets: Mapping[str, Target], backends: tuple[str, ...]) -> None:
    """A ``trtexec`` target times ONNX files. The Keras backend converts its models with
    tf2onnx, which must be installed (checked without importing it); the torch backend
    exports with ``torch.onnx`` (its ``onnx`` package is a base dependency)."""
    import importlib.util

    onnx = [name for name, t in targets.items() if t.runtime == "trtexec"]
    if onnx and "keras" in backends and importlib.util.find_spec("tf2onnx") is None:
        from edgeprune.compression.cluster.convert import TF2ONNX_PIN

        raise ConfigError(f"config key 'paper2.targets': target {onnx[0]!r} (runtime trtexec) "
                          f"needs ONNX files, which the Keras backend converts with tf2onnx, "
                          f"but tf2onnx is not installed; run `make venv` (or pip install "
                          f"{TF2ONNX_PIN})")


def _archs(config: Mapping[str, Any], raw: Any, given: bool) -> list[str]:
    key = "paper2.archs"
    if not given and isinstance(raw, list):
        raw = [a for a in raw if a in config.get("detectors", {})] or raw
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"config key '{key}': expected a non-empty list of architectures")
    for arch in raw:
        if arch not in ARCHITECTURES:
            raise ConfigError(f"config key '{key}': unknown architecture {arch!r}")
        if arch not in config.get("detectors", {}):
            raise ConfigError(f"config key '{key}': {arch!r} has no entry under 'detectors'")
    return list(raw)


def raw_section(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config["paper2"]`` over :data:`DEFAULTS`, unvalidated."""
    return _merge(DEFAULTS, config.get("paper2") or {})


def _candidates(raw: Any) -> tuple[int, ...] | None:
    """``paper2.period.candidates``: null (every period) or a list of periods >= 2."""
    if raw is None:
        return None
    if (not isinstance(raw, list) or not raw
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in raw)):
        raise ConfigError("config key 'paper2.period.candidates': expected null or a list of "
                          f"integers >= 2, got {raw!r}")
    return tuple(sorted(set(raw)))


def paper2_settings(config: Mapping[str, Any]) -> Paper2Settings:
    """Validate ``config["paper2"]`` (missing keys take :data:`DEFAULTS`)."""
    raw = raw_section(config)
    archs = _archs(config, raw["archs"], "archs" in (config.get("paper2") or {}))
    backends = _backends(raw["backend"])
    if "torch" in backends:
        import importlib.util

        if importlib.util.find_spec("torch") is None or \
                importlib.util.find_spec("torch_pruning") is None:
            raise ConfigError("config key 'paper2.backend': the torch backend needs torch and "
                              "torch-pruning, which are not installed; run `make venv` (the "
                              "lock pins the CPU build) or pip install \".[torch]\"")
        other = [a for a in archs if a not in TORCH_ARCHS]
        if other:
            raise ConfigError(f"config key 'paper2.archs': {other} have no torch model "
                              f"(paper2.backend: torch prunes {list(TORCH_ARCHS)})")
    sw, pe, wh, ft = raw["sweep"], raw["period"], raw["whole"], raw["whole"]["finetune"]
    iso = sw["isolated"]
    sweep = SweepSettings(
        layers=_layers(sw["layers"], archs, "paper2.sweep.layers"),
        step=_int(sw, "step", "paper2.sweep", 1),
        min_filters=_int(sw, "min_filters", "paper2.sweep", 1),
        max_removed=None if sw["max_removed"] is None else _int(sw, "max_removed",
                                                                  "paper2.sweep", 1),
        isolated=bool(iso["enabled"]),
        isolated_step=_int(iso, "step", "paper2.sweep.isolated", 1),
        timing=_timing(sw["timing"], "paper2.sweep.timing"),
    )
    period = PeriodSettings(
        max_period=_int(pe, "max_period", "paper2.period", 2),
        min_cycles=_int(pe, "min_cycles", "paper2.period", 2),
        candidates=_candidates(pe.get("candidates")),
        alpha=_number(pe, "alpha", "paper2.period", 0.0, 0.5),
        permutations=_int(pe, "permutations", "paper2.period", 20),
        harmonic_ratio=_number(pe, "harmonic_ratio", "paper2.period", 0.0, 1.0),
        min_step_pct=_number(pe, "min_step_pct", "paper2.period", 0.0, 100.0),
        seed=int(config.get("seed", 0)),
    )
    if ft["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"config key 'paper2.whole.finetune.optimizer': expected one of "
                          f"{OPTIMIZERS}, got {ft['optimizer']!r}")
    whole = WholeSettings(
        layers=_layers(wh["layers"], archs, "paper2.whole.layers"),
        measure_every=_int(wh, "measure_every", "paper2.whole", 1),
        steps=_int(wh, "steps", "paper2.whole", 1),
        min_filters=_int(wh, "min_filters", "paper2.whole", 1),
        timing=_timing(wh["timing"], "paper2.whole.timing"),
        finetune=FinetuneSettings(
            enabled=bool(ft["enabled"]),
            updates=_int(ft, "updates", "paper2.whole.finetune", 1),
            lr_factor=_number(ft, "lr_factor", "paper2.whole.finetune", 0.0, 10.0),
            optimizer=str(ft["optimizer"]),
            momentum=_momentum(ft["momentum"]),
        ),
    )
    targets = _targets(config, raw["targets"])
    size_from = raw["cluster"]["size_from"]
    if size_from not in targets:
        raise ConfigError(f"config key 'paper2.cluster.size_from': {size_from!r} is not one of "
                          f"paper2.targets {list(targets)}")
    tables = raw["tables"]
    step = tables["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step == 0:
        raise ConfigError(f"config key 'paper2.tables.step': expected a measured step (1, 2, …) "
                          f"or a negative index from the end (-1 = last), got {step!r}")
    accuracy = raw["accuracy"]
    if accuracy not in ACCURACY_MODES:
        raise ConfigError(f"config key 'paper2.accuracy': expected one of {ACCURACY_MODES}, "
                          f"got {accuracy!r}")
    _onnx_export(targets, backends)
    eval_images = raw["eval_images"]
    if eval_images is not None:
        eval_images = _int(raw, "eval_images", "paper2", 1)
    return Paper2Settings(
        archs=archs, targets=targets, accuracy=accuracy, eval_images=eval_images,
        sweep=sweep, period=period,
        size=_size(raw["cluster"]["size"]), size_from=size_from, whole=whole,
        table_step=step, table_finetuned=bool(tables["finetuned"]),
        app_frames=_int(raw["app_fps"], "frames", "paper2.app_fps", 1),
        app_warmup=_int(raw["app_fps"], "warmup", "paper2.app_fps", 0),
        app_passes=_int(raw["app_fps"], "passes", "paper2.app_fps", 1),
        backend=backends[0], backends=backends,
    )

