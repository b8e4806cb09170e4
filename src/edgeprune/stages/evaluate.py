"""Stage: evaluate any model artifact (Keras, TFLite, OpenVINO IR) with the one VOC evaluator."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeprune import config as C
from edgeprune.dataset import load_sets
from edgeprune.detect import make_runner, run_batched, to_detections
from edgeprune.evaluate import evaluate, format_result, read_detections, write_detections
from edgeprune.fileio import write_json
from edgeprune.jobs import JobLog
from edgeprune.model_io import anchors_from_spec, load_spec
from edgeprune.tracking import RunRecord
from edgeprune.voc import load_images


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
    iou = float(config["evaluation"]["iou_threshold"])
    results = {m: evaluate(anns, dets, classes, m, iou) for m in ("voc07", "all")}
    for r in results.values():
        log("\n" + format_result(r))
    primary = config["evaluation"]["metric"]
    out = {"arch": arch, "variant": variant, "runtime": runtime, "model": str(model_path),
           "mAP": results[primary].mAP, "mAP_voc07": results["voc07"].mAP,
           "mAP_all": results["all"].mAP, "metric": primary, "test_images": len(anns),
           "inference_seconds": infer_s,
           "per_class": {m: r.to_dict() for m, r in results.items()}}
    write_json(out_json, out)
    ap = {f"AP_{c}": v for c, v in results[primary].per_class_ap.items() if v == v}
    return RunRecord(
        experiment=config["mlflow"]["experiment"], run_name=f"{arch}/{variant}/eval-{runtime}",
        params={"stage": "evaluate", "arch": arch, "variant": variant, "runtime": runtime,
                "metric": primary, "iou_threshold": iou, "test_sets": config["data"]["test_sets"]},
        metrics={"mAP": out["mAP"], "mAP_voc07": out["mAP_voc07"], "mAP_all": out["mAP_all"],
                 "inference_seconds": infer_s, **ap},
        tags={"stage": "evaluate", "arch": arch, "variant": variant, "runtime": runtime},
        artifacts=[Path(out_json)],
    )
