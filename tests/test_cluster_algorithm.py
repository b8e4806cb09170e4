"""θ_MW, Algorithm 1 (cluster pruning) and the filter-pruning order on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.cluster.algorithm import (
    Group,
    cluster_groups,
    filter_schedule,
    group_schedule,
    measure_points,
    sweep_points,
    take_filters,
    take_groups,
)
from edgeprune.cluster.importance import ascending_order, theta_mw
from edgeprune.cluster.whole import layer_sizes


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
