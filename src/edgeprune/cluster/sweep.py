"""Single-layer sweeps: prune one layer's filters in ascending θ_MW order, a few at a time, and
keep every thinned model's deployment files, cost and accuracy for timing on each target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeprune.cluster.algorithm import sweep_points
from edgeprune.cluster.convert import write_artifacts
from edgeprune.cluster.cost import model_cost
from edgeprune.cluster.importance import ascending_order, conv_kernel, theta_mw
from edgeprune.cluster.measure import TestSet, model_maps
from edgeprune.cluster.surgery import prune_filters
from edgeprune.models import DetectorSpec


def sweep_layer(model: Any, spec: DetectorSpec, layer: str, step: int, min_left: int,
                formats: tuple[str, ...], out_dir: Path, test: TestSet, threads: int,
                log: Callable[[str], None], accuracy: str = "keras",
                keras: Any = None) -> list[dict[str, Any]]:
    """One row per point (filters left, from the full width down to ``min_left``): removed
    filter indices, parameters, MACs, conversion seconds and mAP (``mAP_keras``, or
    ``mAP_<format>`` per artifact with ``accuracy="per_format"``; one evaluator for all).
    Files are ``<out_dir>/<left>.<suffix>``."""
    scores = theta_mw(conv_kernel(model, layer))
    order = ascending_order(scores)
    width = len(scores)
    rows = []
    for left in sweep_points(width, step, min_left):
        removed = sorted(int(i) for i in order[:width - left])
        thin = prune_filters(model, spec, {layer: removed}, keras)[0] if removed else model
        arts = write_artifacts(thin, out_dir / f"{left:04d}", formats)
        row: dict[str, Any] = {"layer": layer, "filters_left": left, "pruned": width - left,
                               "removed": removed, **model_cost(thin)}
        for fmt, art in arts.items():
            row[f"file_{fmt}"] = art.path.name
            row[f"convert_s_{fmt}"] = art.seconds
        maps = model_maps(thin, arts, accuracy, test, threads)
        row.update(maps)
        log(f"{layer}: {left}/{width} filters left, {row['macs']:,} MACs, "
            + ", ".join(f"{k}={v:.4f}" for k, v in maps.items()) + ", convert "
            + ", ".join(f"{f} {a.seconds:.1f}s" for f, a in arts.items()))
        rows.append(row)
    return rows
