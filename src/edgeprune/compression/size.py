"""Model size measures: raw bytes, gzip bytes, parameters and non-zero parameters."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

MB = 1024 * 1024


def file_sizes(path: str | Path) -> dict[str, float]:
    """Raw and gzip-compressed (level 9) size of a model file; MB are MiB, as TF tools print."""
    data = Path(path).read_bytes()
    gz = len(gzip.compress(data, compresslevel=9, mtime=0))
    return {"size_bytes": len(data), "gzip_bytes": gz,
            "size_mb": len(data) / MB, "gzip_mb": gz / MB}


def weight_counts(weights: list[np.ndarray]) -> dict[str, int]:
    """Total and non-zero entries over a list of weight arrays."""
    total = int(sum(w.size for w in weights))
    nonzero = int(sum(np.count_nonzero(w) for w in weights))
    return {"params": total, "nonzero_params": nonzero}


def keras_counts(model: Any) -> dict[str, int]:
    """Parameter counts of a Keras model (all weights, trainable or not)."""
    return weight_counts([np.asarray(w) for w in model.get_weights()])
