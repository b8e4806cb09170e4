"""Measurements shared by the paper-2 stages: VOC mAP of any runner on the test split and the
interleaved timing of all models of one comparison on a target
(:mod:`edgeprune.measurement.compare`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.compression.cluster.settings import ACCURACY_MODES
from edgeprune.data.voc import Annotation
from edgeprune.detection.boxes import PostprocessConfig
from edgeprune.detection.detect import Runner, make_runner, run_batched, to_detections
from edgeprune.fileio import write_json
from edgeprune.measurement.bootstrap import bootstrap_map
from edgeprune.measurement.targets import Target

#: The edgeprune.detection.detect runtime that reads each artifact format (OpenVINO reads the
#: ``.onnx`` files made for TensorRT targets, so ``per_format`` scores those on the host too).
FORMAT_RUNTIME = {"tflite": "tflite", "ir": "openvino", "onnx": "openvino", "keras": "keras"}


@dataclass
class TestSet:
    """The test split, loaded once per job: annotations, images at the model input size,
    class names, anchors and evaluation settings."""

    annotations: list[Annotation]
    images: np.ndarray
    classes: list[str]
    anchors: np.ndarray
    postprocess: PostprocessConfig
    metric: str
    iou: float
    batch_size: int
    resamples: int = 1000
    seed: int = 0


def runner_map(runner: Runner, test: TestSet,
               batch_size: int | None = None) -> tuple[float, tuple[float, float]]:
    """mAP (``evaluation.metric``) of a runner's detections with the project's VOC evaluator,
    and its 95 % interval from the bootstrap over the test images (``evaluation.bootstrap``
    resamples, seeded with ``seed``)."""
    loc, probs = run_batched(runner, test.images, batch_size or test.batch_size)
    dets = to_detections(test.annotations, loc, probs, test.anchors, test.classes,
                         test.postprocess)
    found = bootstrap_map(test.annotations, dets, test.classes, test.metric, test.iou,
                          test.resamples, test.seed)
    return float(found.map), (float(found.ci95[0]), float(found.ci95[1]))


def artifact_map(fmt: str, path: Path, test: TestSet,
                 threads: int) -> tuple[float, tuple[float, float]]:
    """mAP of a converted model file (``tflite``, ``ir`` or ``onnx``) with its 95 % interval."""
    runner, batch = make_runner(FORMAT_RUNTIME[fmt], path, threads)
    return runner_map(runner, test, batch)


def model_maps(model: Any, artifacts: Mapping[str, Any], accuracy: str, test: TestSet,
               threads: int, runner: Runner | None = None,
               framework: str = "keras") -> dict[str, Any]:
    """mAP of a thinned model: once on the framework model (``accuracy="keras"``: the Keras
    model, or ``runner`` over the ``framework``'s model; float32 runtimes agree with it up to
    rounding) or per converted artifact with its own runtime (``"per_format"``). Keys are
    ``mAP_<framework>`` or ``mAP_<format>``, each with its 95 % interval under
    ``ci95_mAP_<key>`` (``[lo, hi]``)."""
    if accuracy == "keras":
        from edgeprune.detection.detect import keras_runner

        found = {framework: runner_map(runner or keras_runner(model), test)}
    elif accuracy == "per_format":
        found = {fmt: artifact_map(fmt, art.path, test, threads)
                 for fmt, art in artifacts.items()}
    else:
        raise ValueError(f"accuracy must be one of {ACCURACY_MODES}, got {accuracy!r}")
    out: dict[str, Any] = {}
    for key, (value, ci) in found.items():
        out[f"mAP_{key}"] = value
        out[f"ci95_mAP_{key}"] = list(ci)
    return out


def format_maps(maps: Mapping[str, Any]) -> str:
    """``mAP_keras=0.4321 [0.4011, 0.4630], ...`` for a log line from :func:`model_maps`."""
    return ", ".join(f"{k}={v:.4f} [{maps['ci95_' + k][0]:.4f}, {maps['ci95_' + k][1]:.4f}]"
                     for k, v in maps.items() if k.startswith("mAP_"))


def map_for(row: Mapping[str, Any], fmt: str) -> float:
    """The mAP a target reading ``fmt`` files sees: its own if measured, else the framework
    model's (Keras or torch)."""
    return float(row.get(f"mAP_{fmt}", row.get(f"mAP_{_framework(row)}", float("nan"))))


def _framework(row: Mapping[str, Any]) -> str:
    return "torch" if "mAP_torch" in row else "keras"


def map_columns(row: Mapping[str, Any], fmt: str) -> dict[str, float]:
    """``mAP`` with ``mAP_ci95_lo/_hi`` for a table row, the way :func:`map_for` picks it."""
    key = fmt if f"mAP_{fmt}" in row else _framework(row)
    lo, hi = row.get(f"ci95_mAP_{key}", (float("nan"), float("nan")))
    return {"mAP": map_for(row, fmt), "mAP_ci95_lo": float(lo), "mAP_ci95_hi": float(hi)}


def compare_models(target: Target, paths: Sequence[Path], settings: Any, raw_dir: Path,
                   name: str, log: Callable[[str], None] | None = None) -> Any:
    """Time every model file of one comparison (a sweep's points, one architecture's whole-model
    steps) together on ``target``, interleaved, through :func:`edgeprune.measurement.compare.
    compare_on_target` (``settings``: a ``CompareSettings``). Model 0 is the reference of the
    paired differences. The raw timing goes to ``<raw_dir>/<name>.log`` and the summary (every
    model's median, interval and block medians, every difference) to ``<raw_dir>/<name>.json``.
    Returns the :class:`edgeprune.measurement.compare.Comparison`."""
    from edgeprune.measurement.compare import compare_on_target

    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"timing {len(paths)} models on {target.name}, interleaved, for about "
            f"{settings.seconds:g} s (seed {settings.seed})")
    comparison = compare_on_target(target, [Path(p) for p in paths], settings,
                                   raw_dir / f"{name}.log")
    write_json(raw_dir / f"{name}.json", comparison.to_dict())
    if log:
        log(f"{name} on {target.name}: {len(comparison.raw.get('groups', []))} groups")
    return comparison


def latency_columns(comparison: Any, index: int) -> dict[str, Any]:
    """CSV columns of model ``index`` of a comparison: median and 95 % interval (ms), the block
    medians (JSON, groups x blocks) and the paired difference to model 0 (%, interval,
    significant; 0 for model 0 itself)."""
    m = comparison.models[index]
    row: dict[str, Any] = {
        "latency_median_ms": m.median_ms, "latency_ci95_lo_ms": m.ci95_ms[0],
        "latency_ci95_hi_ms": m.ci95_ms[1],
        "latency_block_medians_ms": json.dumps(m.block_medians_ms)}
    if index == 0:
        row.update(diff_pct=0.0, diff_ci95_lo_pct=0.0, diff_ci95_hi_pct=0.0,
                   diff_significant=False)
    else:
        d = comparison.differences[index - 1]
        row.update(diff_pct=d.diff_pct, diff_ci95_lo_pct=d.ci95_pct[0],
                   diff_ci95_hi_pct=d.ci95_pct[1], diff_significant=d.significant)
    return row
