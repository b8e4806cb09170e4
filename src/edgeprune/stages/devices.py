"""Stages: latency on a benchmark target, application FPS over a video, and the demo clip.

Latency is measured by comparison: all models of paper 1's Table 2 are timed together on one
target, interleaved, each with a 95 % interval (:func:`latency_compare`). Each measurement names
its target in the output JSON, in the MLflow params (``target``,
``transport``, ``runtime``) and in the run name, and records the device's identity (model, OS,
kernel, runtime and version, threads, delegates), so result tables can put one column per target.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from edgeprune import config as C
from edgeprune.data.video import make_demo_video
from edgeprune.detection.boxes import PostprocessConfig
from edgeprune.detection.model_io import anchors_from_spec, load_spec
from edgeprune.errors import ConfigError, EdgepruneError
from edgeprune.fileio import read_json, write_bytes, write_json
from edgeprune.jobs import JobLog
from edgeprune.measurement.app_fps import run_app_on_target
from edgeprune.measurement.compare import compare_on_target, difference, settings_for
from edgeprune.measurement.targets import Target, get_target, parse_targets
from edgeprune.reporting.tracking import RunRecord
from edgeprune.stages.evaluate import format_precision

__all__ = [
    "APP_DEFAULTS",
    "AppSettings",
    "app_fps",
    "app_postprocess",
    "app_settings",
    "demo_video",
    "device_resource",
    "latency_compare",
    "pivot_by_target",
]

APP_DEFAULTS: dict[str, Any] = {"video": None, "frames": 100, "warmup": 10, "fps": 30,
                                "size": [240, 320], "score_threshold": 0.5}
_RAW_TAIL_CHARS = 4000


@dataclass(frozen=True)
class AppSettings:
    """The ``app:`` config section: the clip and how much of it is timed."""

    video: str | None
    frames: int
    warmup: int
    fps: float
    size: tuple[int, int]
    score_threshold: float | None


def _positive_int(section: Mapping[str, Any], key: str, minimum: int) -> int:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config key 'app.{key}': expected an integer >= {minimum}, "
                          f"got {value!r}")
    return value


def app_settings(config: Mapping[str, Any]) -> AppSettings:
    """Validated ``app`` section with defaults (:data:`APP_DEFAULTS`) for absent keys."""
    raw = config.get("app") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key 'app': expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - set(APP_DEFAULTS))
    if unknown:
        raise ConfigError(f"config key 'app.{unknown[0]}': unknown; allowed keys are "
                          f"{', '.join(APP_DEFAULTS)}")
    section = {**APP_DEFAULTS, **raw}
    video = section["video"]
    if video is not None and (not isinstance(video, str) or not video.strip()):
        raise ConfigError(f"config key 'app.video': expected null or a file path, got {video!r}")
    fps = section["fps"]
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 1000:
        raise ConfigError(f"config key 'app.fps': expected a number in (0, 1000], got {fps!r}")
    size = section["size"]
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in size)):
        raise ConfigError(f"config key 'app.size': expected [height, width], integers >= 16, "
                          f"got {size!r}")
    threshold = section["score_threshold"]
    if threshold is not None and (isinstance(threshold, bool)
                                  or not isinstance(threshold, int | float)
                                  or not 0 <= threshold <= 1):
        raise ConfigError(f"config key 'app.score_threshold': expected null or a number in "
                          f"[0, 1], got {threshold!r}")
    return AppSettings(video=video, frames=_positive_int(section, "frames", 1),
                       warmup=_positive_int(section, "warmup", 0), fps=float(fps),
                       size=(int(size[0]), int(size[1])),
                       score_threshold=None if threshold is None else float(threshold))


def app_postprocess(config: Mapping[str, Any]) -> PostprocessConfig:
    """The ``postprocess`` section with the application's own score threshold, if it has one.

    Evaluation keeps nearly every box (mAP needs the low-score tail); an application shows only
    confident detections, and NMS time depends strongly on how many boxes pass the threshold.
    """
    threshold = app_settings(config).score_threshold
    base = C.postprocess_config(config)
    return base if threshold is None else replace(base, score_threshold=threshold)


def device_resource(target: Target) -> str:
    """Snakemake resource name of the physical machine a target runs on.

    Targets on one machine share it (``host-litert`` and ``host-openvino`` are both
    ``device_host``; two targets on one Raspberry Pi share ``device_ssh_<host>_<port>``), so with
    a limit of 1 Snakemake does not start two timing jobs on one device at once. The lock on the
    device itself (:func:`edgeprune.measurement.devices.bench.device_session`) guarantees it
    whatever the host string, checkout or ``--resources`` override.
    """
    if target.transport == "local":
        key = "host"
    elif target.transport == "adb":
        key = f"adb_{target.serial}"
    else:
        key = f"ssh_{target.host}_{target.port}"
    return "device_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


def _target(config: Mapping[str, Any], name: str) -> Target:
    return get_target(parse_targets(config), name)


def _experiment(config: Mapping[str, Any]) -> str:
    return str((config.get("mlflow") or {}).get("experiment", "edgeprune"))


def _target_params(target: Target, identity: Mapping[str, Any]) -> dict[str, Any]:
    return {"target": target.name, "transport": target.transport, "runtime": target.runtime,
            "device": dict(identity)}


def _keep_raw_output(raw_log: Path, log: JobLog) -> None:
    """Copy the tail of a failed tool's output into the job log too."""
    if raw_log.is_file():
        text = raw_log.read_text(errors="replace")
        log(f"raw output ({raw_log}, last {_RAW_TAIL_CHARS} characters):\n"
            f"{text[-_RAW_TAIL_CHARS:]}")


def _publish_raw(kept: Path, raw_log: Path) -> None:
    """Copy the kept raw output to the job's ``raw`` output once the job has succeeded."""
    if kept != raw_log:
        write_bytes(raw_log, kept.read_bytes())


def _label_parts(label: str) -> tuple[str, str]:
    """``prune50_float32`` -> (``prune50``, ``float32``)."""
    variant, _, dtype = label.partition("_")
    return variant, dtype


def latency_compare(config: Mapping[str, Any], target: str, arch: str,
                    models: Sequence[str | Path], out_json: str | Path, raw_log: str | Path,
                    log: JobLog, kept_log: str | Path | None = None) -> RunRecord:
    """Time all ``models`` (``<variant>_<dtype>.tflite``, paper 1 Table 2) together on one
    target, interleaved (:mod:`edgeprune.measurement.compare`), with the target's ``seconds``,
    ``block_runs``, ``blocks_per_group`` and ``warmup`` and the config's ``seed``.

    The JSON is :meth:`Comparison.to_dict` (each model's median and 95 % interval, differences
    to the first model, settings, identity with the threads used, interleaving orders) plus
    ``arch``, ``labels`` (``<variant>_<dtype>`` per model) and ``vs_float32``: each model's
    paired difference to its variant's float32 model, with its interval.

    The device's output is first written to ``kept_log`` (a log file, which Snakemake keeps
    when the job fails; error messages point there) and copied to ``raw_log`` on success.
    """
    spec = _target(config, target)
    settings = settings_for(spec, seed=int(config.get("seed", 0)))
    labels = [Path(m).stem for m in models]
    log(f"latency of {len(labels)} models on target '{target}' ({spec.address}, {spec.runtime}), "
        f"interleaved for {settings.seconds:g} s, seed {settings.seed}: {', '.join(labels)}")
    next_note = [10.0]

    def progress(groups: int, elapsed: float) -> None:
        if elapsed >= next_note[0]:
            log(f"{groups} groups timed, {elapsed:.0f} of {settings.seconds:g} s")
            next_note[0] = elapsed + 10.0

    kept = Path(kept_log or raw_log)
    try:
        comparison = compare_on_target(spec, models, settings, kept, progress=progress)
    except EdgepruneError:
        _keep_raw_output(kept, log)
        raise
    _publish_raw(kept, Path(raw_log))
    paths = [m.path for m in comparison.models]
    vs_float32: dict[str, dict[str, Any]] = {}
    for i, label in enumerate(labels):
        variant, dtype = _label_parts(label)
        ref = f"{variant}_float32"
        if dtype != "float32" and ref in labels:
            vs_float32[label] = difference(comparison.raw, paths, i, labels.index(ref),
                                           settings.resamples, settings.seed).to_dict()
    result = {**comparison.to_dict(), "arch": arch, "labels": labels, "vs_float32": vs_float32}
    write_json(out_json, result)
    metrics: dict[str, float] = {}
    for label, model in zip(labels, comparison.models, strict=True):
        metrics.update({f"{label}_median_ms": model.median_ms,
                        f"{label}_ci95_lo_ms": model.ci95_ms[0],
                        f"{label}_ci95_hi_ms": model.ci95_ms[1],
                        f"{label}_fps_inference": model.fps})
        line = f"{label}: {model.median_ms:.4f} ms [{model.ci95_ms[0]:.4f}, {model.ci95_ms[1]:.4f}]"
        if label in vs_float32:
            d = vs_float32[label]
            metrics[f"{label}_vs_float32_pct"] = d["diff_pct"]
            lo, hi = d["ci95_pct"]
            words = "significant" if d["significant"] else "within noise"
            line += f", vs float32 {d['diff_pct']:+.2f} % [{lo:+.2f}, {hi:+.2f}] ({words})"
        log(line)
    identity = comparison.identity
    recorded = comparison.settings
    return RunRecord(
        experiment=_experiment(config),
        run_name=f"{arch}/latency-{target}",
        params={"stage": "latency", "arch": arch, **_target_params(spec, identity),
                "threads": identity.get("threads"), "threads_used": identity.get("threads_used"),
                "seed": settings.seed, "seconds": settings.seconds,
                "block_runs": recorded.get("block_runs"),
                "blocks_per_group": recorded.get("blocks_per_group"),
                "warmup": recorded.get("warmup"), "groups": len(comparison.raw["groups"]),
                "models": labels},
        metrics=metrics,
        tags={"stage": "latency", "arch": arch, "target": target},
        artifacts=[Path(out_json), Path(raw_log)],
    )


def _app_threads(spec: Target, threads: int | None) -> int | None:
    """The target's threads; on this machine the job's threads when the target sets none."""
    if spec.threads is not None or spec.transport != "local":
        return spec.threads
    return threads


def app_fps(config: Mapping[str, Any], target: str, arch: str, variant: str, dtype: str,
            model_path: str | Path, spec_path: str | Path, video_path: str | Path,
            out_json: str | Path, raw_log: str | Path, threads: int | None,
            log: JobLog, kept_log: str | Path | None = None) -> RunRecord:
    """Application FPS of one model on one target over the clip; write its JSON. The raw
    output goes to ``kept_log`` first (see :func:`latency_compare`)."""
    spec = _target(config, target)
    app = app_settings(config)
    detector, raw_spec = load_spec(spec_path)
    log(f"application FPS of {model_path} on target '{target}' ({spec.address}) over "
        f"{video_path}: {app.warmup} warm-up + up to {app.frames} timed frames")
    kept = Path(kept_log or raw_log)
    try:
        result = run_app_on_target(
            spec, model_path, anchors_from_spec(raw_spec), video_path, kept,
            detector.input_size, detector.num_classes, app_postprocess(config),
            warmup_frames=app.warmup, max_frames=app.frames,
            threads=_app_threads(spec, threads))
    except EdgepruneError:
        _keep_raw_output(kept, log)
        raise
    _publish_raw(kept, Path(raw_log))
    result.update(arch=arch, variant=variant, dtype=dtype, raw_log=str(raw_log))
    write_json(out_json, result)
    stages = result["stages"]
    log(f"{target}: {result['frames']} frames at {result['fps']:.2f} FPS; per frame (median ms) "
        + ", ".join(f"{k} {v['median_ms']:.3f}" for k, v in stages.items()))
    metrics = {"fps_app": result["fps"], "frames": result["frames"],
               "app_seconds": result["wall_s"],
               "detections_per_frame": result["detections_per_frame"]}
    for stage, stats in stages.items():
        metrics[f"{stage}_median_ms"] = stats["median_ms"]
        metrics[f"{stage}_mean_ms"] = stats["mean_ms"]
    return RunRecord(
        experiment=_experiment(config),
        run_name=f"{arch}/{variant}/app-{target}-{dtype}",
        params={"stage": "app_fps", "arch": arch, "variant": variant,
                **format_precision(("openvino-" if Path(model_path).suffix == ".xml"
                                    else "tflite-") + dtype),
                **_target_params(spec, result["identity"]), "engine": result["engine"],
                "video": str(video_path), "video_frames": result["video"]["frames"],
                "warmup_frames": app.warmup, "max_frames": app.frames,
                "threads": result["settings"]["threads"],
                "input_size": list(detector.input_size),
                "postprocess": result["settings"]["postprocess"]},
        metrics=metrics,
        tags={"stage": "app_fps", "arch": arch, "variant": variant, "precision": dtype,
              "target": target},
        artifacts=[Path(out_json), Path(raw_log)], source_model=Path(model_path),
    )


def demo_video(config: Mapping[str, Any], out_path: str | Path, log: JobLog) -> dict[str, Any]:
    """Write the demo clip from the embedded test split (warm-up + timed frames long)."""
    app = app_settings(config)
    sets = config["data"]["test_sets"]
    n_frames = app.warmup + app.frames
    log(f"demo video: {n_frames} frames of {app.size[1]}x{app.size[0]} at {app.fps:g} FPS "
        f"from {sets}")
    info = make_demo_video(C.devkit_root(config), sets, out_path, n_frames, app.fps, app.size,
                           seed=int(config.get("seed", 0)))
    return {**info.to_dict(), "settings": asdict(app)}


def pivot_by_target(json_paths: Sequence[str | Path], value: str) -> pd.DataFrame:
    """One row per (arch, variant, dtype), one column per target, from result JSONs.

    ``value`` is a dotted key into each JSON, e.g. ``stats.median_ms`` (latency) or ``fps``
    (application FPS). Targets appear in the order of ``json_paths``.
    """
    rows = []
    for path in json_paths:
        data = read_json(path)
        cell: Any = data
        for part in value.split("."):
            if not isinstance(cell, Mapping) or part not in cell:
                raise KeyError(f"{path}: no key {value!r} (missing {part!r})")
            cell = cell[part]
        rows.append({"arch": data["arch"], "variant": data["variant"], "dtype": data["dtype"],
                     "target": data["target"], value: cell})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = list(dict.fromkeys(frame["target"]))
    wide = frame.pivot_table(index=["arch", "variant", "dtype"], columns="target", values=value,
                             aggfunc="first", sort=False)
    return wide.reindex(columns=order).reset_index().rename_axis(columns=None)
