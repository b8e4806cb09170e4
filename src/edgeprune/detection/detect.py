"""Run any runtime (Keras, LiteRT, OpenVINO) over a dataset and turn its raw outputs into VOC
detections. Runtimes only produce ``loc`` and class probabilities; decoding and NMS are shared."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.data.voc import Annotation, to_voc_pixels
from edgeprune.detection.boxes import PostprocessConfig, postprocess

if TYPE_CHECKING:  # the evaluator's record types; no import at run time
    from edgeprune.measurement.evaluate import Detections

# A runner maps a float32 image batch (B, H, W, 3), pixel values 0..255, to
# (loc (B, A, 4), class probabilities (B, A, C+1)) in float32.
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def class_probabilities(outputs: Mapping[str, Any]) -> np.ndarray:
    """Class probabilities (float32) from a model's named outputs: ``conf`` as it is, or
    ``conf_logits`` (training models and every TFLite flatbuffer, int8 included, once
    dequantised) through a softmax computed in float on the host, so int8 scores are not tied
    on the 1/256 grid of a quantised softmax."""
    if "conf" in outputs:
        return np.asarray(outputs["conf"], dtype=np.float32)
    if "conf_logits" in outputs:
        return softmax(np.asarray(outputs["conf_logits"], dtype=np.float32))
    raise ValueError(f"model outputs {sorted(outputs)} hold neither conf nor conf_logits")


def keras_runner(model: Any) -> Runner:
    """Runner for a training (``conf_logits``) or exported (``conf``) Keras detector."""

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = model(batch, training=False)
        return np.asarray(out["loc"]), class_probabilities(out)

    return run


def run_batched(runner: Runner, images: np.ndarray, batch_size: int,
                progress: Callable[[int, int], None] | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Run ``runner`` over ``images`` (N, H, W, 3) uint8 in batches."""
    locs, probs = [], []
    n = len(images)
    for start in range(0, n, batch_size):
        loc, prob = runner(images[start:start + batch_size].astype(np.float32))
        locs.append(loc)
        probs.append(prob)
        if progress:
            progress(min(start + batch_size, n), n)
    return np.concatenate(locs), np.concatenate(probs)


def to_detections(annotations: Sequence[Annotation], loc: np.ndarray, probs: np.ndarray,
                  anchors: np.ndarray, classes: Sequence[str],
                  cfg: PostprocessConfig) -> Detections:
    """Decode + NMS every image and map boxes back to VOC pixel coordinates of the original."""
    dets: Detections = {c: [] for c in classes}
    for i, ann in enumerate(annotations):
        boxes, scores, cls = postprocess(loc[i], probs[i], anchors, cfg)
        pix = to_voc_pixels(boxes, ann.width, ann.height)
        for b, s, c in zip(pix, scores, cls, strict=True):
            dets[classes[int(c)]].append(
                (ann.image_id, float(s), float(b[0]), float(b[1]), float(b[2]), float(b[3])))
    return dets


def make_runner(runtime: str, path: Any, threads: int) -> tuple[Runner, int | None]:
    """A runner for ``runtime`` (keras | tflite | openvino) and its fixed batch size, if any."""
    if runtime == "keras":
        from edgeprune.detection.model_io import load_keras

        return keras_runner(load_keras(path)), None
    if runtime == "tflite":
        from edgeprune.measurement.latency import LiteRTRunner

        lite = LiteRTRunner(path, num_threads=threads)

        def run_lite(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            locs, probs = [], []
            for img in batch:
                out = lite.invoke(img[None])  # integer outputs come back dequantised
                locs.append(out["loc"][0])
                probs.append(class_probabilities(out)[0])
            return np.stack(locs), np.stack(probs)

        return run_lite, 16
    if runtime == "openvino":
        from edgeprune.compression.openvino_rt import openvino_runner

        return openvino_runner(path, threads), None
    raise ValueError(f"unknown runtime {runtime!r}; expected keras, tflite or openvino")
