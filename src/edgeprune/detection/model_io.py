"""Saving and loading detectors with their spec (architecture, widths, anchor layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.detection.boxes import AnchorSpec, generate_anchors
from edgeprune.detection.models import DetectorSpec, feature_sizes
from edgeprune.errors import DataError
from edgeprune.fileio import atomic_path, read_json, write_json


def save_keras(model: Any, path: str | Path) -> None:
    """Save a Keras model atomically (format from the suffix, ``.keras`` recommended)."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_keras(path: str | Path, keras: Any | None = None) -> Any:
    """Load a saved detector without its training configuration."""
    if keras is None:
        from edgeprune.tfenv import setup

        _, keras = setup()
    if not Path(path).exists():
        raise DataError(f"model file {path} does not exist")
    return keras.models.load_model(path, compile=False)


def save_spec(spec: DetectorSpec, model: Any, path: str | Path, **extra: Any) -> None:
    """Write the spec plus the head feature sizes (so any runtime can rebuild the anchors)."""
    write_json(path, {**spec.to_dict(), "feature_sizes": [list(s) for s in feature_sizes(model)],
                      **extra})


def load_spec(path: str | Path) -> tuple[DetectorSpec, dict[str, Any]]:
    """Read a spec JSON written by :func:`save_spec`; returns the spec and the raw dict."""
    if not Path(path).exists():
        raise DataError(f"detector spec {path} does not exist")
    raw = read_json(path)
    return DetectorSpec.from_dict(raw), raw


def anchors_from_spec(raw: dict[str, Any]) -> np.ndarray:
    """Anchors for a spec dict written by :func:`save_spec`."""
    sizes = tuple((int(h), int(w)) for h, w in raw["feature_sizes"])
    return generate_anchors(AnchorSpec(sizes, float(raw["min_scale"]), float(raw["max_scale"]),
                                       tuple(float(a) for a in raw["aspect_ratios"])))
