"""Application FPS: the detector as an application runs it, frame by frame over a video.

Per frame the loop reads the JPEG bytes from the clip, decodes them (Pillow), resizes the image to
the model input (bilinear, as for evaluation), runs the model and turns its raw outputs into
detections (box decoding + per-class NMS, :func:`edgeprune.detection.boxes.postprocess`). Each
stage is timed
separately; FPS is timed frames divided by the wall-clock time from the first timed frame to the
end of the last, so it includes everything an application would pay for.

:func:`run_app` works with any :data:`edgeprune.detection.detect.Runner` in this process (Keras,
LiteRT,
OpenVINO). :func:`run_app_on_target` measures a configured target: in this process for ``local``
targets, or over SSH with ``devices/remote_app.py`` -- the same loop in a standalone script that
is copied to the board with ``edgeprune/detection/boxes.py`` (the box decoding and NMS this
process uses too), the model, the anchors and the clip's frames as a plain tar of JPEG files
(:func:`edgeprune.data.video.write_frame_archive`). A clip in another codec than Motion-JPEG is
re-encoded as JPEG once, before anything is timed, so the decode stage always times JPEG
decoding. adb targets (Android) have no Python to run it; their FPS comes from
``benchmark_model`` (latency results).
"""

from __future__ import annotations

import io
import json
import platform
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from edgeprune.data.video import jpeg_clip, open_video, probe_video, write_frame_archive
from edgeprune.detection import boxes
from edgeprune.detection.boxes import DEFAULT_VARIANCES, PostprocessConfig, postprocess
from edgeprune.errors import DataError, TargetError
from edgeprune.fileio import write_text
from edgeprune.measurement.devices.bench import device_session, staged_name
from edgeprune.measurement.devices.parsers import last_json_line
from edgeprune.measurement.devices.transport import Transport, local_sha256, transport_for
from edgeprune.measurement.latency import summarize
from edgeprune.measurement.targets import SSH_DEFAULT_PYTHON, Target

__all__ = [
    "BOARD_FILES",
    "ENGINES",
    "REMOTE_APP",
    "STAGES",
    "require_enabled",
    "run_app",
    "run_app_on_target",
    "summarize_app",
]

REMOTE_APP = Path(__file__).with_name("devices") / "remote_app.py"
REMOTE_RUNNER = REMOTE_APP.with_name("remote_runner.py")  # runtime loaders remote_app imports
#: The files of the board-side application, by name in the target's work directory:
#: remote_app.py imports remote_runner.py (runtime loaders) and boxes.py -- the host's own
#: edgeprune/detection/boxes.py, so host and board decode boxes with the same code.
BOARD_FILES = {"remote_app.py": REMOTE_APP, "remote_runner.py": REMOTE_RUNNER,
               "boxes.py": Path(boxes.__file__)}
#: Timed stages of one frame, in order; ``frame`` is their sum as one measurement.
STAGES = ("read", "decode", "resize", "inference", "postprocess")
#: Which inference engine the application uses for each target runtime.
ENGINES = {"litert-python": "litert", "benchmark_model": "litert", "openvino": "openvino",
           "benchmark_app": "openvino"}
DEFAULT_POSTPROCESS = PostprocessConfig()

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- the loop


def _decode(jpeg: bytes, where: str) -> Image.Image:
    """Decode JPEG bytes into an RGB image (fully, not lazily)."""
    try:
        image = Image.open(io.BytesIO(jpeg))
        image.load()
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: cannot decode JPEG frame ({exc})") from None
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_input(image: Image.Image, input_size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (height, width) and a float32 batch of one, pixel values 0..255."""
    height, width = input_size
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)[None]


def _ms(start_ns: int, end_ns: int) -> float:
    """Elapsed milliseconds, at least one nanosecond (a stage below timer resolution)."""
    return max(end_ns - start_ns, 1) / 1e6


def summarize_app(samples_ms: Mapping[str, Sequence[float]], wall_s: float, detections: int,
                  warmup_frames: int) -> dict[str, Any]:
    """Frames, FPS and per-stage statistics from per-frame stage samples (ms)."""
    frames = len(samples_ms["frame"])
    if frames == 0 or wall_s <= 0:
        raise ValueError(f"no timed frames (frames={frames}, wall_s={wall_s})")
    return {
        "frames": frames,
        "warmup_frames": warmup_frames,
        "wall_s": wall_s,
        "fps": frames / wall_s,
        "detections": detections,
        "detections_per_frame": detections / frames,
        "stages": {name: summarize(values).to_dict() for name, values in samples_ms.items()},
        "samples_ms": {name: list(values) for name, values in samples_ms.items()},
    }


def _check_settings(warmup_frames: int, max_frames: int | None) -> None:
    if warmup_frames < 0 or (max_frames is not None and max_frames < 1):
        raise ValueError(f"warmup_frames must be >= 0 and max_frames >= 1 or None, got "
                         f"{warmup_frames} and {max_frames}")


def _check_length(video: Path, available: int, warmup_frames: int) -> None:
    if available <= warmup_frames:
        raise DataError(f"{video}: {available} frame(s), but {warmup_frames} warm-up frame(s) "
                        "and at least one timed frame are needed; use a longer clip or fewer "
                        "warm-up frames (app.warmup)")


def run_app(runner: Runner, video_path: str | Path, input_size: tuple[int, int],
            anchors: np.ndarray, pp_cfg: PostprocessConfig = DEFAULT_POSTPROCESS,
            warmup_frames: int = 10, max_frames: int | None = None,
            variances: Sequence[float] = DEFAULT_VARIANCES) -> dict[str, Any]:
    """Run the detector application over a clip in this process and time it.

    The first ``warmup_frames`` frames go through the whole loop untimed; then up to
    ``max_frames`` frames (all remaining when None) are timed. A clip in another codec than
    Motion-JPEG is first re-encoded as JPEG (:func:`edgeprune.data.video.jpeg_clip`, untimed).
    Returns :func:`summarize_app`'s dict plus ``video`` (the clip's metadata) and ``input_size``.
    """
    _check_settings(warmup_frames, max_frames)
    video = Path(video_path)
    source = probe_video(video)
    _check_length(video, source.frames, warmup_frames)
    with tempfile.TemporaryDirectory(prefix="edgeprune-clip-") as scratch, \
            jpeg_clip(video, scratch) as clip:
        info, frames = open_video(clip)
        result = _loop(runner, frames, info.frames, video, input_size, anchors, pp_cfg,
                       warmup_frames, max_frames, variances)
    result.update(video=source.to_dict(), input_size=list(input_size))
    return result


def _loop(runner: Runner, frames: Any, available: int, video: Path,
          input_size: tuple[int, int], anchors: np.ndarray, pp_cfg: PostprocessConfig,
          warmup_frames: int, max_frames: int | None, variances: Sequence[float]
          ) -> dict[str, Any]:
    """The timed loop of :func:`run_app` over an iterator of JPEG frames."""
    samples: dict[str, list[float]] = {name: [] for name in (*STAGES, "frame")}
    detections = 0
    wall_start = 0
    try:
        for index in range(available if max_frames is None else warmup_frames + max_frames):
            if index == warmup_frames:
                wall_start = time.perf_counter_ns()
            t0 = time.perf_counter_ns()
            jpeg = next(frames, None)
            if jpeg is None:
                break
            t1 = time.perf_counter_ns()
            image = _decode(jpeg, f"{video} frame {index}")
            t2 = time.perf_counter_ns()
            batch = _to_input(image, input_size)
            t3 = time.perf_counter_ns()
            loc, probs = runner(batch)
            t4 = time.perf_counter_ns()
            _, scores, _ = postprocess(np.asarray(loc)[0], np.asarray(probs)[0], anchors, pp_cfg,
                                       variances)
            t5 = time.perf_counter_ns()
            if index >= warmup_frames:
                for name, (a, b) in zip((*STAGES, "frame"),
                                        ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5),
                                         (t0, t5)), strict=True):
                    samples[name].append(_ms(a, b))
                detections += int(scores.size)
        wall_s = (time.perf_counter_ns() - wall_start) / 1e9
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # releases the file when the loop stops before the end of the clip
    return summarize_app(samples, wall_s, detections, warmup_frames)


# --------------------------------------------------------------------------- targets


def require_enabled(target: Target) -> None:
    """TargetError for a disabled target (the same message as a latency benchmark gives)."""
    if not target.enabled:
        raise TargetError(
            f"target '{target.name}' is disabled in config (targets.{target.name}.enabled: false)"
        )


def _check_app_target(target: Target) -> None:
    require_enabled(target)
    if target.transport == "adb":
        raise TargetError(
            f"target '{target.name}' ({target.address}): application FPS needs Python on the "
            "device, which adb targets do not have; use the FPS column of the benchmark_model "
            f"latency result (results/latency/{target.name}/...) for adb targets"
        )


def _local_runner(target: Target, model: Path, threads: int | None
                  ) -> tuple[Runner, dict[str, Any]]:
    """An in-process runner for a local target and what identifies it."""
    if ENGINES[target.runtime] == "litert":
        from edgeprune.detection.detect import class_probabilities
        from edgeprune.measurement.latency import LiteRTRunner, litert_version

        xnnpack = target.delegates.xnnpack if target.delegates is not None else True
        lite = LiteRTRunner(model, num_threads=threads, use_xnnpack=xnnpack)

        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = lite.invoke(batch)
            return out["loc"], class_probabilities(out)  # TFLite files end at the logits

        return run, {"runtime": "ai-edge-litert", "runtime_version": litert_version(),
                     "delegate": "xnnpack" if xnnpack else "none"}
    if target.device not in (None, "CPU"):
        raise TargetError(f"target '{target.name}' (local host): application FPS on this machine "
                          f"runs OpenVINO on CPU only, not {target.device}")
    import openvino

    from edgeprune.detection.detect import make_runner

    runner, _ = make_runner("openvino", model, threads or 0)  # 0: OpenVINO chooses
    return runner, {"runtime": "openvino", "runtime_version": openvino.get_version(),
                    "openvino_device": "CPU"}


def _run_local(target: Target, model: Path, anchors: np.ndarray, video: Path, raw_log: Path,
               settings: dict[str, Any]) -> dict[str, Any]:
    threads = settings["threads"]
    runner, runtime = _local_runner(target, model, threads)
    result = run_app(runner, video, settings["input_size"], anchors, settings["pp_cfg"],
                     settings["warmup_frames"], settings["max_frames"])
    write_text(raw_log, json.dumps({"edgeprune_app": 1, **runtime, **result}) + "\n")
    identity = {**transport_for(target).identity(), **runtime, "threads": threads,
                "python": platform.python_version()}
    return {**result, "identity": identity, "command": None, "pushed": []}


_SHA256_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.*)$")


def _stage_files(transport: Transport, workdir: str, files: Mapping[str, Path]
                 ) -> tuple[dict[str, str], list[str]]:
    """Copy ``{path under workdir: local file}`` to the target, skipping identical copies.

    All remote checksums come from one ``sha256sum`` call (every SSH connection costs a
    handshake). Returns the remote path of each file and the files actually copied.
    """
    remote = {rel: str(PurePosixPath(workdir, rel)) for rel in files}
    wanted = {}
    for rel, local in files.items():
        digest = local_sha256(local)
        if digest is None:
            raise FileNotFoundError(f"cannot copy {local} to the target: no such file")
        wanted[rel] = digest
    listing = transport.run(["sha256sum", *remote.values()], timeout=120)  # rc 1 if any missing
    present = {}
    for line in listing.stdout.splitlines():
        match = _SHA256_LINE.match(line)
        if match:
            present[match.group(2)] = match.group(1)
    pushed = []
    for rel, local in files.items():
        if present.get(remote[rel]) != wanted[rel]:
            transport.push(local, remote[rel])
            pushed.append(remote[rel])
    return remote, pushed


def _files_to_copy(model: Path, anchors_file: Path, clip: Path) -> dict[str, Path]:
    """What the remote script needs, by path under the target's work directory."""
    name = PurePosixPath(staged_name(model))  # models live under their checksum
    files = {**BOARD_FILES, f"models/{name}": model,
             f"app/{anchors_file.name}": anchors_file, f"videos/{clip.name}": clip}
    if model.suffix == ".xml":  # OpenVINO IR: weights beside the graph
        files[f"models/{name.with_suffix('.bin')}"] = model.with_suffix(".bin")
    return files


def _remote_argv(target: Target, remote: Mapping[str, str], model: Path, anchors_file: Path,
                 clip: Path, settings: Mapping[str, Any]) -> list[str]:
    cfg: PostprocessConfig = settings["pp_cfg"]
    height, width = settings["input_size"]
    argv = [target.python or SSH_DEFAULT_PYTHON, remote["remote_app.py"],
            "--runtime", ENGINES[target.runtime],
            "--model", remote[f"models/{staged_name(model)}"],
            "--anchors", remote[f"app/{anchors_file.name}"],
            "--clip", remote[f"videos/{clip.name}"],
            "--input-size", str(height), str(width),
            "--num-classes", str(settings["num_classes"]),
            "--warmup", str(settings["warmup_frames"]),
            "--score-threshold", repr(cfg.score_threshold),
            "--iou-threshold", repr(cfg.iou_threshold),
            "--max-per-class", str(cfg.max_per_class),
            "--max-total", str(cfg.max_total)]
    if settings["max_frames"] is not None:
        argv += ["--max-frames", str(settings["max_frames"])]
    if settings["threads"] is not None:
        argv += ["--threads", str(settings["threads"])]
    if target.delegates is not None and not target.delegates.xnnpack:
        argv.append("--no-xnnpack")
    if target.device is not None:
        argv += ["--device", target.device]
    return argv


def _run_ssh(target: Target, model: Path, anchors: np.ndarray, video: Path, raw_log: Path,
             settings: dict[str, Any]) -> dict[str, Any]:
    assert target.workdir is not None
    # The device lock is held from staging to the end of the run, as for latency jobs.
    with device_session(target, [model]) as (transport, _waited), \
            tempfile.TemporaryDirectory(prefix="edgeprune-app-") as scratch:
        saved = Path(scratch) / "anchors.npy"
        np.save(saved, np.asarray(anchors, dtype=np.float32))
        anchors_file = saved.rename(saved.with_name(f"anchors-{local_sha256(saved)}.npy"))
        frames = (None if settings["max_frames"] is None
                  else settings["warmup_frames"] + settings["max_frames"])
        clip = write_frame_archive(Path(scratch) / f"{video.stem}.frames.tar", video,
                                   max_frames=frames).path
        remote, pushed = _stage_files(transport, target.workdir,
                                      _files_to_copy(model, anchors_file, clip))
        argv = _remote_argv(target, remote, model, anchors_file, clip, settings)
        result = transport.run(argv, timeout=target.timeout_s)
    write_text(raw_log, result.stdout + result.stderr)
    if result.rc != 0:
        raise transport.error(f"remote_app.py {result.describe()}; last lines: "
                              f"{result.last_lines()}; output kept in {raw_log}")
    payload = last_json_line(result.stdout, "edgeprune_app")
    if payload is None:
        raise transport.error(f"remote_app.py printed no JSON result line (raw output in "
                              f"{raw_log})")
    summary = summarize_app(payload["samples_ms"], float(payload["wall_s"]),
                            int(payload["detections"]), int(payload["warmup_frames"]))
    runtime_keys = ("runtime", "runtime_version", "delegate", "python", "numpy", "pillow")
    identity = {**transport.identity(), **{k: payload.get(k) for k in runtime_keys},
                "threads": settings["threads"]}
    if target.device is not None:
        identity["openvino_device"] = target.device
    return {**summary, "video": {**probe_video(video).to_dict(), "shipped": payload["video"]},
            "input_size": list(settings["input_size"]), "identity": identity,
            "command": shlex.join(argv), "pushed": pushed}


def run_app_on_target(
    target: Target,
    model_path: str | Path,
    anchors: np.ndarray,
    video: str | Path,
    raw_log: str | Path,
    input_size: tuple[int, int],
    num_classes: int,
    pp_cfg: PostprocessConfig = DEFAULT_POSTPROCESS,
    warmup_frames: int = 10,
    max_frames: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure application FPS of ``model_path`` over ``video`` on ``target``.

    ``local`` targets run :func:`run_app` here; ``ssh`` targets run ``remote_app.py`` on the board
    with the target's Python (``python3`` for runtimes without a ``python`` setting), after
    copying the script, the model (and an IR's ``.bin``), the anchors (``.npy``) and the clip
    into the target's work directory (skipped when an identical copy is there); the clip goes
    as a frame archive of the frames the run reads. ``threads``
    overrides the target's ``threads``. The raw output (the JSON line with every sample) is kept
    in ``raw_log``.

    Returns a JSON-ready dict: target, transport, runtime, engine, model, model_sha256, settings,
    frames, wall_s, fps, detections, stages (per-stage latency statistics, ms), samples_ms,
    video, identity (device model, OS, runtime and version, threads, delegate), command, pushed
    and raw_log.

    Raises:
        TargetError: the target is disabled, is an adb target, cannot be reached, or the remote
            script failed (the message names the target and the raw log).
    """
    _check_app_target(target)
    model, video, raw_log = Path(model_path), Path(video), Path(raw_log)
    if not model.is_file():
        raise FileNotFoundError(f"model for application FPS on target '{target.name}' not "
                                f"found: {model}")
    if not video.is_file():
        raise DataError(f"{video}: video file not found")
    _check_settings(warmup_frames, max_frames)
    _check_length(video, probe_video(video).frames, warmup_frames)
    settings: dict[str, Any] = {
        "input_size": (int(input_size[0]), int(input_size[1])), "num_classes": int(num_classes),
        "pp_cfg": pp_cfg, "warmup_frames": int(warmup_frames), "max_frames": max_frames,
        "threads": threads if threads is not None else target.threads,
    }
    run = _run_local if target.transport == "local" else _run_ssh
    result = run(target, model, anchors, video, raw_log, settings)
    return {
        "target": target.name,
        "transport": target.transport,
        "runtime": target.runtime,
        "engine": ENGINES[target.runtime],
        "model": str(model),
        "model_sha256": local_sha256(model),
        "settings": {"warmup_frames": warmup_frames, "max_frames": max_frames,
                     "threads": settings["threads"], "input_size": list(settings["input_size"]),
                     "postprocess": asdict(pp_cfg)},
        **result,
        "raw_log": str(raw_log),
    }
