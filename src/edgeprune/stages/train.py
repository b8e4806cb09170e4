"""Stage: train a base detector from scratch."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeprune import config as C
from edgeprune.compression.size import file_sizes, keras_counts
from edgeprune.data.voc import load_sets
from edgeprune.detection.dataset import to_detection_data
from edgeprune.detection.model_io import save_keras, save_spec
from edgeprune.detection.models import build_detector
from edgeprune.detection.models.registry import anchors_for
from edgeprune.detection.train import recalibrate, train
from edgeprune.fileio import write_json
from edgeprune.jobs import JobLog
from edgeprune.reporting.tracking import RunRecord
from edgeprune.tfenv import setup


def load_train_data(config: Mapping[str, Any], input_size: tuple[int, int], log: JobLog) -> Any:
    """Training split resized to the detector input."""
    data = config["data"]
    anns = load_sets(C.devkit_root(config), data["train_sets"])
    log(f"loading {len(anns)} training images from {data['train_sets']}")
    return to_detection_data(anns, C.classes(config), input_size,
                             keep_difficult=bool(data.get("keep_difficult", False)),
                             progress=log.progress("loaded", every=4))


def dataset_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """Dataset description for MLflow params."""
    data = config["data"]
    return {"source": data["source"], "train_sets": ",".join(data["train_sets"]),
            "test_sets": ",".join(data["test_sets"]), "classes": ",".join(C.classes(config))}


def train_base(config: Mapping[str, Any], arch: str, model_out: str | Path,
               spec_out: str | Path, metrics_out: str | Path, threads: int,
               log: JobLog) -> RunRecord:
    """Train ``detectors.<arch>`` from scratch; write model, spec and metrics JSON."""
    seed = int(config.get("seed", 0))
    _, keras = setup(threads, seed)
    spec = C.detector_spec(config, arch)
    model = build_detector(spec, keras)
    anchors = anchors_for(spec, model)
    log(f"{arch}: {model.count_params():,} parameters, {len(anchors)} anchors, "
        f"input {spec.input_size}")
    data = load_train_data(config, spec.input_size, log)
    tcfg = C.train_config(config, arch)
    t0 = time.perf_counter()
    history = train(model, data, anchors, tcfg, log=log)
    recalibrate(model, data, tcfg, log)
    seconds = time.perf_counter() - t0
    counts = keras_counts(model)  # after training: the non-zero count of the trained weights
    save_keras(model, model_out)
    save_spec(spec, model, spec_out)
    metrics = {**counts, **file_sizes(model_out), "train_seconds": seconds,
               "train_images": len(data), "final_loss": history["loss"][-1]}
    write_json(metrics_out, {"arch": arch, "metrics": metrics, "history": history})
    return RunRecord(
        experiment=config["mlflow"]["experiment"], run_name=f"{arch}/base/train",
        params={"stage": "train", "arch": arch, "input_size": list(spec.input_size),
                "width_multiplier": spec.width_multiplier, "widths": spec.to_dict()["widths"],
                "seed": seed, "threads": threads, "dataset": dataset_params(config),
                "train": {k: v for k, v in tcfg.__dict__.items() if k != "augment"}},
        metrics=metrics, history={k: v for k, v in history.items() if k != "seconds"},
        tags={"stage": "train", "arch": arch, "variant": "base"},
        artifacts=[Path(model_out), Path(spec_out)],
    )
