"""Detection data augmentation in numpy/PIL: zoom in/out with crop, flip, colour jitter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; ``enabled: false`` turns all of it off."""

    enabled: bool = True
    flip: bool = True
    zoom_range: tuple[float, float] = (0.6, 1.6)  # <1 zooms in (crop), >1 zooms out (pad)
    brightness: float = 0.2
    contrast: float = 0.2
    min_visible: float = 0.4  # keep a box if at least this fraction of its area stays visible


def _zoom(img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
          zoom_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map a random source window (zoom factor z of the image side) onto the output size."""
    h, w = img.shape[:2]
    z = float(rng.uniform(*zoom_range))
    ar = float(rng.uniform(0.85, 1.18))
    zw, zh = z * np.sqrt(ar), z / np.sqrt(ar)
    x0 = float(rng.uniform(min(0.0, 1.0 - zw), max(0.0, 1.0 - zw)))
    y0 = float(rng.uniform(min(0.0, 1.0 - zh), max(0.0, 1.0 - zh)))
    fill = tuple(int(v) for v in img.reshape(-1, 3).mean(axis=0))
    out = Image.fromarray(img).transform(
        (w, h), Image.Transform.EXTENT, (x0 * w, y0 * h, (x0 + zw) * w, (y0 + zh) * h),
        resample=Image.Resampling.BILINEAR, fillcolor=fill,
    )
    scale = np.array([zw, zh, zw, zh], np.float32)
    shift = np.array([x0, y0, x0, y0], np.float32)
    new = (boxes - shift) / scale
    area = np.prod(np.clip(new[:, 2:] - new[:, :2], 0, None), axis=1)
    clipped = np.clip(new, 0.0, 1.0)
    vis = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
    keep_frac = np.where(area > 0, vis / np.maximum(area, 1e-12), 0.0)
    return np.asarray(out), clipped, keep_frac


def augment(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment one image (H, W, 3 uint8) with normalised corner boxes; returns the same kinds."""
    if not cfg.enabled:
        return img, boxes, labels
    if len(boxes):
        out, new_boxes, frac = _zoom(img, boxes, rng, cfg.zoom_range)
        keep = frac >= cfg.min_visible
        if keep.any():
            img, boxes, labels = out, new_boxes[keep], labels[keep]
    if cfg.flip and rng.random() < 0.5:
        img = img[:, ::-1]
        boxes = boxes.copy()
        boxes[:, [0, 2]] = 1.0 - boxes[:, [2, 0]]
    if cfg.brightness or cfg.contrast:
        f = img.astype(np.float32)
        mean = f.mean()
        c = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        b = rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
        img = np.clip((f - mean) * c + mean + b, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img), boxes.astype(np.float32), labels
