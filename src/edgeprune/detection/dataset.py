"""Bridge from VOC-layout annotations (generated or real) to training data: in memory
(:func:`to_detection_data`, small subsets) or as files read one image at a time by the training
input pipeline (:func:`detection_files`, any size)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeprune.data.voc import Annotation, class_indices, load_image, load_images, normalized_boxes
from edgeprune.detection.train import DetectionData
from edgeprune.errors import DataError


def _targets(annotations: Sequence[Annotation], classes: Sequence[str],
             keep_difficult: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised boxes and 0-based labels per image; ``difficult`` boxes left out unless
    ``keep_difficult``."""
    boxes, labels = [], []
    for ann in annotations:
        keep = np.ones(len(ann.names), bool) if keep_difficult else ~ann.difficult
        boxes.append(normalized_boxes(ann)[keep])
        labels.append(class_indices(ann, classes)[keep])
    return boxes, labels


def to_detection_data(annotations: Sequence[Annotation], classes: Sequence[str],
                      input_size: tuple[int, int], keep_difficult: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> DetectionData:
    """Load and resize images to ``input_size`` (H, W) into memory and collect normalised boxes
    + labels. ``difficult`` boxes are left out of training targets unless ``keep_difficult``.
    """
    images = load_images(annotations, input_size, progress)
    boxes, labels = _targets(annotations, classes, keep_difficult)
    return DetectionData(images=images, boxes=boxes, labels=labels)


#: Decoded, resized images kept in memory per training process, at most this many bytes: the
#: default split (1000 images at 128x128, 49 MB) is decoded once, VOC 07+12 at 300x300
#: (4.5 GB) mostly streams from its JPEGs every epoch.
CACHE_BYTES = 512 * 2**20


@dataclass
class DetectionFiles:
    """Training images on disk: each is decoded and resized to ``size`` (H, W) when the input
    pipeline asks for it; the first ``cache_bytes`` worth of them stay decoded for later
    epochs, the rest is read again (memory holds a few batches, not the split)."""

    paths: list[Path]
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    size: tuple[int, int]
    cache_bytes: int = CACHE_BYTES
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        img = load_image(self.paths[index], self.size)
        if (len(self._cache) + 1) * img.nbytes <= self.cache_bytes:
            img.setflags(write=False)  # shared by later epochs: nobody may edit it in place
            self._cache[index] = img
        return img

    @property
    def input_size(self) -> tuple[int, int]:
        return self.size


def detection_files(annotations: Sequence[Annotation], classes: Sequence[str],
                    input_size: tuple[int, int], keep_difficult: bool = False) -> DetectionFiles:
    """:class:`DetectionFiles` of ``annotations``; a missing image stops here with an error
    naming it (an unreadable one stops the training with an error naming it)."""
    paths = [Path(ann.image_path) for ann in annotations]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: image file not found")
    boxes, labels = _targets(annotations, classes, keep_difficult)
    return DetectionFiles(paths=paths, boxes=boxes, labels=labels,
                          size=(int(input_size[0]), int(input_size[1])))
