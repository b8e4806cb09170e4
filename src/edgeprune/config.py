"""Config checks the JSON schema cannot express, and typed views of config sections."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeprune.compression.prune import variant_name
from edgeprune.data.augment import AugmentConfig
from edgeprune.data.voc import VOC_CLASSES
from edgeprune.detection.boxes import PostprocessConfig
from edgeprune.detection.models import ARCHITECTURES, DetectorSpec
from edgeprune.detection.train import TrainConfig
from edgeprune.errors import ConfigError

SYNTH_DIR = "SYNTH"


def schema_errors(cfg: Mapping[str, Any], schema_path: str | Path) -> list[str]:
    """Every violation of the JSON schema, one line each, naming the config key:
    ``config key 'train.epochs': -1 is less than the minimum of 1``."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for err in sorted(validator.iter_errors(dict(cfg)), key=lambda e: list(map(str, e.path))):
        key = ".".join(str(p) for p in err.path) or "(top level)"
        lines.append(f"config key '{key}': {err.message}")
    return lines


def _require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config key '{key}': {msg}")


def check(cfg: Mapping[str, Any]) -> None:
    """Cross-field checks; raises ConfigError naming the offending key."""
    data = cfg["data"]
    if data["source"] == "voc":
        _require(bool(data.get("root")), "data.root", "source 'voc' needs the VOCdevkit path")
    else:
        syn = data.get("synthetic") or {}
        _require("classes" in syn, "data.synthetic.classes", "required for source 'synthetic'")
        _require("splits" in syn, "data.synthetic.splits", "required for source 'synthetic'")
        _require(syn.get("min_objects", 1) <= syn.get("max_objects", 5),
                 "data.synthetic.min_objects", "must not exceed data.synthetic.max_objects")
        lo, hi = syn.get("scale_range", (0.15, 0.55))
        _require(lo < hi, "data.synthetic.scale_range", f"expected [low, high], got {[lo, hi]}")
        for key in ("train_sets", "val_sets", "test_sets"):
            for s in data.get(key, []):
                split = s.split("/")[1]
                _require(s.startswith(f"{SYNTH_DIR}/") and split in syn["splits"],
                         f"data.{key}", f"{s!r} is not a generated split; expected one of "
                         f"{[f'{SYNTH_DIR}/{k}' for k in syn['splits']]}")
    anchors = cfg.get("anchors", {})
    _require(anchors.get("min_scale", 0.1) < anchors.get("max_scale", 0.9), "anchors.min_scale",
             "must be smaller than anchors.max_scale")
    for arch in cfg["detectors"]:
        _require(arch in ARCHITECTURES, f"detectors.{arch}",
                 f"unknown architecture; expected one of {sorted(ARCHITECTURES)}")
    p1 = cfg.get("paper1")
    if p1:
        _require(p1["arch"] in cfg["detectors"], "paper1.arch",
                 f"{p1['arch']!r} is not configured under detectors")
        missing = sorted(set(p1["quantize"]) - set(p1["sparsities"]))
        _require(not missing, "paper1.quantize",
                 f"levels {missing} are not in paper1.sparsities")
        names = [variant_name(s) for s in p1["sparsities"]]
        _require(len(set(names)) == len(names), "paper1.sparsities",
                 f"levels map to duplicate names {names}")
    aug = cfg.get("train", {}).get("augment", {})
    lo, hi = aug.get("zoom_range", (0.7, 1.5))
    _require(lo <= hi, "train.augment.zoom_range", f"expected [low, high], got {[lo, hi]}")


def classes(cfg: Mapping[str, Any]) -> list[str]:
    """Detection classes: ``data.classes``, else the generated shapes or the 20 VOC classes."""
    data = cfg["data"]
    if data.get("classes"):
        return list(data["classes"])
    if data["source"] == "synthetic":
        return list(data["synthetic"]["classes"])
    return list(VOC_CLASSES)


def devkit_root(cfg: Mapping[str, Any], results: str | Path = "results") -> Path:
    """Where the VOCdevkit lives: the configured root, or the generated one under results/."""
    data = cfg["data"]
    if data["source"] == "voc":
        return Path(data["root"]).expanduser()
    return Path(results) / "data" / "VOCdevkit"


def detector_spec(cfg: Mapping[str, Any], arch: str,
                  widths: Mapping[str, int] | None = None) -> DetectorSpec:
    """The DetectorSpec for ``detectors.<arch>`` (optionally with other widths)."""
    if arch not in cfg["detectors"]:
        raise ConfigError(f"config key 'detectors.{arch}' is missing; configured detectors are "
                          f"{sorted(cfg['detectors'])}")
    d = cfg["detectors"][arch]
    a = cfg.get("anchors", {})
    return DetectorSpec(
        arch=arch, num_classes=len(classes(cfg)),
        input_size=tuple(d.get("input_size", (300, 300))),  # type: ignore[arg-type]
        width_multiplier=float(d.get("width_multiplier", 1.0)),
        widths=widths if widths is not None else d.get("widths"),
        min_scale=float(a.get("min_scale", 0.1)), max_scale=float(a.get("max_scale", 0.9)),
        aspect_ratios=tuple(float(r) for r in a.get("aspect_ratios", (1.0, 2.0, 0.5))),
        first_stride=int(d.get("first_stride", 16)),
    )


def train_config(cfg: Mapping[str, Any], arch: str | None = None,
                 overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from ``train`` (+ ``detectors.<arch>.epochs``, + explicit overrides)."""
    t = dict(cfg.get("train", {}))
    aug = dict(t.pop("augment", {}))
    if "zoom_range" in aug:
        aug["zoom_range"] = tuple(aug["zoom_range"])
    if arch and "epochs" in cfg["detectors"].get(arch, {}):
        t["epochs"] = cfg["detectors"][arch]["epochs"]
    t.update(overrides or {})
    return TrainConfig(seed=int(cfg.get("seed", 0)), augment=AugmentConfig(**aug), **t)


def postprocess_config(cfg: Mapping[str, Any]) -> PostprocessConfig:
    """PostprocessConfig from ``postprocess``."""
    return PostprocessConfig(**cfg.get("postprocess", {}))
