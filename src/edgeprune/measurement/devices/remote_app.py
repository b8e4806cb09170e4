#!/usr/bin/env python3
"""Run the detector application over a clip's JPEG frames on this machine; print one JSON line.

Copied to SSH targets (Raspberry Pi, Jetson) and run there with the board's own Python, so it is
standalone: standard library, numpy, Pillow and one inference runtime -- ``ai_edge_litert`` (or
the older ``tflite_runtime``) for ``.tflite`` models, ``openvino`` (2022.3 LTS or newer) for IR,
ONNX or TFLite models. It never imports edgeprune and runs on Python 3.7 or newer; beside it lie
``remote_runner.py`` (the runtime loaders) and ``boxes.py`` (box decoding and NMS: a copy of the
very file the host uses, ``edgeprune/detection/boxes.py``).

The clip arrives as a frame archive: a plain tar of JPEG files plus ``clip.json``
(``edgeprune.data.video.write_frame_archive``), so no video container is parsed here.

Per frame: read the JPEG bytes from the archive, decode them (Pillow), resize to the model input
(bilinear), infer, decode the boxes against the anchors and run per-class NMS -- the loop of
``edgeprune.measurement.app_fps.run_app``. Output (stdout, last line)::

    {"edgeprune_app": 1, "runtime": "...", "frames": N, "wall_s": ..., "detections": ...,
     "samples_ms": {"read": [...], "decode": [...], ..., "frame": [...]}, ...}
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from boxes import PostprocessConfig, postprocess  # edgeprune.detection.boxes, copied beside
from PIL import Image
from remote_runner import (  # copied beside this script
    compile_openvino,
    inference_precision,
    litert_interpreter,
    load_openvino,
    openvino_config,
)

FORMAT_VERSION = 1
STAGES = ("read", "decode", "resize", "inference", "postprocess")
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling
_QUANTIZED = (np.int8, np.uint8, np.int16)
INDEX = "clip.json"
_OV_FLOAT_TYPES = {"f32": np.float32, "f16": np.float16}


def fail(message: str) -> None:
    """Exit with status 2 and a one-line reason on stderr."""
    sys.stderr.write("remote_app: " + message + "\n")
    sys.exit(2)


# --------------------------------------------------------------------------- frame archive


class FrameArchive:
    """The JPEG frames of a frame archive: an uncompressed tar holding ``clip.json`` (frames,
    fps, width, height) and ``frames/NNNNNN.jpg``, as ``edgeprune.data.video.
    write_frame_archive`` writes it. Read with the standard library only."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:")
            members = self._tar.getmembers()
        except (OSError, tarfile.TarError) as exc:
            fail(f"{path} is not a frame archive (tar): {exc}")
        by_name = {m.name: m for m in members}
        if INDEX not in by_name:
            fail(f"{path} has no {INDEX}; expected a frame archive written by edgeprune")
        try:
            index = json.loads(self._read(by_name[INDEX]).decode("utf-8"))
        except ValueError as exc:
            fail(f"{path}: unreadable {INDEX} ({exc})")
        self.fps = float(index["fps"])
        self.width, self.height = int(index["width"]), int(index["height"])
        self._frames = sorted((m for m in members if m.isfile() and m.name.startswith("frames/")),
                              key=lambda m: m.name)
        if not self._frames:
            fail(f"{path} holds no frames/*.jpg")

    def _read(self, member: Any) -> bytes:
        handle = self._tar.extractfile(member)
        if handle is None:
            fail(f"{self.path}: {member.name} is not a regular file")
        return handle.read()

    def __len__(self) -> int:
        return len(self._frames)

    def frames(self) -> Iterator[bytes]:
        """Each frame's JPEG bytes, in order (read from the archive one by one)."""
        for member in self._frames:
            yield self._read(member)

    def close(self) -> None:
        self._tar.close()


# --------------------------------------------------------------------------- runtimes


def pick_outputs(shapes: dict[str, Sequence[int]], num_classes: int) -> tuple[str, str]:
    """Names of the (loc, conf) outputs: by name ('loc'/'conf'), else by last dimension."""
    names = list(shapes)
    if "loc" in shapes and "conf" in shapes:
        return "loc", "conf"
    loc = [n for n in names if "loc" in n.lower()]
    conf = [n for n in names if "conf" in n.lower()]
    if len(loc) == 1 and len(conf) == 1 and loc != conf:
        return loc[0], conf[0]
    if num_classes + 1 != 4 and len(names) == 2:
        by_dim = {int(shapes[n][-1]): n for n in names}
        if 4 in by_dim and num_classes + 1 in by_dim:
            return by_dim[4], by_dim[num_classes + 1]
    described = {n: [int(d) for d in s] for n, s in shapes.items()}
    fail(f"cannot tell the loc and conf outputs apart among {described}; export the model "
         "with outputs named loc and conf")
    raise AssertionError("unreachable")


def probabilities(name: str, values: np.ndarray) -> np.ndarray:
    """Class scores of the output ``name``: logits (edgeprune's TFLite files end at
    ``conf_logits``) go through a float softmax, probabilities pass through."""
    values = np.asarray(values, dtype=np.float32)
    if not name.lower().endswith("logits"):
        return values
    z = np.exp(values - values.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def quantize(values: np.ndarray, dtype: Any, scale: float, zero_point: int) -> np.ndarray:
    """Real values onto an integer grid, rounding half away from zero (as TFLite does)."""
    limits = np.iinfo(dtype)
    scaled = np.asarray(values, dtype=np.float64) / scale
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
    return np.clip(q, limits.min, limits.max).astype(dtype)


def _real(value: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    scale, zero_point = details.get("quantization", (0.0, 0))
    if scale and np.dtype(details["dtype"]).type in _QUANTIZED:
        return ((value.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return np.array(value, copy=True)


def _feed(batch: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details.get("quantization", (0.0, 0))
    if scale and dtype.type in _QUANTIZED:
        return quantize(batch, dtype, scale, zero_point)
    return np.ascontiguousarray(batch, dtype=dtype)


def litert_model(args: argparse.Namespace) -> tuple[Callable, dict[str, Any]]:
    """A batch -> (loc, conf) function through the model's signature, and its identity."""
    interpreter, identity = litert_interpreter(args.model, args.threads, args.no_xnnpack)
    if not interpreter.get_signature_list():
        fail(f"{args.model} has no SignatureDef; export it with "
             "TFLiteConverter.from_keras_model")
    runner = interpreter.get_signature_runner()
    inputs = runner.get_input_details()
    if len(inputs) != 1:
        fail(f"expected one model input, got {sorted(inputs)}")
    input_name, input_details = next(iter(inputs.items()))
    outputs = runner.get_output_details()
    loc, conf = pick_outputs({k: d["shape"] for k, d in outputs.items()}, args.num_classes)

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = runner(**{input_name: _feed(batch, input_details)})
        return _real(raw[loc], outputs[loc]), probabilities(conf, _real(raw[conf], outputs[conf]))

    return run, identity


def _port_name(port: Any) -> str:
    names = sorted(port.get_names())
    for key in ("loc", "conf"):
        for name in names:
            if key in name.lower():
                return name
    return port.get_any_name()


def openvino_model(args: argparse.Namespace) -> tuple[Callable, dict[str, Any]]:
    """A batch -> (loc, conf) function compiled with the LATENCY hint (f32 on CPU:
    ``remote_runner.openvino_config``), and its identity with the precision the device computes
    in (``inference_precision``)."""
    ov = load_openvino()
    core = ov.Core()
    model = core.read_model(args.model)
    if len(model.inputs) != 1:
        fail(f"expected one model input, got {len(model.inputs)}")
    if model.inputs[0].get_partial_shape().is_dynamic:
        model.reshape({model.inputs[0]: ov.PartialShape([1, args.input_size[0],
                                                         args.input_size[1], 3])})
    compiled = compile_openvino(core, model, args.device,
                                openvino_config(args.device, args.threads))
    input_type = compiled.inputs[0].get_element_type().get_type_name()
    if input_type not in _OV_FLOAT_TYPES and input_type != "u8":
        fail(f"OpenVINO model input is {input_type}; use a float IR (quantised weights are "
             "fine)")
    dtype = _OV_FLOAT_TYPES.get(input_type, np.uint8)
    names = [_port_name(port) for port in compiled.outputs]
    shapes = {name: [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
              for name, port in zip(names, compiled.outputs)}  # noqa: B905 - Python 3.7
    loc, conf = pick_outputs(shapes, args.num_classes)
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value = np.clip(np.round(batch), 0, 255) if dtype is np.uint8 else batch
        request.infer({0: np.ascontiguousarray(value, dtype=dtype)})
        out = {name: request.get_output_tensor(i).data for i, name in enumerate(names)}
        return np.array(out[loc], dtype=np.float32), probabilities(conf, out[conf])

    return run, {"runtime": "openvino", "runtime_version": str(ov.get_version()),
                 "device": args.device, "inference_precision": inference_precision(compiled)}


# --------------------------------------------------------------------------- the loop


def _ms(start_ns: int, end_ns: int) -> float:
    return max(end_ns - start_ns, 1) / 1e6


def run_loop(model: Callable, video: FrameArchive, anchors: np.ndarray,
             args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up frames untimed, then time each stage of up to max_frames frames."""
    height, width = args.input_size
    samples: dict[str, list[float]] = {name: [] for name in STAGES + ("frame",)}
    total = len(video) if args.max_frames is None else args.warmup + args.max_frames
    frames = video.frames()
    cfg = PostprocessConfig(args.score_threshold, args.iou_threshold, args.max_per_class,
                            args.max_total)
    detections = 0
    wall_start = 0
    for index in range(min(total, len(video))):
        if index == args.warmup:
            wall_start = time.perf_counter_ns()
        t0 = time.perf_counter_ns()
        jpeg = next(frames)
        t1 = time.perf_counter_ns()
        image = Image.open(io.BytesIO(jpeg))
        image.load()
        if image.mode != "RGB":
            image = image.convert("RGB")
        t2 = time.perf_counter_ns()
        batch = np.asarray(image.resize((width, height), _BILINEAR), dtype=np.float32)[None]
        t3 = time.perf_counter_ns()
        loc, probs = model(batch)
        t4 = time.perf_counter_ns()
        _, scores, _ = postprocess(np.asarray(loc)[0], np.asarray(probs)[0], anchors, cfg)
        t5 = time.perf_counter_ns()
        if index >= args.warmup:
            spans = ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t0, t5))
            for name, (start, end) in zip(STAGES + ("frame",), spans):  # noqa: B905 - 3.7
                samples[name].append(_ms(start, end))
            detections += int(scores.size)
    wall_s = (time.perf_counter_ns() - wall_start) / 1e9
    frames.close()
    return {"frames": len(samples["frame"]), "warmup_frames": args.warmup, "wall_s": wall_s,
            "detections": detections, "samples_ms": samples}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runtime", choices=("litert", "openvino"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--anchors", required=True, help=".npy file, (A, 4) centre-form anchors")
    parser.add_argument("--clip", required=True,
                        help="frame archive: tar of JPEG frames + clip.json")
    parser.add_argument("--input-size", type=int, nargs=2, required=True,
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--num-classes", type=int, required=True, help="without background")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-xnnpack", action="store_true")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--score-threshold", type=float, default=0.01)
    parser.add_argument("--iou-threshold", type=float, default=0.45)
    parser.add_argument("--max-per-class", type=int, default=100)
    parser.add_argument("--max-total", type=int, default=200)
    args = parser.parse_args(argv)
    if args.warmup < 0 or (args.max_frames is not None and args.max_frames < 1):
        parser.error("--warmup must be >= 0 and --max-frames >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Load everything, run the loop, print the JSON line."""
    args = parse_args(argv)
    video = FrameArchive(args.clip)
    if len(video) <= args.warmup:
        fail(f"{args.clip} has {len(video)} frame(s); {args.warmup} warm-up frame(s) and at "
             "least one timed frame are needed")
    anchors = np.load(args.anchors).astype(np.float32)
    factory = litert_model if args.runtime == "litert" else openvino_model
    model, runtime = factory(args)
    result = run_loop(model, video, anchors, args)
    video.close()
    import PIL

    result.update(runtime)
    result.update(
        edgeprune_app=FORMAT_VERSION,
        threads=args.threads,
        video={"frames": len(video), "fps": video.fps, "width": video.width,
               "height": video.height, "codec": "jpeg", "container": "tar"},
        python=platform.python_version(),
        numpy=np.__version__,
        pillow=getattr(PIL, "__version__", "?"),
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
