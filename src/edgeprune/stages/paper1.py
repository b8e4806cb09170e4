"""Paper 1 stages: magnitude-pruning sweep with fine-tuning, and TFLite conversion."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune import config as C
from edgeprune.compression.prune import (
    PruneConfig,
    apply_pruning,
    measured_sparsity,
    prunable_layers,
    sparsity_of,
    strip,
    update_step_callback,
)
from edgeprune.compression.quantize import convert
from edgeprune.compression.size import file_sizes, keras_counts
from edgeprune.data.voc import load_images, load_sets
from edgeprune.detection.model_io import load_keras, load_spec, save_keras, save_spec
from edgeprune.detection.models.registry import anchors_for
from edgeprune.detection.train import (
    checkpoint_dir_for,
    clear_checkpoints,
    recalibrate,
    resolve_device,
    steps_per_epoch,
    train,
)
from edgeprune.errors import EdgepruneError
from edgeprune.fileio import write_json
from edgeprune.jobs import JobLog
from edgeprune.reporting.tracking import RunRecord, keras_model, sha256_file
from edgeprune.stages.train import dataset_info, load_train_data, train_fingerprint
from edgeprune.tfenv import setup

#: Variant name of the control: the base detector fine-tuned with the pruning runs' schedule,
#: data and augmentation at sparsity 0 (Table 1 row ``nonprune_ft``).
CONTROL = "control"


def finetune_sparsity(variant: str) -> float:
    """Target sparsity of a fine-tuned variant: 0 for :data:`CONTROL`, else from its name."""
    return 0.0 if variant == CONTROL else sparsity_of(variant)


def prune_config(config: Mapping[str, Any]) -> PruneConfig:
    """PruneConfig from ``paper1.prune``."""
    p = config["paper1"]["prune"]
    return PruneConfig(scope=p["scope"], schedule=p["schedule"],
                       layer_types=tuple(p["layer_types"]), end_fraction=float(p["end_fraction"]),
                       frequency=p.get("frequency"))


def prune_finetune(config: Mapping[str, Any], sparsity: float, variant: str,
                   base_model: str | Path, base_spec: str | Path, model_out: str | Path,
                   spec_out: str | Path, metrics_out: str | Path, threads: int,
                   log: JobLog) -> RunRecord:
    """Prune the base detector to ``sparsity`` while fine-tuning, strip wrappers, verify the
    sparsity reached, and save the model. At sparsity 0 (the control) no layer is wrapped and
    the same fine-tune runs on the dense model: a mask of ones changes nothing."""
    p1 = config["paper1"]
    tf, keras = setup(threads, int(config.get("seed", 0)))
    # The pruning wrappers make the training graph large; Grappler's rewrite of it costs more
    # than it saves over a short fine-tune (about a third of the job on 2 cores).
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    # float32 on any device: tfmot's pruning wrappers are not mixed-precision safe.
    device = resolve_device(tf, C.train_config(config).device)
    spec, _ = load_spec(base_spec)
    arch = spec.arch
    model = load_keras(base_model, keras)
    anchors = anchors_for(spec, model)
    data = load_train_data(config, spec.input_size, log)
    pcfg = prune_config(config)
    epochs = int(p1["prune"]["finetune_epochs"])
    tcfg = C.train_config(config, arch, {
        "epochs": epochs, "warmup_epochs": 0.0,
        "learning_rate": config["train"]["learning_rate"] * p1["prune"]["learning_rate_factor"],
    })
    total_steps = steps_per_epoch(len(data), min(tcfg.batch_size, len(data))) * epochs
    pruned = apply_pruning(model, sparsity, total_steps, pcfg)
    log(f"{variant}: target sparsity {sparsity} ({pcfg.scope}, {pcfg.schedule}) over "
        f"{len(prunable_layers(model, pcfg.layer_types))} {'/'.join(pcfg.layer_types)} layers, "
        f"{epochs} fine-tune epochs ({total_steps} steps)")
    # Checkpoints every epoch (weights, optimizer, pruning step and masks): a killed job
    # resumes after its last epoch.
    ckpt = checkpoint_dir_for(model_out)
    fingerprint = train_fingerprint(config, data, tcfg, sparsity=sparsity, prune=pcfg.__dict__,
                                    base=sha256_file(base_model))
    t0 = time.perf_counter()
    history = train(pruned, data, anchors, tcfg, log=log, callbacks=[update_step_callback()],
                    checkpoint_dir=ckpt, fingerprint=fingerprint)
    seconds = time.perf_counter() - t0
    final = strip(pruned)
    recalibrate(final, data, tcfg, log)
    reached = measured_sparsity(final, prunable_layers(final, pcfg.layer_types))
    log(f"{variant}: sparsity reached {reached['sparsity']:.4f} (target {sparsity})")
    tol = float(p1["prune"]["tolerance"])
    if abs(reached["sparsity"] - sparsity) > tol:
        raise EdgepruneError(
            f"{variant}: pruning reached sparsity {reached['sparsity']:.4f}, not within {tol} of "
            f"the target {sparsity}; raise paper1.prune.finetune_epochs or lower end_fraction")
    save_keras(final, model_out)
    save_spec(spec, final, spec_out, variant=variant, sparsity=sparsity)
    metrics = {**keras_counts(final), **file_sizes(model_out), "target_sparsity": sparsity,
               "sparsity": reached["sparsity"], "finetune_seconds": seconds}
    write_json(metrics_out, {"arch": arch, "variant": variant, "metrics": metrics,
                             "per_layer_sparsity": reached["per_layer"], "history": history})
    clear_checkpoints(ckpt)
    return RunRecord(
        experiment=config["mlflow"]["experiment"], run_name=f"{arch}/{variant}/prune",
        params={"stage": "prune", "arch": arch, "variant": variant,
                "sparsity_target": sparsity, "format": "keras", "precision": "float32",
                "scope": pcfg.scope, "schedule": pcfg.schedule,
                "layer_types": list(pcfg.layer_types), "finetune_epochs": epochs,
                "learning_rate": tcfg.learning_rate, "seed": tcfg.seed, "threads": threads,
                "device": device},
        # MLflow vocabulary: the target is a param, the reached sparsity a metric.
        metrics={**{k: v for k, v in metrics.items() if isinstance(v, int | float)
                    and k not in ("target_sparsity", "sparsity", "finetune_seconds")},
                 "sparsity_reached": reached["sparsity"], "prune_seconds": seconds},
        history={k: v for k, v in history.items() if k != "seconds"},
        tags={"stage": "prune", "arch": arch, "variant": variant},
        artifacts=[Path(model_out), Path(spec_out)],
        model=Path(model_out), source_model=Path(base_model),
        dataset=dataset_info(config, "train"),
        keras_model=keras_model(final, model_out, [spec_out]),
    )


def representative_images(config: Mapping[str, Any], input_size: tuple[int, int],
                          count: int) -> np.ndarray:
    """``count`` training images drawn at random without replacement (seeded from the config's
    ``seed``, so the same config always calibrates on the same images), resized to the model
    input; the whole train split when it has fewer images."""
    anns = load_sets(C.devkit_root(config), config["data"]["train_sets"])
    rng = np.random.default_rng(int(config.get("seed", 0)))
    pick = np.sort(rng.choice(len(anns), size=min(count, len(anns)), replace=False))
    return load_images([anns[i] for i in pick], input_size)


def convert_tflite(config: Mapping[str, Any], variant: str, dtype: str,
                   model_path: str | Path, spec_path: str | Path, out_path: str | Path,
                   threads: int, log: JobLog) -> RunRecord:
    """Convert one Keras variant to a TFLite flatbuffer of ``dtype``."""
    _, keras = setup(threads, int(config.get("seed", 0)))
    spec, _ = load_spec(spec_path)
    model = load_keras(model_path, keras)
    rep = None
    if dtype == "int8":
        n = int(config["paper1"]["representative_images"])
        rep = representative_images(config, spec.input_size, n)
        log(f"int8 calibration on {len(rep)} training images")
    t0 = time.perf_counter()
    size = convert(model, dtype, out_path, rep)
    seconds = time.perf_counter() - t0
    sizes = file_sizes(out_path)
    log(f"{variant} -> {dtype}: {size / 1e6:.2f} MB in {seconds:.1f}s")
    return RunRecord(
        experiment=config["mlflow"]["experiment"],
        run_name=f"{spec.arch}/{variant}/tflite-{dtype}",
        params={"stage": "convert", "arch": spec.arch, "variant": variant, "format": "tflite",
                "precision": dtype},
        metrics={**sizes, "convert_seconds": seconds},
        tags={"stage": "convert", "arch": spec.arch, "variant": variant, "precision": dtype},
        artifacts=[Path(out_path)], model=Path(out_path), source_model=Path(model_path),
    )
