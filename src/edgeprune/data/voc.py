"""Reading Pascal VOC style datasets: annotation XML, image sets and JPEG images.

Coordinates follow the VOC devkit: ``xmin ymin xmax ymax`` are 1-based pixel indices and the box
includes both end pixels, so a box covering the whole of a ``W x H`` image is ``(1, 1, W, H)``.
Boxes are kept exactly as written in the XML (VOC2012 sometimes writes floats).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from edgeprune.errors import ConfigError, DataError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each item of a long loop."""


@dataclass(frozen=True, eq=False)
class Annotation:
    """The ground truth of one image.

    ``boxes`` is ``(n, 4)`` float32 ``(xmin, ymin, xmax, ymax)`` in VOC pixel coordinates, and
    ``names``, ``difficult`` and ``truncated`` hold one entry per box. Equality is identity
    (numpy fields make value equality ambiguous).
    """

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray
    names: tuple[str, ...]
    difficult: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


# --------------------------------------------------------------------------- XML parsing


def _child_text(elem: ET.Element, tag: str, xml_path: Path, where: str) -> str:
    """Return the stripped text of ``elem/tag`` or raise a DataError saying what is missing."""
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{xml_path}: expected a non-empty <{tag}> in {where}")
    return child.text.strip()


def _number(text: str, xml_path: Path, what: str) -> float:
    """Parse ``text`` as a finite float, naming the file and field on failure."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{xml_path}: expected a number for {what}, got {text!r}") from None
    if not np.isfinite(value):
        raise DataError(f"{xml_path}: expected a finite number for {what}, got {text!r}")
    return value


def _flag(obj: ET.Element, tag: str, xml_path: Path, where: str) -> bool:
    """Read an optional 0/1 flag such as <difficult>; a missing tag means 0."""
    child = obj.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return False
    text = child.text.strip()
    value = _number(text, xml_path, f"<{tag}> in {where}")
    if value not in (0.0, 1.0):
        raise DataError(f"{xml_path}: expected 0 or 1 for <{tag}> in {where}, got {text!r}")
    return value == 1.0


def _image_size(root: ET.Element, xml_path: Path) -> tuple[int, int]:
    """Read ``(width, height)`` from <size>, requiring positive integers."""
    size = root.find("size")
    if size is None:
        raise DataError(f"{xml_path}: expected a <size> element with <width> and <height>")
    dims = []
    for tag in ("width", "height"):
        value = _number(_child_text(size, tag, xml_path, "<size>"), xml_path, f"<size><{tag}>")
        if value <= 0 or value != int(value):
            raise DataError(f"{xml_path}: expected a positive integer <size><{tag}>, got {value}")
        dims.append(int(value))
    return dims[0], dims[1]


def _read_box(
    obj: ET.Element, xml_path: Path, where: str, width: int, height: int
) -> tuple[float, float, float, float]:
    """Read and check one <bndbox>; it may extend at most one pixel beyond the image."""
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DataError(f"{xml_path}: expected a <bndbox> in {where}")
    xmin, ymin, xmax, ymax = (
        _number(_child_text(bndbox, tag, xml_path, f"<bndbox> of {where}"), xml_path,
                f"<{tag}> in {where}")
        for tag in ("xmin", "ymin", "xmax", "ymax")
    )
    if xmax < xmin or ymax < ymin:
        raise DataError(
            f"{xml_path}: expected xmin <= xmax and ymin <= ymax in {where}, "
            f"got ({xmin}, {ymin}, {xmax}, {ymax})"
        )
    if xmin < 0 or ymin < 0 or xmax > width + 1 or ymax > height + 1:
        raise DataError(
            f"{xml_path}: expected {where} inside the {width}x{height} image (1-based pixels), "
            f"got ({xmin}, {ymin}, {xmax}, {ymax})"
        )
    return xmin, ymin, xmax, ymax


def _parse_tree(xml_path: Path) -> ET.Element:
    """Parse an XML file, turning I/O and syntax errors into DataError."""
    try:
        return ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise DataError(f"{xml_path}: annotation file not found") from None
    except ET.ParseError as exc:
        raise DataError(f"{xml_path}: malformed annotation XML ({exc})") from None
    except OSError as exc:
        raise DataError(f"{xml_path}: cannot read annotation ({exc})") from None


def _image_name(filename: str, xml_path: Path) -> str:
    """``<filename>`` of an annotation, refused unless it names a file inside the image
    folder (no absolute path, no ``..``): a dataset must not make the loader read elsewhere."""
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    if not parts or filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise DataError(f"{xml_path}: <filename> {filename!r} must name a file inside the "
                        "dataset's JPEGImages folder")
    return filename


def parse_annotation(
    xml_path: Path, image_dir: Path, *, check_image: bool = True, image_id: str | None = None
) -> Annotation:
    """Parse one VOC annotation XML.

    The image path is ``image_dir / <filename>`` (``<stem>.jpg`` when <filename> is absent). With
    ``check_image`` the image must exist; evaluation passes ``False`` because it needs no pixels.
    ``image_id`` defaults to the file stem. Every problem raises DataError naming ``xml_path``.
    """
    xml_path = Path(xml_path)
    root = _parse_tree(xml_path)
    width, height = _image_size(root, xml_path)
    filename_elem = root.find("filename")
    filename = (filename_elem.text or "").strip() if filename_elem is not None else ""
    image_path = Path(image_dir) / _image_name(filename or f"{xml_path.stem}.jpg", xml_path)
    if check_image and not image_path.is_file():
        raise DataError(f"{xml_path}: image file {image_path} not found")

    boxes: list[tuple[float, float, float, float]] = []
    names: list[str] = []
    difficult: list[bool] = []
    truncated: list[bool] = []
    for index, obj in enumerate(root.findall("object")):
        where = f"<object> #{index + 1}"
        names.append(_child_text(obj, "name", xml_path, where))
        difficult.append(_flag(obj, "difficult", xml_path, where))
        truncated.append(_flag(obj, "truncated", xml_path, where))
        boxes.append(_read_box(obj, xml_path, where, width, height))
    return Annotation(
        image_id=image_id if image_id is not None else xml_path.stem,
        image_path=image_path,
        width=width,
        height=height,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        names=tuple(names),
        difficult=np.asarray(difficult, dtype=bool),
        truncated=np.asarray(truncated, dtype=bool),
    )


# --------------------------------------------------------------------------- image sets / splits


def read_imageset(path: Path) -> list[str]:
    """Read an ImageSets/Main/<split>.txt file: one image id per line, blank lines ignored.

    Only the first whitespace-separated field of a line is used, so the per-class files
    (``<id> 1``) also work.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"{path}: image set file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: image set is not UTF-8 text (byte {exc.start}); expected one "
                        "image id per line") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image set ({exc})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def load_annotations(
    annotation_dir: Path,
    image_ids: Sequence[str],
    image_dir: Path | None = None,
    *,
    check_images: bool = True,
    id_prefix: str = "",
) -> list[Annotation]:
    """Parse ``annotation_dir/<id>.xml`` for every id, in order.

    ``image_dir`` defaults to the ``JPEGImages`` folder beside ``annotation_dir``. Each resulting
    ``image_id`` is ``id_prefix + id``.
    """
    annotation_dir = Path(annotation_dir)
    if image_dir is None:
        image_dir = annotation_dir.parent / "JPEGImages"
    return [
        parse_annotation(
            annotation_dir / f"{image_id}.xml", image_dir,
            check_image=check_images, image_id=id_prefix + image_id,
        )
        for image_id in image_ids
    ]


def _parse_set(spec: str) -> tuple[str, str]:
    """Split ``"<YEAR_DIR>/<split>"`` into its two parts."""
    year_dir, sep, split = spec.strip().rpartition("/")
    if not sep or not year_dir or not split:
        raise ConfigError(f"image set {spec!r}: expected the form '<YEAR_DIR>/<split>'")
    return year_dir, split


def load_split(
    devkit_root: Path, sets: Sequence[str], *, check_images: bool = True
) -> list[Annotation]:
    """Load the annotations of one or more image sets, e.g. ``["VOC2007/trainval"]``.

    Reads ``<root>/<YEAR_DIR>/ImageSets/Main/<split>.txt`` and the listed
    ``<root>/<YEAR_DIR>/Annotations/<id>.xml``; images are ``<root>/<YEAR_DIR>/JPEGImages/...``.

    Image ids: when every set lives in the same year dir the plain id is used; when the sets span
    several year dirs every id becomes ``"<YEAR_DIR>_<id>"`` so that ids stay unique. An id listed
    twice raises DataError.
    """
    parsed = [_parse_set(spec) for spec in sets]
    if not parsed:
        raise ConfigError("load_split: expected at least one image set")
    prefixed = len({year_dir for year_dir, _ in parsed}) > 1
    annotations: list[Annotation] = []
    seen: dict[str, str] = {}
    for (year_dir, split), spec in zip(parsed, sets, strict=True):
        base = Path(devkit_root) / year_dir
        ids = read_imageset(base / "ImageSets" / "Main" / f"{split}.txt")
        for ann in load_annotations(
            base / "Annotations", ids, base / "JPEGImages",
            check_images=check_images, id_prefix=f"{year_dir}_" if prefixed else "",
        ):
            if ann.image_id in seen:
                raise DataError(
                    f"image id {ann.image_id!r} is listed in both {seen[ann.image_id]!r} "
                    f"and {spec!r}"
                )
            seen[ann.image_id] = spec
            annotations.append(ann)
    return annotations


# --------------------------------------------------------------------------- images


def load_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Load an image as uint8 ``H x W x 3`` RGB, optionally resized to ``size = (height, width)``.

    Resizing is bilinear. A missing or unreadable file raises DataError naming it.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            if size is not None:
                rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def load_images(
    annotations: Sequence[Annotation],
    size: tuple[int, int] | None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Load every annotation's image into one ``(N, H, W, 3)`` uint8 array.

    With ``size=None`` all images must already share one size, otherwise DataError.
    """
    total = len(annotations)
    batch: np.ndarray | None = None
    for index, ann in enumerate(annotations):
        image = load_image(ann.image_path, size)
        if batch is None:
            batch = np.empty((total, *image.shape), dtype=np.uint8)
        elif image.shape != batch.shape[1:]:
            raise DataError(
                f"{ann.image_path}: image is {image.shape[1]}x{image.shape[0]} but earlier images "
                f"are {batch.shape[2]}x{batch.shape[1]}; pass a size to resize them"
            )
        batch[index] = image
        if progress is not None:
            progress(index + 1, total)
    if batch is None:
        shape = (0, *size, 3) if size is not None else (0, 0, 0, 3)
        return np.empty(shape, dtype=np.uint8)
    return batch


# --------------------------------------------------------------------------- box conventions


def normalized_boxes(ann: Annotation) -> np.ndarray:
    """Convert an annotation's boxes to ``[0, 1]`` image fractions, shape ``(n, 4)`` float32.

    A 1-based inclusive pixel box ``(xmin, ymin, xmax, ymax)`` covers the continuous span
    ``[xmin - 1, xmax]``, so the result is ``((xmin-1)/W, (ymin-1)/H, xmax/W, ymax/H)`` clipped
    to ``[0, 1]``. :func:`to_voc_pixels` is the inverse.
    """
    boxes = ann.boxes.astype(np.float64).reshape(-1, 4)
    scale = np.array([ann.width, ann.height, ann.width, ann.height], dtype=np.float64)
    offset = np.array([1.0, 1.0, 0.0, 0.0])
    return np.clip((boxes - offset) / scale, 0.0, 1.0).astype(np.float32)


def to_voc_pixels(boxes_norm: np.ndarray, width: int, height: int) -> np.ndarray:
    """Invert :func:`normalized_boxes`: fractions to 1-based pixel boxes, float32 ``(n, 4)``.

    The result is ``(x0*W + 1, y0*H + 1, x1*W, y1*H)`` clipped to ``[1, W]`` and ``[1, H]``.
    """
    boxes = np.asarray(boxes_norm, dtype=np.float64).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float64)
    pixels = boxes * scale + np.array([1.0, 1.0, 0.0, 0.0])
    upper = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(pixels, 1.0, upper).astype(np.float32)


def class_indices(ann: Annotation, classes: Sequence[str]) -> np.ndarray:
    """Map each box's class name to its index in ``classes`` (int32)."""
    lookup = {name: index for index, name in enumerate(classes)}
    unknown = [name for name in ann.names if name not in lookup]
    if unknown:
        raise DataError(
            f"image {ann.image_id!r}: class {unknown[0]!r} is not one of the configured classes "
            f"({', '.join(classes)})"
        )
    return np.array([lookup[name] for name in ann.names], dtype=np.int32)


def load_sets(root: str | Path, sets: Sequence[str]) -> list[Annotation]:
    """Annotations of the image sets ``sets`` ("<YEAR_DIR>/<split>") under a VOCdevkit root."""
    return load_split(Path(root), list(sets))
