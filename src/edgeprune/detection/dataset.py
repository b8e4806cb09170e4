"""Bridge from VOC-layout annotations (generated or real) to in-memory training arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeprune.data.voc import Annotation, class_indices, load_images, normalized_boxes
from edgeprune.detection.train import DetectionData


def to_detection_data(annotations: Sequence[Annotation], classes: Sequence[str],
                      input_size: tuple[int, int], keep_difficult: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> DetectionData:
    """Load and resize images to ``input_size`` (H, W) and collect normalised boxes + labels.

    ``difficult`` boxes are left out of training targets unless ``keep_difficult``.
    """
    images = load_images(annotations, input_size, progress)
    boxes, labels = [], []
    for ann in annotations:
        keep = np.ones(len(ann.names), bool) if keep_difficult else ~ann.difficult
        boxes.append(normalized_boxes(ann)[keep])
        labels.append(class_indices(ann, classes)[keep])
    return DetectionData(images=images, boxes=boxes, labels=labels)
