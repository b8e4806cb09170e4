"""Single-layer sweeps: prune one layer's filters in ascending θ_MW order, a few at a time, and
keep every thinned model's deployment files, cost and accuracy for timing on each target.

Two scopes per swept layer: the whole network (the paper's Figures 5 and 8: the layer thinned
inside the detector, its consumers with it) and, optionally, the layer alone
(:func:`edgeprune.compression.cluster.isolate.isolate_layer`: its unit with its real input shape,
thinned
the same way), whose latency staircase is not diluted by the rest of the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeprune.compression.cluster.algorithm import sweep_points
from edgeprune.compression.cluster.backend import Backend, keras_backend
from edgeprune.compression.cluster.convert import Artifact
from edgeprune.compression.cluster.importance import ascending_order
from edgeprune.compression.cluster.measure import TestSet, format_maps, model_maps
from edgeprune.detection.models import DetectorSpec


def window_points(width: int, step: int, min_left: int, max_removed: int | None) -> list[int]:
    """Filters left at each sweep point: ``width, width - step, …`` down to ``min_left``, and
    no further than ``max_removed`` filters removed (None: no window)."""
    points = sweep_points(width, step, min_left)
    if max_removed is None:
        return points
    return [left for left in points if width - left <= max_removed]


def _removal_order(model: Any, layer: str, backend: Backend) -> tuple[list[int], int]:
    scores = backend.scores(model, [layer])[layer]
    return [int(i) for i in ascending_order(scores)], len(scores)


def _point_row(layer: str, scope: str, left: int, width: int, removed: list[int],
               cost: dict[str, int], arts: dict[str, Artifact]) -> dict[str, Any]:
    """One sweep point's row: layer, scope, filters left and pruned, removed indices, the
    parameters and MACs (``cost``), and each artifact's file name and conversion seconds."""
    row: dict[str, Any] = {"layer": layer, "scope": scope, "filters_left": left,
                           "pruned": width - left, "removed": removed, **cost}
    for fmt, art in arts.items():
        row[f"file_{fmt}"] = art.path.name
        row[f"convert_s_{fmt}"] = art.seconds
    return row


def sweep_layer(model: Any, spec: DetectorSpec, layer: str, step: int, min_left: int,
                formats: tuple[str, ...], out_dir: Path, test: TestSet, threads: int,
                log: Callable[[str], None], accuracy: str = "keras",
                keras: Any = None, max_removed: int | None = None,
                backend: Backend | None = None) -> list[dict[str, Any]]:
    """Whole-network sweep: one row per point (filters left, from the full width down to
    ``min_left`` or ``max_removed`` filters removed): removed filter indices, parameters, MACs,
    conversion seconds and mAP (``mAP_<backend>`` on the framework model, or ``mAP_<format>``
    per artifact with ``accuracy="per_format"``; one evaluator for all). Files are
    ``<out_dir>/<left>.<suffix>``. ``backend`` (default: Keras) ranks, prunes and converts."""
    b = backend or keras_backend(keras)
    order, width = _removal_order(model, layer, b)
    rows = []
    for left in window_points(width, step, min_left, max_removed):
        removed = sorted(order[:width - left])
        thin = b.prune(model, spec, {layer: removed})[0] if removed else model
        arts = b.artifacts(thin, out_dir / f"{left:04d}", formats)
        row = _point_row(layer, "network", left, width, removed, b.cost(thin), arts)
        maps = model_maps(thin, arts, accuracy, test, threads, b.runner(thin), b.name)
        row.update(maps)
        log(f"{layer}: {left}/{width} filters left, {row['macs']:,} MACs, "
            + format_maps(maps) + ", convert "
            + ", ".join(f"{f} {a.seconds:.1f}s" for f, a in arts.items()))
        rows.append(row)
    return rows


def sweep_isolated(model: Any, layer: str, step: int, min_left: int, formats: tuple[str, ...],
                   out_dir: Path, log: Callable[[str], None], keras: Any = None,
                   max_removed: int | None = None,
                   backend: Backend | None = None) -> list[dict[str, Any]]:
    """Isolated-layer sweep: the same removal order as :func:`sweep_layer`, applied to the
    layer's unit alone; one row per point with filters left, removed indices, parameters, MACs
    of the unit, files ``<out_dir>/layer_<left>.<suffix>`` and conversion seconds (no mAP: the
    unit is not a detector)."""
    b = backend or keras_backend(keras)
    order, width = _removal_order(model, layer, b)
    rows = []
    for left in window_points(width, step, min_left, max_removed):
        removed = sorted(order[:width - left])
        keep = sorted(set(range(width)) - set(removed))
        unit = b.isolate(model, layer, keep)
        arts = b.unit_artifacts(unit, out_dir / f"layer_{left:04d}", formats)
        rows.append(_point_row(layer, "layer", left, width, removed, b.cost(unit), arts))
    log(f"{layer} alone: {len(rows)} points from {width} filters, unit input "
        f"{tuple(b.unit_shape(model, layer))}")
    return rows
