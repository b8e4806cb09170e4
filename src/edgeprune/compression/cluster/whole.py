"""Whole-model pruning series: filter pruning vs cluster pruning over many layers.

Both methods are measured at the *same* numbers of filters removed. Those numbers come from the
cluster schedule on the unpruned model (:func:`plan_points`): at each step, enough whole groups
to reach the next multiple of ``measure_every`` filters. Two series per method:

* one-shot (no fine-tuning): filters are ranked once on the unpruned weights and each point
  removes a longer prefix of that ranking from the unpruned model;
* iterative (fine-tuned): from the previous point's fine-tuned model, the filters are ranked
  again, the next batch is removed (filter pruning: the step's count of single filters; cluster
  pruning: whole groups until the count is reached), and the model is fine-tuned before it is
  measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeprune.compression.cluster.algorithm import (
    Removal,
    cluster_groups,
    filter_schedule,
    group_schedule,
    measure_points,
    take_filters,
    take_groups,
)
from edgeprune.compression.cluster.backend import Backend, keras_backend
from edgeprune.compression.cluster.period import most_common
from edgeprune.detection.models import DetectorSpec, resolve_widths
from edgeprune.errors import ConfigError

Method = Literal["filter", "cluster"]
METHODS: tuple[str, ...] = ("filter", "cluster")


@dataclass(frozen=True)
class WholePlan:
    """Layers to prune, their cluster sizes, the per-layer floor and the measuring grid;
    ``phases`` aligns a layer's clusters to ``left ≡ phase (mod size)`` (missing / None:
    Algorithm 1 as in the paper, see
    :func:`~edgeprune.compression.cluster.algorithm.cluster_groups`)."""

    layers: list[str]
    sizes: dict[str, int]
    min_left: int
    every: int
    steps: int
    phases: dict[str, int | None] = field(default_factory=dict)


def _widths(spec: DetectorSpec, layers: list[str]) -> dict[str, int]:
    widths = resolve_widths(spec)
    return {k: widths[k] for k in layers}


def _groups(model: Any, spec: DetectorSpec, plan: WholePlan,
            backend: Backend | None = None) -> list[Any]:
    scores = (backend or keras_backend()).scores(model, plan.layers)
    return group_schedule(cluster_groups(scores, plan.sizes, plan.phases),
                          _widths(spec, plan.layers),
                          plan.min_left)


def plan_points(model: Any, spec: DetectorSpec, plan: WholePlan,
                backend: Backend | None = None) -> list[tuple[int, int]]:
    """(groups, filters removed) at each measuring step of the one-shot cluster schedule."""
    points = measure_points(_groups(model, spec, plan, backend), plan.every, plan.steps)
    if not points:
        raise ConfigError(
            f"config key 'paper2.whole': no cluster of the layers {plan.layers} can be removed "
            f"(cluster sizes {plan.sizes}, min_filters {plan.min_left}, measure_every "
            f"{plan.every}); lower paper2.whole.min_filters or the cluster size")
    return points


def oneshot_removal(model: Any, spec: DetectorSpec, plan: WholePlan, method: str,
                    point: tuple[int, int], backend: Backend | None = None) -> Removal:
    """Filters to remove from the unpruned ``model`` at one measuring point."""
    groups, count = point
    if method == "cluster":
        return take_groups(_groups(model, spec, plan, backend), groups)
    scores = (backend or keras_backend()).scores(model, plan.layers)
    return take_filters(filter_schedule(scores, plan.min_left), count)


def next_removal(model: Any, spec: DetectorSpec, plan: WholePlan, method: str,
                 count: int, backend: Backend | None = None) -> Removal:
    """About ``count`` more filters ranked on the current weights (exactly ``count`` for filter
    pruning; whole groups reaching at least ``count`` for cluster pruning)."""
    if method == "filter":
        scores = (backend or keras_backend()).scores(model, plan.layers)
        return take_filters(filter_schedule(scores, plan.min_left), count)
    chosen, removed = 0, 0
    groups = _groups(model, spec, plan, backend)
    while removed < count and chosen < len(groups):
        removed += len(groups[chosen].filters)
        chosen += 1
    return take_groups(groups, chosen)


def run_series(base: Any, spec: DetectorSpec, plan: WholePlan, method: str,
               points: list[tuple[int, int]],
               measure: Callable[[Any, DetectorSpec, int], dict[str, Any]],
               finetune: Callable[[Any, DetectorSpec], dict[str, Any]] | None,
               keras: Any = None, backend: Backend | None = None) -> list[dict[str, Any]]:
    """Prune ``base`` step by step and ``measure(model, spec, step)`` after each step.

    Without ``finetune`` the removals are one-shot from ``base``; with it they are iterative
    (re-ranked on the fine-tuned weights). Each row has the step, filters removed and the
    filters left per pruned layer, plus whatever ``measure`` and ``finetune`` return.
    ``backend`` (default: the Keras surgery) ranks and removes the filters.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    b = backend or keras_backend(keras)
    rows = []
    current, current_spec, removed = base, spec, 0
    for step, point in enumerate(points, start=1):
        if finetune is None:
            removal = oneshot_removal(base, spec, plan, method, point, b)
            current, current_spec = b.prune(base, spec, removal)
            removed = sum(len(v) for v in removal.values())
        else:
            removal = next_removal(current, current_spec, plan, method, point[1] - removed, b)
            current, current_spec = b.prune(current, current_spec, removal)
            removed += sum(len(v) for v in removal.values())
        row: dict[str, Any] = {"method": method, "finetuned": finetune is not None,
                               "step": step, "removed": removed,
                               "target_removed": point[1],
                               "widths": _widths(current_spec, plan.layers)}
        if finetune is not None:
            row.update(finetune(current, current_spec))
        row.update(measure(current, current_spec, step))
        rows.append(row)
    return rows


def default_size(found: Mapping[str, int]) -> int:
    """Cluster size for layers without a sweep: the most common detected size (> 1) among the
    swept layers (ties: the smaller; 1 when no swept layer has one). Layers whose sweep found
    no period do not vote: on a short sweep that is often a lack of power, not evidence."""
    return most_common([int(v) for v in found.values() if int(v) > 1]) or 1


def layer_sizes(layers: list[str], found: Mapping[str, int], default: int | None = None,
                override: str | int | Mapping[str, int] = "auto") -> dict[str, int]:
    """Cluster size per pruned layer: the config override if any, else the size found by the
    layer's own sweep, else ``default`` (None: :func:`default_size` of ``found``)."""
    fallback = default_size(found) if default is None else int(default)
    out = {}
    for layer in layers:
        if isinstance(override, int):
            out[layer] = override
        elif isinstance(override, Mapping) and layer in override:
            out[layer] = int(override[layer])
        else:
            out[layer] = int(found.get(layer, fallback))
    return out


def layer_phases(layers: list[str], sizes: Mapping[str, int], found: Mapping[str, int],
                 found_phases: Mapping[str, int | None]) -> dict[str, int | None]:
    """Phase per pruned layer, to align its clusters (``left ≡ phase (mod size)``).

    A swept layer keeps the phase detected for it when its size is the detected one; a layer
    without a sweep takes the most common phase (ties: the smaller) among the swept layers
    whose detected size equals its size. Otherwise (an override to another size, no phase
    detected) None: Algorithm 1 unaligned, as in the paper.
    """
    out: dict[str, int | None] = {}
    for layer in layers:
        size = int(sizes[layer])
        if layer in found:
            r = found_phases.get(layer)
            out[layer] = int(r) % size if r is not None and int(found[layer]) == size else None
        else:
            same = [int(found_phases[k]) % size for k, v in found.items()
                    if int(v) == size and found_phases.get(k) is not None]
            out[layer] = most_common(same)
    return out
