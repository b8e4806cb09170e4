#!/usr/bin/env python3
"""Run the detector application over an MJPEG AVI clip on this machine; print one JSON line.

Copied to SSH targets (Raspberry Pi, Jetson) and run there with the board's own Python, so it is
standalone: standard library, numpy, Pillow and one inference runtime -- ``ai_edge_litert`` (or
the older ``tflite_runtime``) for ``.tflite`` models, ``openvino`` (2022.3 LTS or newer) for IR,
ONNX or TFLite models. It never imports edgeprune and runs on Python 3.7 or newer; it loads
the runtimes through ``remote_runner.py``, which is copied beside it.

Per frame: read the JPEG bytes from the clip, decode them (Pillow), resize to the model input
(bilinear), infer, decode the boxes against the anchors and run per-class NMS. The loop, the
resize and the post-processing mirror ``edgeprune.measurement.app_fps.run_app`` and
``edgeprune.detection.boxes.postprocess`` (tests check that both give the same detections). Output
(stdout,
last line)::

    {"edgeprune_app": 1, "runtime": "...", "frames": N, "wall_s": ..., "detections": ...,
     "samples_ms": {"read": [...], "decode": [...], ..., "frame": [...]}, ...}
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image
from remote_runner import litert_interpreter, load_openvino  # copied beside this script

FORMAT_VERSION = 1
STAGES = ("read", "decode", "resize", "inference", "postprocess")
VARIANCES = (0.1, 0.2)
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling
_QUANTIZED = (np.int8, np.uint8, np.int16)
_CHUNK = struct.Struct("<4sI")
_OV_FLOAT_TYPES = {"f32": np.float32, "f16": np.float16}


def fail(message: str) -> None:
    """Exit with status 2 and a one-line reason on stderr."""
    sys.stderr.write("remote_app: " + message + "\n")
    sys.exit(2)


# --------------------------------------------------------------------------- MJPEG AVI reading


def _chunks(fh: Any, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(fourcc, payload offset, payload size) of the RIFF chunks between start and end; a
    RIFF or LIST cut short is read up to the end, a cut-off data chunk ends the walk."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        fourcc, size = _CHUNK.unpack(fh.read(8))
        if pos + 8 + size > end:
            if fourcc in (b"RIFF", b"LIST"):
                yield fourcc, pos + 8, end - pos - 8
            return
        yield fourcc, pos + 8, size
        pos += 8 + size + (size & 1)


def _list_type(fh: Any, offset: int) -> bytes:
    fh.seek(offset)
    return fh.read(4)


def _avi_lists(fh: Any, size: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The hdrl list and every movi list (AVI and OpenDML AVIX segments)."""
    hdrl = None
    movi = []
    for fourcc, off, length in _chunks(fh, 0, size):
        if fourcc != b"RIFF" or _list_type(fh, off) not in (b"AVI ", b"AVIX"):
            continue
        for inner, ioff, ilength in _chunks(fh, off + 4, off + length):
            kind = _list_type(fh, ioff) if inner == b"LIST" else b""
            if kind == b"hdrl" and hdrl is None:
                hdrl = (ioff + 4, ioff + ilength)
            elif kind == b"movi":
                movi.append((ioff + 4, ioff + ilength))
    return hdrl, movi


def _video_stream(fh: Any, hdrl: tuple[int, int]) -> tuple[int, float, int, int]:
    """(stream index, fps, width, height) of the first 'vids' stream with a JPEG codec."""
    stream = 0
    for fourcc, off, size in _chunks(fh, hdrl[0], hdrl[1]):
        if fourcc != b"LIST" or _list_type(fh, off) != b"strl":
            continue
        parts = {cc: o for cc, o, _ in _chunks(fh, off + 4, off + size)}
        if b"strh" not in parts or b"strf" not in parts:
            fail(f"stream {stream} has no strh/strf header")
        fh.seek(parts[b"strh"])
        strh = fh.read(56)
        if strh[:4] == b"vids":
            scale, rate = struct.unpack("<II", strh[20:28])
            fh.seek(parts[b"strf"])
            width, height, _, _, codec = struct.unpack("<iiHH4s", fh.read(40)[4:20])
            codec = codec.decode("latin-1").strip("\0 ").upper()
            if codec not in ("MJPG", "JPEG", "AVRN", "DMB1"):
                fail(f"video codec is {codec!r}, not Motion-JPEG")
            return stream, (rate / scale if scale else 0.0), width, abs(height)
        stream += 1
    fail("the AVI file has no video stream")
    raise AssertionError("unreachable")


class MjpegAvi:
    """The JPEG frames of an MJPEG AVI (the format edgeprune.data.video writes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as fh:
            head = fh.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
                fail(f"{path} is not an AVI file")
            fh.seek(0, 2)
            hdrl, self._movi = _avi_lists(fh, fh.tell())
            if hdrl is None or not self._movi:
                fail(f"{path} has no hdrl or movi list")
            stream, self.fps, self.width, self.height = _video_stream(fh, hdrl)
            self._ids = (f"{stream:02d}dc".encode(), f"{stream:02d}db".encode())
            self._frames = list(self._walk(fh, self._movi))

    def _walk(self, fh: Any, spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        """(offset, size) of each non-empty frame chunk, descending into 'rec ' lists."""
        for start, end in spans:
            for fourcc, off, size in _chunks(fh, start, end):
                if fourcc == b"LIST":
                    yield from self._walk(fh, [(off + 4, off + size)])
                elif fourcc in self._ids and size > 0:  # an empty chunk is a dropped frame
                    yield off, size

    def __len__(self) -> int:
        return len(self._frames)

    def frames(self) -> Iterator[bytes]:
        """Each frame's JPEG bytes, in order."""
        with open(self.path, "rb") as fh:
            for off, size in self._frames:
                fh.seek(off)
                yield fh.read(size)


# --------------------------------------------------------------------------- post-processing


def corner_boxes(loc: np.ndarray, anchors: np.ndarray,
                 variances: Sequence[float] = VARIANCES) -> np.ndarray:
    """SSD regression outputs (A, 4) against centre-form anchors -> corner boxes (A, 4)."""
    loc = np.asarray(loc, dtype=np.float32)
    centre = anchors[:, :2] + loc[..., :2] * variances[0] * anchors[:, 2:]
    size = anchors[:, 2:] * np.exp(np.clip(loc[..., 2:] * variances[1], -10.0, 10.0))
    boxes = np.concatenate([centre, size], axis=-1).astype(np.float32)
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def overlaps(one: np.ndarray, many: np.ndarray) -> np.ndarray:
    """IoU of one corner box (1, 4) with each of ``many`` (m, 4), float32."""
    a = np.asarray(one, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(many, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)[0]


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
               limit: int) -> np.ndarray:
    """Indices kept by greedy NMS, best score first (ties keep the earlier index)."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best = int(order[0])
        kept.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[overlaps(boxes[best:best + 1], boxes[rest]) <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)


def detect(loc: np.ndarray, probs: np.ndarray, anchors: np.ndarray, score_threshold: float,
           iou_threshold: float, max_per_class: int, max_total: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (n, 4) in [0, 1], scores (n,) and 0-based classes (n,) of one image, best first.

    ``probs`` (A, C+1) has background in column 0. Per class: candidates above the score
    threshold (at most 4 x max_per_class, by score), greedy NMS; then the best max_total overall.
    """
    boxes = np.clip(corner_boxes(loc, anchors), 0.0, 1.0)
    found_boxes, found_scores, found_classes = [], [], []
    for cls in range(1, probs.shape[1]):
        column = probs[:, cls]
        candidates = np.nonzero(column > score_threshold)[0]
        if candidates.size == 0:
            continue
        if candidates.size > 4 * max_per_class:
            best = np.argsort(-column[candidates], kind="stable")[: 4 * max_per_class]
            candidates = candidates[best]
        keep = candidates[greedy_nms(boxes[candidates], column[candidates], iou_threshold,
                                     max_per_class)]
        found_boxes.append(boxes[keep])
        found_scores.append(column[keep])
        found_classes.append(np.full(keep.size, cls - 1, np.int32))
    if not found_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
    all_boxes = np.concatenate(found_boxes)
    all_scores = np.concatenate(found_scores)
    all_classes = np.concatenate(found_classes)
    top = np.argsort(-all_scores, kind="stable")[:max_total]
    return all_boxes[top], all_scores[top].astype(np.float32), all_classes[top]


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
    """A batch -> (loc, conf) function compiled with the LATENCY hint, and its identity."""
    ov = load_openvino()
    core = ov.Core()
    model = core.read_model(args.model)
    if len(model.inputs) != 1:
        fail(f"expected one model input, got {len(model.inputs)}")
    if model.inputs[0].get_partial_shape().is_dynamic:
        model.reshape({model.inputs[0]: ov.PartialShape([1, args.input_size[0],
                                                         args.input_size[1], 3])})
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if args.threads and args.device == "CPU":
        config["INFERENCE_NUM_THREADS"] = str(args.threads)
    compiled = core.compile_model(model, args.device, config)
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
                 "device": args.device}


# --------------------------------------------------------------------------- the loop


def _ms(start_ns: int, end_ns: int) -> float:
    return max(end_ns - start_ns, 1) / 1e6


def run_loop(model: Callable, video: MjpegAvi, anchors: np.ndarray,
             args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up frames untimed, then time each stage of up to max_frames frames."""
    height, width = args.input_size
    samples: dict[str, list[float]] = {name: [] for name in STAGES + ("frame",)}
    total = len(video) if args.max_frames is None else args.warmup + args.max_frames
    frames = video.frames()
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
        _, scores, _ = detect(np.asarray(loc)[0], np.asarray(probs)[0], anchors,
                              args.score_threshold, args.iou_threshold, args.max_per_class,
                              args.max_total)
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
    parser.add_argument("--video", required=True, help="MJPEG AVI clip")
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
    video = MjpegAvi(args.video)
    if len(video) <= args.warmup:
        fail(f"{args.video} has {len(video)} frame(s); {args.warmup} warm-up frame(s) and at "
             "least one timed frame are needed")
    anchors = np.load(args.anchors).astype(np.float32)
    factory = litert_model if args.runtime == "litert" else openvino_model
    model, runtime = factory(args)
    result = run_loop(model, video, anchors, args)
    import PIL

    result.update(runtime)
    result.update(
        edgeprune_app=FORMAT_VERSION,
        threads=args.threads,
        video={"frames": len(video), "fps": video.fps, "width": video.width,
               "height": video.height, "codec": "MJPG", "container": "avi"},
        python=platform.python_version(),
        numpy=np.__version__,
        pillow=getattr(PIL, "__version__", "?"),
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
