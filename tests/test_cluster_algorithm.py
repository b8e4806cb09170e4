"""θ_MW, Algorithm 1 (cluster pruning) and the filter-pruning order on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.compression.cluster.algorithm import (
    Group,
    cluster_groups,
    filter_schedule,
    group_schedule,
    measure_points,
    sweep_points,
    take_filters,
    take_groups,
)
from edgeprune.compression.cluster.importance import ascending_order, theta_mw
from edgeprune.compression.cluster.whole import default_size, layer_phases, layer_sizes


def test_theta_mw_is_mean_square_per_filter() -> None:
    k = np.zeros((3, 3, 2, 3), np.float32)
    k[..., 0] = 1.0          # 18 weights of 1 -> 1
    k[0, 0, 0, 1] = 6.0      # one weight of 6 -> 36 / 18 = 2
    k[..., 2] = -0.5         # 0.25
    np.testing.assert_allclose(theta_mw(k), [1.0, 2.0, 0.25])
    assert ascending_order(theta_mw(k)).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="4-D"):
        theta_mw(np.zeros((3, 3)))


SCORES = {
    "a": np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3]),    # ranked: 1, 3, 5, 2, 4, 0
    "b": np.array([0.05, 0.6, 0.07, 0.4, 0.7]),       # ranked: 0, 2, 3, 1, 4
}


def test_algorithm1_groups_and_ranking() -> None:
    groups = cluster_groups(SCORES, {"a": 2, "b": 2})
    # Layer a: {1,3} mean .15, {2,5} mean .4, {0,4} mean .85; layer b: {0,2} mean .06,
    # {3,1} mean .5; b's most important filter (4) is the remainder and forms no group.
    assert [(g.layer, g.filters) for g in groups] == [
        ("b", (0, 2)), ("a", (1, 3)), ("a", (2, 5)), ("b", (1, 3)), ("a", (0, 4))]
    np.testing.assert_allclose([g.score for g in groups], [0.06, 0.15, 0.4, 0.5, 0.85])


def test_algorithm1_per_layer_sizes_and_remainder() -> None:
    groups = cluster_groups(SCORES, {"a": 4, "b": 1})
    a_groups = [g for g in groups if g.layer == "a"]
    assert [g.filters for g in a_groups] == [(1, 2, 3, 5)]   # 2 most important left out
    assert [g.filters for g in groups if g.layer == "b"] == [(0,), (2,), (3,), (1,), (4,)]
    with pytest.raises(ValueError, match=">= 1"):
        cluster_groups(SCORES, {"a": 0, "b": 1})


def test_group_schedule_respects_floor() -> None:
    groups = cluster_groups(SCORES, {"a": 2, "b": 2})
    sched = group_schedule(groups, {"a": 6, "b": 5}, min_left=3)
    # b may lose one group (5 -> 3); a may lose one group (6 -> 4), the next would leave 2.
    assert sched == [Group("b", (0, 2), pytest.approx(0.06)),
                     Group("a", (1, 3), pytest.approx(0.15))]
    assert take_groups(sched, 2) == {"b": [0, 2], "a": [1, 3]}


def test_filter_schedule_is_global_and_uneven() -> None:
    sched = filter_schedule(SCORES, min_left=3)
    assert sched[:4] == [("b", 0), ("b", 2), ("a", 1), ("a", 3)]
    # b stops at 3 filters left (2 removed); a at 3 (3 removed).
    assert sum(1 for layer, _ in sched if layer == "b") == 2
    assert sum(1 for layer, _ in sched if layer == "a") == 3
    assert take_filters(sched, 3) == {"b": [0, 2], "a": [1]}
    with pytest.raises(ValueError, match="only 5"):
        take_filters(sched, 6)


def test_measure_points_follow_whole_groups() -> None:
    groups = [Group("x", tuple(range(i, i + n)), 0.0) for i, n in enumerate([8, 8, 4, 8, 8])]
    assert measure_points(groups, every=8, steps=3) == [(1, 8), (2, 16), (4, 28)]
    assert measure_points(groups, every=8, steps=10)[-1] == (5, 36)
    assert measure_points([], every=8, steps=3) == []


def test_sweep_points_and_sizes() -> None:
    assert sweep_points(8, 1, 2) == [8, 7, 6, 5, 4, 3, 2]
    assert sweep_points(32, 8, 2) == [32, 24, 16, 8]
    with pytest.raises(ValueError):
        sweep_points(8, 0, 2)
    found = {"conv1": 4}
    assert layer_sizes(["conv1", "conv2"], found, 8, "auto") == {"conv1": 4, "conv2": 8}
    assert layer_sizes(["conv1", "conv2"], found, 8, 16) == {"conv1": 16, "conv2": 16}
    assert layer_sizes(["conv1", "conv2"], found, 8, {"conv2": 2}) == {"conv1": 4, "conv2": 2}


def test_unswept_layers_take_the_most_common_size_and_its_phase() -> None:
    found = {"a": 8, "b": 16, "c": 8, "d": 1}
    assert default_size(found) == 8                        # not the LCM (16)
    assert default_size({"a": 16, "b": 8}) == 8            # tie: the smaller
    assert default_size({"a": 1, "b": 1, "c": 16}) == 16   # no-period layers do not vote
    assert default_size({}) == default_size({"a": 1}) == 1
    layers = ["a", "b", "c", "d", "x"]
    sizes = layer_sizes(layers, found)                     # default None -> most common
    assert sizes == {"a": 8, "b": 16, "c": 8, "d": 1, "x": 8}
    phases = layer_phases(layers, sizes, found, {"a": 4, "b": 3, "c": 4, "d": None})
    assert phases == {"a": 4, "b": 3, "c": 4, "d": None, "x": 4}
    # An override to another size drops the detected phase; an override to the same keeps it.
    over = layer_sizes(layers, found, None, {"a": 16, "c": 8})
    assert layer_phases(layers, over, found, {"a": 4, "c": 4}) == {
        "a": None, "b": None, "c": 4, "d": None, "x": 4}


def test_phase_alignment_on_a_hand_made_layer() -> None:
    """37 filters, P = 8, phase 4: the first removal takes the 1 least important filter (36
    left), then clusters of 8 (28, 20, 12, 4 left) -- every width ≡ 4 (mod 8)."""
    rng = np.random.default_rng(0)
    theta = rng.permutation(np.linspace(0.01, 1.0, 37))
    ranked = ascending_order(theta).tolist()
    groups = cluster_groups({"L": theta}, {"L": 8}, {"L": 4})
    assert [len(g.filters) for g in groups] == [1, 8, 8, 8, 8]
    assert groups[0].filters == (ranked[0],)
    assert groups[1].filters == tuple(sorted(ranked[1:9]))
    assert set().union(*(g.filters for g in groups)) == set(ranked[:33])   # top 4 stay
    left, widths = 37, []
    for g in group_schedule(groups, {"L": 37}, min_left=1):
        left -= len(g.filters)
        widths.append(left)
    assert widths == [36, 28, 20, 12, 4] and all(w % 8 == 4 for w in widths)
    # Already aligned (phase 5 = 37 mod 8): no partial group; no phase: today's Algorithm 1.
    aligned = cluster_groups({"L": theta}, {"L": 8}, {"L": 5})
    assert [len(g.filters) for g in aligned] == [8, 8, 8, 8]
    assert aligned == cluster_groups({"L": theta}, {"L": 8})
    assert aligned == cluster_groups({"L": theta}, {"L": 8}, {"L": None})
    # Phase 0: left ≡ 0 (mod 8): 5 filters first (32 left), then 24, 16, 8, 0.
    zero = cluster_groups({"L": theta}, {"L": 8}, {"L": 0})
    assert [len(g.filters) for g in zero] == [5, 8, 8, 8, 8]


def test_phases_interleave_across_layers_by_score() -> None:
    # Layer a (6 filters, P=2, phase 1): a lone least-important filter first, then pairs.
    groups = cluster_groups(SCORES, {"a": 2, "b": 2}, {"a": 1})
    assert [(g.layer, g.filters) for g in groups] == [
        ("b", (0, 2)), ("a", (1,)), ("a", (3, 5)), ("b", (1, 3)), ("a", (2, 4))]
