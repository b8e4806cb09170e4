"""Stage: evaluate any model artifact (Keras, TFLite, OpenVINO IR) with the one VOC evaluator."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeprune import config as C
from edgeprune.data.voc import Annotation, load_images, load_sets
from edgeprune.detection.detect import make_runner, run_batched, to_detections
from edgeprune.detection.model_io import anchors_from_spec, load_spec
from edgeprune.fileio import write_json
from edgeprune.jobs import JobLog
from edgeprune.measurement.bootstrap import (
    METHOD,
    MapDifference,
    bootstrap_maps,
    bootstrap_settings,
    paired_difference_from_dirs,
)
from edgeprune.measurement.evaluate import (
    Detections,
    evaluate,
    format_result,
    read_detections,
    write_detections,
)
from edgeprune.reporting.tracking import RunRecord
from edgeprune.stages.train import dataset_info


def evaluate_artifact(config: Mapping[str, Any], arch: str, variant: str, runtime: str,
                      model_path: str | Path, spec_path: str | Path, out_json: str | Path,
                      det_dir: str | Path, threads: int, log: JobLog) -> RunRecord:
    """Detect on the test split with ``runtime``, write comp4 files, score them (VOC07 + all)."""
    spec, raw = load_spec(spec_path)
    anchors = anchors_from_spec(raw)
    classes = C.classes(config)
    anns = load_sets(C.devkit_root(config), config["data"]["test_sets"])
    log(f"evaluating {model_path} ({runtime}) on {len(anns)} test images")
    images = load_images(anns, spec.input_size)
    runner, batch = make_runner(runtime.split("-")[0], Path(model_path), threads)
    t0 = time.perf_counter()
    loc, probs = run_batched(runner, images, batch or config["evaluation"]["batch_size"],
                             progress=log.progress("images"))
    infer_s = time.perf_counter() - t0
    dets = to_detections(anns, loc, probs, anchors, classes, C.postprocess_config(config))
    write_detections(Path(det_dir), dets, classes)
    dets = read_detections(Path(det_dir), classes)
    scores = score_detections(config, anns, dets, classes, log)
    out = {"arch": arch, "variant": variant, "runtime": runtime, "model": str(model_path),
           **scores, "test_images": len(anns), "inference_seconds": infer_s}
    write_json(out_json, out)
    primary = scores["metric"]
    ap = {f"AP_{c}": v for c, v in scores["per_class"][primary]["per_class_ap"].items()
          if v is not None}
    lo, hi = scores["mAP_ci95"]
    return RunRecord(
        experiment=config["mlflow"]["experiment"], run_name=f"{arch}/{variant}/eval-{runtime}",
        params={"stage": "evaluate", "arch": arch, "variant": variant,
                **format_precision(runtime),
                "metric": primary, "iou_threshold": float(config["evaluation"]["iou_threshold"]),
                "test_sets": config["data"]["test_sets"],
                "bootstrap_resamples": scores["bootstrap"]["resamples"],
                "bootstrap_seed": scores["bootstrap"]["seed"]},
        metrics={"mAP": out["mAP"], "mAP_voc07": out["mAP_voc07"], "mAP_all": out["mAP_all"],
                 **_finite({"mAP_ci95_lo": lo, "mAP_ci95_hi": hi}),
                 "evaluate_seconds": infer_s, **ap},
        tags={"stage": "evaluate", "arch": arch, "variant": variant, "runtime": runtime},
        artifacts=[Path(out_json)], source_model=Path(model_path),
        dataset=dataset_info(config, "test"),
    )


#: OpenVINO's precision names in the MLflow vocabulary.
_PRECISION = {"fp32": "float32", "fp16": "float16"}


def format_precision(runtime: str) -> dict[str, str]:
    """MLflow params of an evaluated artifact: ``keras`` -> format keras, precision float32;
    ``tflite-int8`` -> tflite, int8; ``openvino-fp16`` -> openvino, float16."""
    fmt, _, precision = runtime.partition("-")
    return {"format": fmt, "precision": _PRECISION.get(precision, precision or "float32")}


def score_detections(config: Mapping[str, Any], anns: Sequence[Annotation],
                     dets: Detections, classes: Sequence[str],
                     log: Callable[[str], None]) -> dict[str, Any]:
    """The eval JSON's scores: mAP for both VOC metrics (``mAP`` is ``evaluation.metric``), each
    with its 95 % bootstrap interval (``mAP_ci95``, ``mAP_voc07_ci95``, ``mAP_all_ci95``),
    the bootstrap settings (``evaluation.bootstrap`` resamples, top-level ``seed``) and the
    per-class results."""
    iou = float(config["evaluation"]["iou_threshold"])
    results = {m: evaluate(anns, dets, classes, m, iou) for m in ("voc07", "all")}
    for r in results.values():
        log("\n" + format_result(r))
    primary = config["evaluation"]["metric"]
    resamples, seed = bootstrap_settings(config)
    t0 = time.perf_counter()
    ci = {m: i.ci95 for m, i in
          bootstrap_maps(anns, dets, classes, ("voc07", "all"), iou, resamples, seed).items()}
    log(f"bootstrap ({resamples} resamples, seed {seed}, {time.perf_counter() - t0:.1f} s): "
        f"mAP {results[primary].mAP:.4f}, 95% interval [{ci[primary][0]:.4f}, "
        f"{ci[primary][1]:.4f}] ({primary})")
    return {"mAP": results[primary].mAP, "mAP_voc07": results["voc07"].mAP,
            "mAP_all": results["all"].mAP, "mAP_ci95": _interval(ci[primary]),
            "mAP_voc07_ci95": _interval(ci["voc07"]), "mAP_all_ci95": _interval(ci["all"]),
            "bootstrap": {"resamples": resamples, "seed": seed, "method": METHOD},
            "metric": primary,
            "per_class": {m: r.to_dict() for m, r in results.items()}}


def _interval(ci: tuple[float, float]) -> list[float | None]:
    """An interval as a JSON list (NaN, from a test set without ground truth, becomes null)."""
    return [None if v != v else float(v) for v in ci]


def _finite(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """The metrics that are numbers (an interval is null when the test set has no ground
    truth)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and v == v}


def map_pairer(config: Mapping[str, Any], metric: str | None = None,
               results: str | Path = "results") -> Callable[[str | Path, str | Path],
                                                            MapDifference]:
    """A function giving the paired bootstrap difference ``mAP(b) - mAP(a)`` of two evaluated
    variants from the comp4 directories this stage writes
    (``results/eval/<arch>/<variant>/<runtime>_detections``).

    The test set is loaded once; classes, IoU threshold and metric (default
    ``evaluation.metric``) come from the config, resamples from ``evaluation.bootstrap`` and
    the seed from ``seed``, so every difference in a table is drawn on the same image resamples
    as the eval JSONs' intervals.
    """
    anns = load_sets(C.devkit_root(config, results), config["data"]["test_sets"])
    resamples, seed = bootstrap_settings(config)
    classes = C.classes(config)
    chosen = metric or config["evaluation"]["metric"]
    iou = float(config["evaluation"]["iou_threshold"])

    def pair(det_dir_a: str | Path, det_dir_b: str | Path) -> MapDifference:
        return paired_difference_from_dirs(anns, det_dir_a, det_dir_b, classes, chosen, iou,
                                           resamples, seed)

    return pair
