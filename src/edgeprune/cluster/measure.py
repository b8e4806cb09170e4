"""Measurements shared by the paper-2 stages: VOC mAP of any runner on the test split, the
timing of a model file on a target, and application frame rate (end to end per frame)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune import config as C
from edgeprune.boxes import PostprocessConfig
from edgeprune.cluster.settings import ACCURACY_MODES
from edgeprune.dataset import load_sets
from edgeprune.detect import Runner, make_runner, run_batched, to_detections
from edgeprune.devices.bench import run_benchmark
from edgeprune.evaluate import evaluate
from edgeprune.targets import Target
from edgeprune.voc import Annotation, load_images

#: The edgeprune.detect runtime that reads each artifact format.
FORMAT_RUNTIME = {"tflite": "tflite", "ir": "openvino", "keras": "keras"}


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


def load_test_set(config: Mapping[str, Any], input_size: tuple[int, int],
                  anchors: np.ndarray, limit: int | None = None) -> TestSet:
    """Read ``data.test_sets`` (its first ``limit`` images, if given) resized to
    ``input_size``."""
    anns = load_sets(C.devkit_root(config), config["data"]["test_sets"])[:limit]
    ev = config.get("evaluation", {})
    return TestSet(anns, load_images(anns, input_size), C.classes(config), anchors,
                   C.postprocess_config(config), ev.get("metric", "voc07"),
                   float(ev.get("iou_threshold", 0.5)), int(ev.get("batch_size", 32)))


def runner_map(runner: Runner, test: TestSet, batch_size: int | None = None) -> float:
    """mAP (``evaluation.metric``) of a runner's detections with the project's VOC evaluator."""
    loc, probs = run_batched(runner, test.images, batch_size or test.batch_size)
    dets = to_detections(test.annotations, loc, probs, test.anchors, test.classes,
                         test.postprocess)
    return float(evaluate(test.annotations, dets, test.classes, test.metric, test.iou).mAP)


def artifact_map(fmt: str, path: Path, test: TestSet, threads: int) -> float:
    """mAP of a converted model file (``tflite`` or ``ir``)."""
    runner, batch = make_runner(FORMAT_RUNTIME[fmt], path, threads)
    return runner_map(runner, test, batch)


def model_maps(model: Any, artifacts: Mapping[str, Any], accuracy: str, test: TestSet,
               threads: int) -> dict[str, float]:
    """mAP of a thinned model: once on the Keras model (``accuracy="keras"``; float32 runtimes
    agree with it up to rounding) or per converted artifact with its own runtime
    (``"per_format"``). Keys are ``mAP_keras`` or ``mAP_<format>``."""
    if accuracy == "keras":
        from edgeprune.detect import keras_runner

        return {"mAP_keras": runner_map(keras_runner(model), test)}
    if accuracy == "per_format":
        return {f"mAP_{fmt}": artifact_map(fmt, art.path, test, threads)
                for fmt, art in artifacts.items()}
    raise ValueError(f"accuracy must be one of {ACCURACY_MODES}, got {accuracy!r}")


def map_for(row: Mapping[str, Any], fmt: str) -> float:
    """The mAP a target reading ``fmt`` files sees: its own if measured, else the Keras one."""
    return float(row.get(f"mAP_{fmt}", row.get("mAP_keras", float("nan"))))


def time_model(target: Target, path: Path, raw_log: Path, warmup: int,
               runs: int) -> dict[str, Any]:
    """Latency of one model file on ``target`` through the project's one timing entry point;
    returns the LatencyStats fields (ms)."""
    return dict(run_benchmark(target, path, raw_log, warmup=warmup, runs=runs)["stats"])


LATENCY_FIELDS = ("median_ms", "mean_ms", "p90_ms", "std_ms", "min_ms", "max_ms")


def time_models(target: Target, paths: Sequence[Path], raw_dir: Path, warmup: int, runs: int,
                passes: int, seed: int,
                log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Time every model file on ``target`` in ``passes`` passes, each in a fresh random order
    (seeded), so slow drift of a shared machine spreads over all points instead of looking like
    a trend or a step. Each statistic is the median over passes of that pass's value; the
    per-pass medians are kept under ``pass_medians_ms``."""
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    rng = np.random.default_rng(seed)
    per_file: list[list[dict[str, Any]]] = [[] for _ in paths]
    for p in range(passes):
        for i in rng.permutation(len(paths)):
            path = Path(paths[i])
            raw = Path(raw_dir) / f"{path.parent.name}_{path.stem}_p{p + 1}.log"
            per_file[i].append(time_model(target, path, raw, warmup, runs))
        if log:
            log(f"timing pass {p + 1}/{passes} on {target.name} done ({len(paths)} models)")
    out = []
    for stats in per_file:
        agg = {k: float(np.median([s[k] for s in stats])) if all(
            s.get(k) is not None for s in stats) else None for k in LATENCY_FIELDS}
        agg["pass_medians_ms"] = [s["median_ms"] for s in stats]
        out.append(agg)
    return out
