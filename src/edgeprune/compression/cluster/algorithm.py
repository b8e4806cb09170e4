"""Which filters go: paper 2's filter pruning and cluster pruning (Algorithm 1).

* Filter pruning ranks every filter of the chosen layers together by θ_MW and removes the least
  important ones one at a time, wherever they are -- layers end up with uneven counts.
* Cluster pruning ranks filters *within* each layer, cuts that ranking into consecutive groups
  of the layer's cluster size ``P_l`` (the most important ``K_l mod P_l`` filters form no group
  and are never removed), scores each group by its mean θ_MW, and removes whole groups in
  ascending order of that score across the network. With a detected phase ``r_l`` (the
  hardware prefers ``filters left ≡ r_l (mod P_l)``) the layer's first group is the
  ``(K_l - r_l) mod P_l`` least important filters instead, so every pruned width is aligned.

Both respect a floor of filters left per layer: a filter or group whose removal would go below
it is skipped, and the next one in the ranking is taken instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeprune.compression.cluster.importance import ascending_order

Removal = dict[str, list[int]]


@dataclass(frozen=True)
class Group:
    """A cluster of filters of one layer (indices into that layer) and its mean θ_MW."""

    layer: str
    filters: tuple[int, ...]
    score: float


def cluster_groups(scores: Mapping[str, np.ndarray], sizes: Mapping[str, int],
                   phases: Mapping[str, int | None] | None = None) -> list[Group]:
    """Algorithm 1: the groups of every layer, least important first.

    Within a layer the filters are sorted by ascending θ_MW and grouped ``P_l`` at a time while
    a full group remains. With a phase ``r`` for the layer (``phases[layer]``, not None) the
    first group is the ``(K - r) mod P`` least important filters (none when already aligned),
    so that removing groups in order leaves ``K - (K - r) mod P, … ≡ r (mod P)`` filters;
    without one (default) the most important ``K mod P`` filters form no group, as in the
    paper. Groups are then ranked network-wide by mean θ_MW; equal scores keep layer order,
    then ranking order (deterministic).
    """
    phases = phases or {}
    groups: list[Group] = []
    for layer, s in scores.items():
        p = int(sizes[layer])
        if p < 1:
            raise ValueError(f"cluster size of layer {layer!r} must be >= 1, got {p}")
        ranked = ascending_order(s)
        r = phases.get(layer)
        first = (len(ranked) - int(r)) % p if r is not None else 0
        cuts = ([ranked[:first]] if first else []) + [
            ranked[i:i + p] for i in range(first, len(ranked) - p + 1, p)]
        for idx in cuts:
            groups.append(Group(layer, tuple(sorted(int(j) for j in idx)),
                                float(np.mean(s[idx]))))
    return sorted(groups, key=lambda g: g.score)


def group_schedule(groups: Sequence[Group], widths: Mapping[str, int],
                   min_left: int) -> list[Group]:
    """The ranked groups that can be removed in turn without leaving a layer below
    ``min_left`` filters (skipped groups stay in the network)."""
    left = dict(widths)
    out = []
    for g in groups:
        if left[g.layer] - len(g.filters) >= min_left:
            left[g.layer] -= len(g.filters)
            out.append(g)
    return out


def filter_schedule(scores: Mapping[str, np.ndarray], min_left: int) -> list[tuple[str, int]]:
    """Every removable ``(layer, filter)`` in ascending θ_MW across layers (ties: layer order,
    then index), stopping each layer at ``min_left`` filters."""
    entries = [(float(v), li, layer, int(i))
               for li, (layer, s) in enumerate(scores.items()) for i, v in enumerate(s)]
    entries.sort(key=lambda e: (e[0], e[1], e[3]))
    left = {layer: len(s) for layer, s in scores.items()}
    out = []
    for _, _, layer, i in entries:
        if left[layer] > min_left:
            left[layer] -= 1
            out.append((layer, i))
    return out


def take_filters(schedule: Sequence[tuple[str, int]], count: int) -> Removal:
    """The first ``count`` filters of a filter schedule, grouped by layer."""
    if count > len(schedule):
        raise ValueError(f"cannot remove {count} filters: only {len(schedule)} are removable")
    out: Removal = {}
    for layer, i in schedule[:count]:
        out.setdefault(layer, []).append(i)
    return {k: sorted(v) for k, v in out.items()}


def take_groups(schedule: Sequence[Group], count: int) -> Removal:
    """The filters of the first ``count`` groups of a group schedule, by layer."""
    out: Removal = {}
    for g in schedule[:count]:
        out.setdefault(g.layer, []).extend(g.filters)
    return {k: sorted(v) for k, v in out.items()}


def measure_points(schedule: Sequence[Group], every: int, steps: int) -> list[tuple[int, int]]:
    """Where to measure along a group schedule: for k = 1..steps, the smallest number of groups
    whose filters reach ``k * every``; returns ``(groups, filters removed)`` pairs (fewer when
    the schedule runs out)."""
    points: list[tuple[int, int]] = []
    removed = 0
    k = 1
    for n, g in enumerate(schedule, start=1):
        removed += len(g.filters)
        if removed >= k * every:
            points.append((n, removed))
            while k * every <= removed:
                k += 1
            if len(points) == steps:
                break
    return points


def sweep_points(width: int, step: int, min_left: int) -> list[int]:
    """Filters left at each point of a single-layer sweep: ``width, width - step, …`` down to
    ``min_left``."""
    if step < 1:
        raise ValueError(f"sweep step must be >= 1, got {step}")
    return list(range(width, min_left - 1, -step))


def counts_after(widths: Mapping[str, int], removal: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Filters per layer after a removal."""
    return {k: v - len(removal.get(k, ())) for k, v in widths.items()}
