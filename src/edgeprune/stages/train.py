"""Stage: train a base detector from scratch."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeprune import config as C
from edgeprune.compression.size import file_sizes, keras_counts
from edgeprune.data.voc import load_sets, read_imageset
from edgeprune.detection.dataset import detection_files
from edgeprune.detection.model_io import save_keras, save_spec
from edgeprune.detection.models import build_detector
from edgeprune.detection.models.registry import anchors_for
from edgeprune.detection.train import (
    checkpoint_dir_for,
    clear_checkpoints,
    fit_batch_size,
    recalibrate,
    resolve_device,
    train,
)
from edgeprune.fileio import write_json
from edgeprune.jobs import JobLog
from edgeprune.reporting.tracking import DatasetInfo, RunRecord, keras_model
from edgeprune.tfenv import setup


def load_train_data(config: Mapping[str, Any], input_size: tuple[int, int], log: JobLog) -> Any:
    """Training split, read from disk and resized to the detector input image by image by the
    training input pipeline."""
    data = config["data"]
    anns = load_sets(C.devkit_root(config), data["train_sets"])
    log(f"{len(anns)} training images from {data['train_sets']}")
    return detection_files(anns, C.classes(config), input_size,
                           keep_difficult=bool(data.get("keep_difficult", False)))


def train_fingerprint(config: Mapping[str, Any], data: Any, tcfg: Any, **extra: Any) -> dict:
    """What a training run's checkpoints belong to: the training settings, the detector, the
    data (image list) and ``extra`` (e.g. the model fine-tuned); a checkpoint of another
    fingerprint is never resumed."""
    return {"train": tcfg.__dict__, "seed": config.get("seed", 0),
            "images": [str(p) for p in data.paths], **extra}


def dataset_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """Dataset description for MLflow params."""
    data = config["data"]
    return {"source": data["source"], "train_sets": ",".join(data["train_sets"]),
            "test_sets": ",".join(data["test_sets"]), "classes": ",".join(C.classes(config))}


def dataset_info(config: Mapping[str, Any], context: str) -> DatasetInfo:
    """The dataset a job reads, for MLflow's ``log_input``: named after the source and the
    image sets of ``context`` (``train`` or ``test``), with a digest of every split's image ids
    and annotation files and each split's size (train, val, test)."""
    data = config["data"]
    root = C.devkit_root(config)
    sets = {"train": data["train_sets"], "val": data.get("val_sets") or [],
            "test": data["test_sets"]}
    digest = hashlib.sha256()
    sizes = {}
    for split, names in sets.items():
        sizes[split] = 0
        for name in names:
            year_dir, _, part = name.partition("/")
            ids = read_imageset(root / year_dir / "ImageSets" / "Main" / f"{part}.txt")
            sizes[split] += len(ids)
            digest.update(f"{split}:{name}\n".encode())
            for image_id in ids:
                xml = root / year_dir / "Annotations" / f"{image_id}.xml"
                digest.update(image_id.encode() + (xml.read_bytes() if xml.is_file() else b""))
    used = sets["test"] if context == "test" else sets["train"]
    return DatasetInfo(name=f"{data['source']}:{'+'.join(used)}",
                       digest=digest.hexdigest()[:16], source=str(root.resolve()),
                       splits=sizes, context=context)


def train_base(config: Mapping[str, Any], arch: str, model_out: str | Path,
               spec_out: str | Path, metrics_out: str | Path, threads: int,
               log: JobLog) -> RunRecord:
    """Train ``detectors.<arch>`` from scratch; write model, spec and metrics JSON."""
    seed = int(config.get("seed", 0))
    tf, keras = setup(threads, seed)
    spec = C.detector_spec(config, arch)
    tcfg = C.train_config(config, arch)
    device = resolve_device(tf, tcfg.device)
    # Mixed precision only where it is safe: training from scratch on a GPU (float16 compute,
    # float32 weights and loss, dynamic loss scaling); the saved model is float32.
    mixed = device == "gpu"
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    model = build_detector(spec, keras)
    anchors = anchors_for(spec, model)
    log(f"{arch}: {model.count_params():,} parameters, {len(anchors)} anchors, "
        f"input {spec.input_size}, on {device}" + (" (mixed float16)" if mixed else ""))
    data = load_train_data(config, spec.input_size, log)
    if device == "gpu":
        tcfg = replace(tcfg, batch_size=fit_batch_size(tf, model, spec.input_size,
                                                       tcfg.batch_size, log))
    ckpt = checkpoint_dir_for(model_out)
    t0 = time.perf_counter()
    history = train(model, data, anchors, tcfg, log=log, checkpoint_dir=ckpt,
                    fingerprint=train_fingerprint(config, data, tcfg, spec=spec.to_dict()),
                    mixed_precision=mixed)
    if mixed:  # the same detector in float32, holding the trained (float32) weights
        keras.mixed_precision.set_global_policy("float32")
        trained, model = model, build_detector(spec, keras)
        model.set_weights(trained.get_weights())
    recalibrate(model, data, tcfg, log)
    seconds = time.perf_counter() - t0
    counts = keras_counts(model)  # after training: the non-zero count of the trained weights
    save_keras(model, model_out)
    save_spec(spec, model, spec_out)
    metrics = {**counts, **file_sizes(model_out), "train_seconds": seconds,
               "train_images": len(data), "final_loss": history["loss"][-1]}
    write_json(metrics_out, {"arch": arch, "metrics": metrics, "history": history})
    clear_checkpoints(ckpt)
    return RunRecord(
        experiment=config["mlflow"]["experiment"], run_name=f"{arch}/base/train",
        params={"stage": "train", "arch": arch, "input_size": list(spec.input_size),
                "width_multiplier": spec.width_multiplier, "widths": spec.to_dict()["widths"],
                "seed": seed, "threads": threads, "dataset": dataset_params(config),
                "device": device, "mixed_precision": mixed, "format": "keras",
                "precision": "float32",
                "train": {k: v for k, v in tcfg.__dict__.items() if k != "augment"}},
        metrics=metrics, history={k: v for k, v in history.items() if k != "seconds"},
        tags={"stage": "train", "arch": arch, "variant": "base"},
        artifacts=[Path(model_out), Path(spec_out)],
        model=Path(model_out), dataset=dataset_info(config, "train"),
        keras_model=keras_model(model, model_out, [spec_out]),
    )
