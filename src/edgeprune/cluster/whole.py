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
from dataclasses import dataclass
from typing import Any, Literal

from edgeprune.cluster.algorithm import (
    Removal,
    cluster_groups,
    filter_schedule,
    group_schedule,
    measure_points,
    take_filters,
    take_groups,
)
from edgeprune.cluster.importance import layer_scores
from edgeprune.cluster.surgery import prune_filters
from edgeprune.errors import ConfigError
from edgeprune.models import DetectorSpec, resolve_widths

Method = Literal["filter", "cluster"]
METHODS: tuple[str, ...] = ("filter", "cluster")


@dataclass(frozen=True)
class WholePlan:
    """Layers to prune, their cluster sizes, the per-layer floor and the measuring grid."""

    layers: list[str]
    sizes: dict[str, int]
    min_left: int
    every: int
    steps: int


def _widths(spec: DetectorSpec, layers: list[str]) -> dict[str, int]:
    widths = resolve_widths(spec)
    return {k: widths[k] for k in layers}


def _groups(model: Any, spec: DetectorSpec, plan: WholePlan) -> list[Any]:
    scores = layer_scores(model, plan.layers)
    return group_schedule(cluster_groups(scores, plan.sizes), _widths(spec, plan.layers),
                          plan.min_left)


def plan_points(model: Any, spec: DetectorSpec, plan: WholePlan) -> list[tuple[int, int]]:
    """(groups, filters removed) at each measuring step of the one-shot cluster schedule."""
    points = measure_points(_groups(model, spec, plan), plan.every, plan.steps)
    if not points:
        raise ConfigError(
            f"config key 'paper2.whole': no cluster of the layers {plan.layers} can be removed "
            f"(cluster sizes {plan.sizes}, min_filters {plan.min_left}, measure_every "
            f"{plan.every}); lower paper2.whole.min_filters or the cluster size")
    return points


def oneshot_removal(model: Any, spec: DetectorSpec, plan: WholePlan, method: str,
                    point: tuple[int, int]) -> Removal:
    """Filters to remove from the unpruned ``model`` at one measuring point."""
    groups, count = point
    if method == "cluster":
        return take_groups(_groups(model, spec, plan), groups)
    scores = layer_scores(model, plan.layers)
    return take_filters(filter_schedule(scores, plan.min_left), count)


def next_removal(model: Any, spec: DetectorSpec, plan: WholePlan, method: str,
                 count: int) -> Removal:
    """About ``count`` more filters ranked on the current weights (exactly ``count`` for filter
    pruning; whole groups reaching at least ``count`` for cluster pruning)."""
    if method == "filter":
        return take_filters(filter_schedule(layer_scores(model, plan.layers), plan.min_left),
                            count)
    chosen, removed = 0, 0
    groups = _groups(model, spec, plan)
    while removed < count and chosen < len(groups):
        removed += len(groups[chosen].filters)
        chosen += 1
    return take_groups(groups, chosen)


def run_series(base: Any, spec: DetectorSpec, plan: WholePlan, method: str,
               points: list[tuple[int, int]],
               measure: Callable[[Any, DetectorSpec, int], dict[str, Any]],
               finetune: Callable[[Any, DetectorSpec], dict[str, Any]] | None,
               keras: Any = None) -> list[dict[str, Any]]:
    """Prune ``base`` step by step and ``measure(model, spec, step)`` after each step.

    Without ``finetune`` the removals are one-shot from ``base``; with it they are iterative
    (re-ranked on the fine-tuned weights). Each row has the step, filters removed and the
    filters left per pruned layer, plus whatever ``measure`` and ``finetune`` return.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    rows = []
    current, current_spec, removed = base, spec, 0
    for step, point in enumerate(points, start=1):
        if finetune is None:
            removal = oneshot_removal(base, spec, plan, method, point)
            current, current_spec = prune_filters(base, spec, removal, keras)
            removed = sum(len(v) for v in removal.values())
        else:
            removal = next_removal(current, current_spec, plan, method, point[1] - removed)
            current, current_spec = prune_filters(current, current_spec, removal, keras)
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


def layer_sizes(layers: list[str], found: Mapping[str, int], default: int,
                override: str | int | Mapping[str, int]) -> dict[str, int]:
    """Cluster size per pruned layer: the config override if any, else the size found by the
    layer's own sweep, else ``default`` (the LCM over the swept layers)."""
    out = {}
    for layer in layers:
        if isinstance(override, int):
            out[layer] = override
        elif isinstance(override, Mapping) and layer in override:
            out[layer] = int(override[layer])
        else:
            out[layer] = int(found.get(layer, default))
    return out
