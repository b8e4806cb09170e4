"""Box geometry for SSD: anchors, IoU, target encoding/decoding, matching and NMS (numpy).

Conventions: boxes are normalised to [0, 1]. *Corner* form is (xmin, ymin, xmax, ymax);
*centre* form is (cx, cy, w, h). Anchors are stored in centre form.

The one copy of box decoding and NMS: this file is also copied, as ``boxes.py``, beside
``remote_app.py`` onto SSH boards, whose application loop imports :func:`postprocess` from it.
So it stays standalone: numpy and the standard library only, Python 3.7 syntax
(tests/test_boxes.py checks both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)


def corners_to_center(boxes: np.ndarray) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) -> (cx, cy, w, h)."""
    boxes = np.asarray(boxes, dtype=np.float32)
    wh = boxes[..., 2:] - boxes[..., :2]
    return np.concatenate([boxes[..., :2] + wh / 2, wh], axis=-1)


def center_to_corners(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) -> (xmin, ymin, xmax, ymax)."""
    boxes = np.asarray(boxes, dtype=np.float32)
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of corner boxes ``a`` (n, 4) and ``b`` (m, 4) -> (n, m)."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


@dataclass(frozen=True)
class AnchorSpec:
    """How anchors are laid out over the detector's feature maps."""

    feature_sizes: tuple[tuple[int, int], ...]
    min_scale: float = 0.1
    max_scale: float = 0.9
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)

    @property
    def anchors_per_location(self) -> int:
        """Aspect ratios plus one extra square anchor at the intermediate scale."""
        return len(self.aspect_ratios) + 1


def scales(n_maps: int, min_scale: float, max_scale: float) -> list[float]:
    """Linearly spaced anchor scales, one per feature map plus one beyond the last."""
    if n_maps == 1:
        return [min_scale, max_scale]
    step = (max_scale - min_scale) / (n_maps - 1)
    return [min_scale + step * k for k in range(n_maps)] + [1.0]


def generate_anchors(spec: AnchorSpec) -> np.ndarray:
    """All anchors (A, 4) in centre form, ordered map by map, row-major, anchor type fastest.

    The order matches the reshape of the head outputs: ``(B, H, W, k*4) -> (B, H*W*k, 4)``.
    """
    s = scales(len(spec.feature_sizes), spec.min_scale, spec.max_scale)
    out = []
    for k, (fh, fw) in enumerate(spec.feature_sizes):
        sizes = [(s[k] * np.sqrt(r), s[k] / np.sqrt(r)) for r in spec.aspect_ratios]
        extra = float(np.sqrt(s[k] * s[k + 1]))
        sizes.append((extra, extra))
        wh = np.asarray(sizes, dtype=np.float32)  # (k, 2)
        cy, cx = np.meshgrid(
            (np.arange(fh, dtype=np.float32) + 0.5) / fh,
            (np.arange(fw, dtype=np.float32) + 0.5) / fw,
            indexing="ij",
        )
        centers = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        centers = np.broadcast_to(centers, (fh * fw, len(sizes), 2))
        whs = np.broadcast_to(wh[None], (fh * fw, len(sizes), 2))
        out.append(np.concatenate([centers, whs], axis=-1).reshape(-1, 4))
    return np.clip(np.concatenate(out, axis=0), 0.0, 1.0).astype(np.float32)


def encode(boxes: np.ndarray, anchors: np.ndarray,
           variances: Sequence[float] = DEFAULT_VARIANCES) -> np.ndarray:
    """Encode corner boxes (A, 4) against centre anchors (A, 4) as SSD regression targets."""
    c = corners_to_center(boxes)
    wh = np.maximum(c[:, 2:], 1e-6)
    txy = (c[:, :2] - anchors[:, :2]) / (anchors[:, 2:] * variances[0])
    twh = np.log(wh / anchors[:, 2:]) / variances[1]
    return np.concatenate([txy, twh], axis=-1).astype(np.float32)


def decode(loc: np.ndarray, anchors: np.ndarray,
           variances: Sequence[float] = DEFAULT_VARIANCES) -> np.ndarray:
    """Invert :func:`encode`: regression outputs (..., A, 4) -> corner boxes (..., A, 4)."""
    loc = np.asarray(loc, dtype=np.float32)
    xy = anchors[:, :2] + loc[..., :2] * variances[0] * anchors[:, 2:]
    wh = anchors[:, 2:] * np.exp(np.clip(loc[..., 2:] * variances[1], -10.0, 10.0))
    return center_to_corners(np.concatenate([xy, wh], axis=-1))


def match(gt_boxes: np.ndarray, gt_labels: np.ndarray, anchors: np.ndarray,
          iou_threshold: float = 0.5,
          variances: Sequence[float] = DEFAULT_VARIANCES) -> tuple[np.ndarray, np.ndarray]:
    """Assign ground truth to anchors.

    Each ground-truth box claims its best anchor; every other anchor takes the ground truth it
    overlaps most if that IoU reaches ``iou_threshold``. Returns encoded regression targets
    (A, 4) and class targets (A,) where 0 is background and ``label + 1`` is a class.
    """
    n_anchors = anchors.shape[0]
    loc_t = np.zeros((n_anchors, 4), np.float32)
    cls_t = np.zeros((n_anchors,), np.int32)
    if len(gt_boxes) == 0:
        return loc_t, cls_t
    ious = iou_matrix(gt_boxes, center_to_corners(anchors))  # (n, A)
    best_gt = ious.argmax(axis=0)
    best_gt_iou = ious.max(axis=0)
    best_anchor = ious.argmax(axis=1)
    best_gt[best_anchor] = np.arange(len(gt_boxes))
    best_gt_iou[best_anchor] = 2.0
    pos = best_gt_iou >= iou_threshold
    cls_t[pos] = np.asarray(gt_labels, np.int32)[best_gt[pos]] + 1
    loc_t[pos] = encode(np.asarray(gt_boxes, np.float32)[best_gt[pos]], anchors[pos], variances)
    return loc_t, cls_t


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices by descending score.

    The IoU matrix of the candidates is computed once; the greedy pass then only reads rows
    of it (callers cap the candidates, so the matrix stays small)."""
    order = np.argsort(-scores, kind="stable")
    ious = iou_matrix(boxes[order], boxes[order])
    suppressed = np.zeros(order.size, dtype=bool)
    keep: list[int] = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= max_out:
            break
        suppressed |= ious[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class PostprocessConfig:
    """Detection post-processing thresholds."""

    score_threshold: float = 0.01
    iou_threshold: float = 0.45
    max_per_class: int = 100
    max_total: int = 200


def postprocess(loc: np.ndarray, probs: np.ndarray, anchors: np.ndarray,
                cfg: PostprocessConfig = PostprocessConfig(),
                variances: Sequence[float] = DEFAULT_VARIANCES,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's raw outputs into detections.

    ``loc`` (A, 4) regression outputs, ``probs`` (A, C+1) class probabilities with background
    in column 0. Returns corner boxes (n, 4) clipped to [0, 1], scores (n,) and class ids (n,)
    (0-based, background excluded), best first.
    """
    boxes = np.clip(decode(loc, anchors, variances), 0.0, 1.0)
    out_b, out_s, out_c = [], [], []
    for c in range(1, probs.shape[1]):
        sc = probs[:, c]
        idx = np.nonzero(sc > cfg.score_threshold)[0]
        if idx.size == 0:
            continue
        if idx.size > 4 * cfg.max_per_class:
            idx = idx[np.argsort(-sc[idx], kind="stable")[: 4 * cfg.max_per_class]]
        keep = idx[nms(boxes[idx], sc[idx], cfg.iou_threshold, cfg.max_per_class)]
        out_b.append(boxes[keep])
        out_s.append(sc[keep])
        out_c.append(np.full(keep.size, c - 1, np.int32))
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
    b, s, c = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_c)
    top = np.argsort(-s, kind="stable")[: cfg.max_total]
    return b[top], s[top].astype(np.float32), c[top]
