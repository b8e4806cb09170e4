"""A deterministic synthetic detection dataset written in Pascal VOC layout.

Each image shows 1..N filled shapes (the classes) on a textured background that also carries
non-class clutter (blurred blobs, thin lines, open arcs, irregular polygons), so that a detector
has false positives to avoid. Objects vary in scale, aspect, rotation, colour and shading; they may
overlap, be cut by the image border (``truncated=1``) or be marked ``difficult=1`` the way VOC does
for objects that are tiny, heavily occluded or barely visible against their background. Images get
sensor-like Gaussian noise and JPEG compression.

Every image is drawn from its own random stream seeded by ``(seed, image_number)``, so the files
are byte-identical for the same arguments and independent of generation order.
"""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgeprune.errors import ConfigError
from edgeprune.fileio import write_bytes, write_text

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon",
)

_SUPERSAMPLE = 4          # anti-aliasing factor for object masks
_MAX_IOU = 0.5            # a new object may overlap an earlier one up to this IoU
_MIN_KEEP_VISIBLE = 0.4   # ... and may hide at most 60 % of any earlier object
_DIFFICULT_VISIBLE = 0.55  # objects less visible than this are marked difficult
_P_TRUNCATED = 0.12       # probability of placing an object across the image border
_P_TINY = 0.05            # probability of a tiny object (always difficult)
_P_LOW_CONTRAST = 0.05    # probability of a barely visible object (always difficult)
_MIN_CONTRAST = 90.0      # RGB distance between a normal object and its local background
_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class _SceneParams:
    """Validated generation parameters shared by all images."""

    classes: tuple[str, ...]
    height: int
    width: int
    min_objects: int
    max_objects: int
    scale_range: tuple[float, float]
    difficult_below: float

    @property
    def short_side(self) -> int:
        return min(self.height, self.width)


@dataclass
class _Object:
    """One placed object: class, 1-based inclusive box and VOC flags."""

    name: str
    box: tuple[int, int, int, int]
    truncated: bool
    difficult: bool


@dataclass
class _Canvas:
    """The image being drawn plus, per pixel, the index of the object that owns it (-1: none)."""

    pixels: np.ndarray
    owner: np.ndarray
    areas: list[int] = field(default_factory=list)
    visible: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Mask:
    """An anti-aliased object mask already clipped to the image."""

    region: tuple[slice, slice]
    alpha: np.ndarray
    truncated: bool

    @property
    def solid(self) -> np.ndarray:
        return self.alpha >= 0.5


# --------------------------------------------------------------------------- validation


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Require a non-empty list of distinct known shape names."""
    valid = ", ".join(SHAPES)
    if isinstance(classes, str) or not classes:
        raise ConfigError(f"data.synthetic.classes: expected a non-empty list of: {valid}")
    unknown = [name for name in classes if name not in SHAPES]
    if unknown:
        raise ConfigError(
            f"data.synthetic.classes: unknown class {unknown[0]!r}; valid names are: {valid}"
        )
    if len(set(classes)) != len(classes):
        raise ConfigError(f"data.synthetic.classes: duplicate class names in {list(classes)}")
    return tuple(classes)


def _check_splits(splits: dict[str, int]) -> None:
    """Require positive integer image counts and no hand-made 'trainval' split."""
    if not splits:
        raise ConfigError("data.synthetic.splits: expected at least one split, e.g. {train: 800}")
    for name, count in splits.items():
        if not name or "/" in name or name.strip() != name:
            raise ConfigError(f"data.synthetic.splits: invalid split name {name!r}")
        if name == "trainval":
            raise ConfigError("data.synthetic.splits: 'trainval' is derived from train + val")
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ConfigError(
                f"data.synthetic.splits.{name}: expected a positive integer, got {count!r}"
            )


def _make_params(
    classes: Sequence[str],
    image_size: tuple[int, int],
    min_objects: int,
    max_objects: int,
    scale_range: tuple[float, float],
    difficult_below: float,
) -> _SceneParams:
    """Validate the scene arguments and bundle them."""
    height, width = (int(v) for v in image_size)
    if height < 16 or width < 16:
        raise ConfigError(f"data.synthetic.image_size: expected at least 16x16, got {image_size}")
    if not 0 <= min_objects <= max_objects or max_objects < 1:
        raise ConfigError(
            "data.synthetic.min_objects/max_objects: expected 0 <= min <= max and max >= 1, "
            f"got {min_objects}, {max_objects}"
        )
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high <= 1:
        raise ConfigError(
            f"data.synthetic.scale_range: expected 0 < low <= high <= 1, got {scale_range}"
        )
    if not 0 <= difficult_below < low:
        raise ConfigError(
            "data.synthetic.difficult_below: expected 0 <= value < scale_range low, "
            f"got {difficult_below}"
        )
    return _SceneParams(
        _check_classes(classes), height, width, min_objects, max_objects, (low, high),
        float(difficult_below),
    )


# --------------------------------------------------------------------------- shapes


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    """Vertices of a regular ``n``-gon on a circle of ``radius``."""
    angles = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    """A five-pointed star with inner radius 0.45."""
    outer, inner = _regular(5), _regular(5, 0.45, -math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _cross(arm: float = 0.36) -> np.ndarray:
    """A plus sign whose arms are ``2 * arm`` thick."""
    a = arm
    return np.array([
        (-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a),
        (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a),
    ], dtype=np.float64)


_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular(48),
    "ring": _regular(48),
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64),
    "diamond": np.array([(0, -1), (1, 0), (0, 1), (-1, 0)], dtype=np.float64),
    "triangle": _regular(3),
    "cross": _cross(),
    "star": _star(),
    "hexagon": _regular(6),
}

# (rotation range in degrees, base width/height aspect) per shape
_POSE: dict[str, tuple[float, float]] = {
    "circle": (180.0, 1.0), "ring": (180.0, 1.0), "square": (15.0, 1.0),
    "diamond": (12.0, 0.7), "triangle": (180.0, 1.0), "cross": (15.0, 1.0),
    "star": (180.0, 1.0), "hexagon": (180.0, 1.0),
}


@dataclass(frozen=True)
class _Pose:
    """Where and how a shape is drawn: centre, half sizes and rotation (radians)."""

    cx: float
    cy: float
    half_w: float
    half_h: float
    angle: float

    def transform(self, unit: np.ndarray) -> np.ndarray:
        """Map unit-square outline points to image coordinates."""
        scaled = unit * np.array([self.half_w, self.half_h])
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        rotated = scaled @ np.array([[cos, sin], [-sin, cos]])
        return rotated + np.array([self.cx, self.cy])

    def half_extent(self, unit: np.ndarray) -> tuple[float, float]:
        """Half width and height of the rotated outline's bounding box."""
        pts = self.transform(unit) - np.array([self.cx, self.cy])
        return float(np.abs(pts[:, 0]).max()), float(np.abs(pts[:, 1]).max())


def _polygons(name: str, pose: _Pose, hole: float) -> list[tuple[np.ndarray, int]]:
    """The polygons (image coordinates, fill value) that draw ``name``; rings add a hole."""
    outline = _OUTLINES[name]
    polys = [(pose.transform(outline), 255)]
    if name == "ring":
        polys.append((pose.transform(outline * hole), 0))
    return polys


def _render_mask(polys: list[tuple[np.ndarray, int]], height: int, width: int) -> _Mask | None:
    """Rasterise polygons with supersampling; clip to the image; None if nothing is visible."""
    pts = np.concatenate([p for p, _ in polys])
    x0, y0 = math.floor(pts[:, 0].min()) - 1, math.floor(pts[:, 1].min()) - 1
    x1, y1 = math.ceil(pts[:, 0].max()) + 1, math.ceil(pts[:, 1].max()) + 1
    ss = _SUPERSAMPLE
    img = Image.new("L", ((x1 - x0) * ss, (y1 - y0) * ss), 0)
    draw = ImageDraw.Draw(img)
    for poly, fill in polys:
        local = (poly - np.array([x0, y0])) * ss
        draw.polygon([(float(x), float(y)) for x, y in local], fill=fill)
    full = np.asarray(img.reduce(ss), dtype=np.float32) / np.float32(255.0)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    alpha = full[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    if not (alpha >= 0.5).any():
        return None
    truncated = int((full >= 0.5).sum()) > int((alpha >= 0.5).sum())
    return _Mask((slice(cy0, cy1), slice(cx0, cx1)), alpha, truncated)


def _mask_box(mask: _Mask) -> tuple[int, int, int, int]:
    """Tight 1-based inclusive box of the mask's solid pixels."""
    rows = np.flatnonzero(mask.solid.any(axis=1))
    cols = np.flatnonzero(mask.solid.any(axis=0))
    ys, xs = mask.region[0].start, mask.region[1].start
    return (xs + int(cols[0]) + 1, ys + int(rows[0]) + 1,
            xs + int(cols[-1]) + 1, ys + int(rows[-1]) + 1)


# --------------------------------------------------------------------------- background


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3).astype(np.float32)


def _ramp(height: int, width: int, angle: float) -> np.ndarray:
    """A ``height x width`` float32 ramp along direction ``angle``, from about -0.7 to 0.7."""
    xs = (np.arange(width, dtype=np.float32) / max(width, 1) - 0.5) * math.cos(angle)
    ys = (np.arange(height, dtype=np.float32) / max(height, 1) - 0.5) * math.sin(angle)
    return ys[:, None] + xs[None, :]


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear gradient between two random colours plus low-frequency colour noise."""
    proj = _ramp(height, width, rng.uniform(0, 2 * math.pi))
    t = np.clip(proj + 0.5, 0, 1)[..., None]
    c0, c1 = _random_colour(rng), _random_colour(rng)
    base = c0 * (1 - t) + c1 * t
    grid = rng.normal(0, 18, size=(4, 4, 3)).astype(np.float32)
    noise = np.stack([
        np.asarray(Image.fromarray(grid[..., c]).resize((width, height), Image.Resampling.BICUBIC))
        for c in range(3)
    ], axis=-1)
    return np.clip(base + noise, 0, 255)


def _blobs(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Low-contrast blurred ellipses: texture that is not an object."""
    width, height = img.size
    base = np.asarray(img, dtype=np.float32)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        local = base[int(min(cy, height - 1)), int(min(cx, width - 1))]
        colour = np.clip(local + rng.uniform(-35, 35, size=3), 0, 255)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=tuple(int(c) for c in colour))
    return img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.5, 3.5))))


def _clutter_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in rng.integers(0, 256, size=3))
    return r, g, b


def _lines_and_arcs(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int],
                    short: int) -> None:
    """Thin straight lines and open arcs (less than 200 degrees, so never a ring)."""
    width, height = size
    for _ in range(int(rng.integers(0, 4))):
        ends = rng.uniform(0, [width, height, width, height])
        draw.line([float(v) for v in ends], fill=_clutter_colour(rng),
                  width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.06, 0.2) * short
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        start = rng.uniform(0, 360)
        draw.arc((cx - r, cy - r, cx + r, cy + r), start, start + rng.uniform(60, 200),
                 fill=_clutter_colour(rng), width=int(rng.integers(1, 4)))


def _squiggles(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int],
               short: int) -> None:
    """Random-walk polylines, a bit like handwriting."""
    for _ in range(int(rng.integers(0, 3))):
        start = rng.uniform(0, size)
        steps = rng.normal(0, 0.04 * short, size=(int(rng.integers(4, 10)), 2))
        pts = np.cumsum(np.vstack([start, steps]), axis=0)
        draw.line([(float(x), float(y)) for x, y in pts], fill=_clutter_colour(rng),
                  width=int(rng.integers(1, 3)), joint="curve")


def _crescents(img: Image.Image, rng: np.random.Generator, short: int) -> None:
    """Filled crescents: a disc with an offset disc cut away."""
    width, height = img.size
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.04, 0.12) * short
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.uniform(0, 2 * math.pi)
        shift = rng.uniform(0.35, 0.7) * r
        mask = Image.new("L", img.size, 0)
        draw = ImageDraw.Draw(mask)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        ox, oy = cx + shift * math.cos(angle), cy + shift * math.sin(angle)
        draw.ellipse((ox - r, oy - r, ox + r, oy + r), fill=0)
        img.paste(_clutter_colour(rng), (0, 0, width, height), mask)


def _distractors(img: Image.Image, rng: np.random.Generator, short: int) -> None:
    """Sharp non-class clutter that a detector must learn to ignore."""
    draw = ImageDraw.Draw(img)
    _lines_and_arcs(draw, rng, img.size, short)
    _squiggles(draw, rng, img.size, short)
    _crescents(img, rng, short)


def _background(rng: np.random.Generator, params: _SceneParams) -> np.ndarray:
    """Gradient, blurred blobs and sharp distractors as a float32 ``H x W x 3`` array."""
    base = _gradient(rng, params.height, params.width)
    img = _blobs(Image.fromarray(base.astype(np.uint8)), rng)
    _distractors(img, rng, params.short_side)
    return np.asarray(img, dtype=np.float32).copy()


# --------------------------------------------------------------------------- objects


def _sample_pose(
    rng: np.random.Generator, name: str, params: _SceneParams, tiny: bool
) -> _Pose:
    """Random size, aspect, rotation and position (sometimes across the image border)."""
    max_rot, aspect = _POSE[name]
    if tiny:
        scale = rng.uniform(0.5, 1.0) * params.difficult_below
    else:
        scale = math.exp(rng.uniform(*np.log(params.scale_range)))
    aspect *= math.exp(rng.uniform(-0.25, 0.25))
    half = 0.5 * scale * params.short_side
    half_w, half_h = half * min(1.0, aspect), half * min(1.0, 1.0 / aspect)
    angle = math.radians(rng.uniform(-max_rot, max_rot))
    probe = _Pose(0.0, 0.0, half_w, half_h, angle)
    ex, ey = probe.half_extent(_OUTLINES[name])
    cx = rng.uniform(ex, max(ex, params.width - ex))
    cy = rng.uniform(ey, max(ey, params.height - ey))
    if rng.random() < _P_TRUNCATED and not tiny:
        cx, cy = _cross_border(rng, cx, cy, ex, ey, params)
    return _Pose(cx, cy, half_w, half_h, angle)


def _cross_border(
    rng: np.random.Generator, cx: float, cy: float, ex: float, ey: float, params: _SceneParams
) -> tuple[float, float]:
    """Move the centre so that 20-50 % of the object sticks out of one random border."""
    out = rng.uniform(0.2, 0.5)
    side = int(rng.integers(0, 4))
    if side == 0:
        cx = ex * (1 - 2 * out)
    elif side == 1:
        cx = params.width - ex * (1 - 2 * out)
    elif side == 2:
        cy = ey * (1 - 2 * out)
    else:
        cy = params.height - ey * (1 - 2 * out)
    return cx, cy


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two inclusive pixel boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def _acceptable(mask: _Mask, box: tuple[int, int, int, int], canvas: _Canvas,
                objects: list[_Object]) -> bool:
    """Reject placements overlapping an earlier box too much or hiding most of an object."""
    if any(_iou(box, obj.box) > _MAX_IOU for obj in objects):
        return False
    covered = canvas.owner[mask.region][mask.solid]
    counts = np.bincount(covered[covered >= 0], minlength=len(objects))
    return all(
        visible - counts[index] >= _MIN_KEEP_VISIBLE * area
        for index, (visible, area) in enumerate(zip(canvas.visible, canvas.areas, strict=True))
    )


def _pick_colour(rng: np.random.Generator, local: np.ndarray, low_contrast: bool) -> np.ndarray:
    """An object colour far from the local background mean (or deliberately close to it)."""
    if low_contrast:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        return np.clip(local + direction * rng.uniform(14, 24), 0, 255).astype(np.float32)
    for _ in range(30):
        colour = _random_colour(rng)
        if float(np.linalg.norm(colour - local)) >= _MIN_CONTRAST:
            return colour
    return np.where(local > 127.5, 0.0, 255.0).astype(np.float32)


def _paint(canvas: _Canvas, mask: _Mask, colour: np.ndarray, rng: np.random.Generator) -> None:
    """Alpha-blend a shaded colour through the mask and record pixel ownership."""
    proj = _ramp(*mask.alpha.shape, rng.uniform(0, 2 * math.pi))
    shade = proj[..., None] * np.float32(rng.uniform(-50, 50))
    fill = np.clip(colour + shade, 0, 255)
    alpha = mask.alpha[..., None]
    region = canvas.pixels[mask.region]
    canvas.pixels[mask.region] = region * (1 - alpha) + fill * alpha
    index = len(canvas.areas)
    owned = canvas.owner[mask.region]
    previous = owned[mask.solid]
    for prev in np.unique(previous[previous >= 0]):
        canvas.visible[prev] -= int((previous == prev).sum())
    owned[mask.solid] = index
    canvas.areas.append(int(mask.solid.sum()))
    canvas.visible.append(canvas.areas[-1])


def _place_object(
    rng: np.random.Generator, params: _SceneParams, canvas: _Canvas, objects: list[_Object]
) -> tuple[_Object, bool] | None:
    """Try to place one random object; returns it and whether it is low-contrast, or None."""
    name = params.classes[int(rng.integers(0, len(params.classes)))]
    tiny = rng.random() < _P_TINY and params.difficult_below > 0
    low_contrast = rng.random() < _P_LOW_CONTRAST
    hole = rng.uniform(0.45, 0.65)
    for _ in range(_PLACEMENT_TRIES):
        pose = _sample_pose(rng, name, params, tiny)
        mask = _render_mask(_polygons(name, pose, hole), params.height, params.width)
        if mask is None:
            continue
        box = _mask_box(mask)
        if not _acceptable(mask, box, canvas, objects):
            continue
        local = canvas.pixels[mask.region][mask.solid].mean(axis=0)
        _paint(canvas, mask, _pick_colour(rng, local, low_contrast), rng)
        return _Object(name, box, mask.truncated, False), low_contrast
    return None


def _mark_difficult(objects: list[_Object], low_contrast: list[bool], canvas: _Canvas,
                    params: _SceneParams) -> None:
    """Flag tiny, heavily occluded and low-contrast objects as difficult."""
    min_side = params.difficult_below * params.short_side
    for index, obj in enumerate(objects):
        xmin, ymin, xmax, ymax = obj.box
        small = min(xmax - xmin + 1, ymax - ymin + 1) < min_side
        hidden = canvas.visible[index] < _DIFFICULT_VISIBLE * canvas.areas[index]
        obj.difficult = small or hidden or low_contrast[index]


def _render_scene(
    params: _SceneParams, rng: np.random.Generator
) -> tuple[np.ndarray, list[_Object]]:
    """Draw one image (uint8 ``H x W x 3``) and return it with its objects."""
    pixels = _background(rng, params)
    canvas = _Canvas(pixels, np.full((params.height, params.width), -1, dtype=np.int32))
    objects: list[_Object] = []
    low_contrast: list[bool] = []
    for _ in range(int(rng.integers(params.min_objects, params.max_objects + 1))):
        placed = _place_object(rng, params, canvas, objects)
        if placed is not None:
            objects.append(placed[0])
            low_contrast.append(placed[1])
    _mark_difficult(objects, low_contrast, canvas, params)
    sigma = np.float32(rng.uniform(1.5, 6.0))
    noisy = canvas.pixels + sigma * rng.standard_normal(canvas.pixels.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), objects


# --------------------------------------------------------------------------- files


def _sub(parent: ET.Element, tag: str, text: str | int) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = str(text)
    return child


def _annotation_xml(folder: str, image_id: str, params: _SceneParams,
                    objects: list[_Object]) -> str:
    """VOC-style annotation XML for one image."""
    root = ET.Element("annotation")
    _sub(root, "folder", folder)
    _sub(root, "filename", f"{image_id}.jpg")
    source = ET.SubElement(root, "source")
    _sub(source, "database", "edgeprune synthetic shapes")
    size = ET.SubElement(root, "size")
    _sub(size, "width", params.width)
    _sub(size, "height", params.height)
    _sub(size, "depth", 3)
    _sub(root, "segmented", 0)
    for obj in objects:
        node = ET.SubElement(root, "object")
        _sub(node, "name", obj.name)
        _sub(node, "pose", "Unspecified")
        _sub(node, "truncated", int(obj.truncated))
        _sub(node, "difficult", int(obj.difficult))
        bndbox = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box, strict=True):
            _sub(bndbox, tag, value)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _empty_counts(classes: Sequence[str]) -> dict[str, Any]:
    return {"images": 0, "objects": 0, "difficult": 0, "truncated": 0,
            "per_class": {name: 0 for name in classes}}


def _count(summary: dict[str, Any], objects: list[_Object]) -> None:
    summary["images"] += 1
    for obj in objects:
        summary["objects"] += 1
        summary["difficult"] += int(obj.difficult)
        summary["truncated"] += int(obj.truncated)
        summary["per_class"][obj.name] += 1


def _write_imageset(root: Path, split: str, image_ids: list[str]) -> None:
    write_text(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in image_ids))


def _split_ids(splits: dict[str, int]) -> dict[str, list[str]]:
    """Consecutive 6-digit ids, assigned split by split in the dict's order, starting at 1."""
    ids: dict[str, list[str]] = {}
    start = 1
    for name, count in splits.items():
        ids[name] = [f"{n:06d}" for n in range(start, start + count)]
        start += count
    return ids


def generate_dataset(
    root: Path,
    classes: Sequence[str],
    splits: dict[str, int],
    image_size: tuple[int, int],
    seed: int,
    min_objects: int = 1,
    max_objects: int = 6,
    scale_range: tuple[float, float] = (0.12, 0.5),
    difficult_below: float = 0.08,
    jpeg_quality: int = 92,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a synthetic VOC-layout dataset under ``root`` and return a summary.

    ``image_size`` is ``(height, width)``. ``splits`` maps split names to image counts, e.g.
    ``{"train": 800, "val": 100, "test": 200}``; ids ``000001...`` are assigned split by split
    and ``trainval.txt`` lists train followed by val. ``scale_range`` is the object size as a
    fraction of the shorter image side (sampled log-uniformly); objects whose box is shorter than
    ``difficult_below`` of that side are marked difficult.

    Files: ``root/JPEGImages/<id>.jpg``, ``root/Annotations/<id>.xml`` and
    ``root/ImageSets/Main/<split>.txt``, each written atomically. The summary holds, per split and
    in total, the number of images, objects, difficult and truncated objects and objects per class.
    """
    params = _make_params(classes, image_size, min_objects, max_objects, scale_range,
                          difficult_below)
    _check_splits(splits)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"data.synthetic.seed: expected a non-negative integer, got {seed!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"data.synthetic.jpeg_quality: expected 1..100, got {jpeg_quality}")
    root = Path(root)
    ids = _split_ids(splits)
    total = sum(splits.values())
    summary: dict[str, Any] = {
        "seed": seed, "image_size": [params.height, params.width],
        "classes": list(params.classes), "splits": {}, "total": _empty_counts(params.classes),
    }
    done = 0
    for split, split_ids in ids.items():
        counts = _empty_counts(params.classes)
        for image_id in split_ids:
            rng = np.random.default_rng([seed, int(image_id)])
            image, objects = _render_scene(params, rng)
            write_bytes(root / "JPEGImages" / f"{image_id}.jpg", _jpeg_bytes(image, jpeg_quality))
            write_text(root / "Annotations" / f"{image_id}.xml",
                       _annotation_xml(root.name, image_id, params, objects))
            _count(counts, objects)
            _count(summary["total"], objects)
            done += 1
            if progress is not None:
                progress(done, total)
        summary["splits"][split] = counts
        _write_imageset(root, split, split_ids)
    _write_imageset(root, "trainval", ids.get("train", []) + ids.get("val", []))
    return summary
