"""Parity of the two surgeries (issue 10, point 4): the same plan -- which filters of which
layers -- applied by the Keras surgery (compression/cluster/surgery.py, coupled layers found by
walking the Keras graph) and by Torch-Pruning (coupled layers found by its DependencyGraph) to
the same ported weights gives the same outputs (within 1e-4), the same cost and the same mAP
(within 1e-3), for both architectures, at a single-layer sweep point and after a whole-model
cluster step. θ_MW through the Torch-Pruning importance equals the Keras ranking, and Algorithm
1's groups are identical in both backends."""

from __future__ import annotations

import numpy as np
import pytest
from test_torch_backend import ARCHS, images, max_diff, pair, pseudo_test_set

import edgeprune.tfenv  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edgeprune.compression.cluster.algorithm import (
    cluster_groups,
    filter_schedule,
    group_schedule,
    take_groups,
)
from edgeprune.compression.cluster.cost import model_cost
from edgeprune.compression.cluster.importance import ascending_order, layer_scores
from edgeprune.compression.cluster.measure import runner_map
from edgeprune.compression.cluster.surgery import prunable_layers, prune_filters
from edgeprune.compression.torch_backend.export import torch_cost, torch_runner
from edgeprune.compression.torch_backend.models import anchors_of, widths_of
from edgeprune.compression.torch_backend.prune import (
    prune_in_place,
    prune_torch,
    torch_layer_scores,
)
from edgeprune.detection.detect import keras_runner
from edgeprune.errors import ConfigError

# Layers of each whole-model step: MobileNet pointwise layers (-> next depthwise + pointwise),
# the stem, a head-feeding layer and extras; SqueezeNet squeeze and expand layers (-> concat ->
# next squeeze), fire8's expand (-> concat -> head and pool) and an extra.
WHOLE = {
    "ssd_mobilenet_v1": ["conv0", "conv1", "conv2", "conv11", "conv13", "extra1_1"],
    "ssd_squeezenet": ["conv1", "fire2_squeeze1x1", "fire3_expand1x1", "fire3_expand3x3",
                       "fire5_expand3x3", "fire8_expand1x1", "extra2_2"],
}
SWEEP = {"ssd_mobilenet_v1": "conv5", "ssd_squeezenet": "fire5_expand1x1"}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_theta_mw_importance_and_algorithm1_agree(arch: str) -> None:
    keras_model, _, model = pair(arch)
    layers = prunable_layers(arch)
    if ARCHS[arch] == 8:
        layers = [n for n in layers if not n.startswith("extra4")]   # not built at stride 8
    ks, ts = layer_scores(keras_model, layers), torch_layer_scores(model, layers)
    assert list(ks) == list(ts)
    for name in layers:
        np.testing.assert_array_equal(ts[name], ks[name])
    sizes = {n: 1 + i % 4 for i, n in enumerate(layers)}
    phases = {n: (i % 3 or None) for i, n in enumerate(layers)}
    assert cluster_groups(ts, sizes, phases) == cluster_groups(ks, sizes, phases)
    assert filter_schedule(ts, 2) == filter_schedule(ks, 2)


def _same_result(arch: str, removal: dict[str, list[int]]) -> None:
    keras_model, spec, model = pair(arch)
    keras_thin, keras_spec = prune_filters(keras_model, spec, removal)
    thin, thin_spec = prune_torch(model, spec, removal)
    assert thin_spec == keras_spec
    assert widths_of(model) != widths_of(thin)          # the base model is left as it was
    x = images()
    assert max_diff(keras_thin, thin, x) < 1e-4
    assert torch_cost(thin) == model_cost(keras_thin)
    test = pseudo_test_set(keras_thin, anchors_of(thin), x)
    keras_map, _ = runner_map(keras_runner(keras_thin), test)
    torch_map, _ = runner_map(torch_runner(thin), test)
    assert abs(keras_map - torch_map) < 1e-3


@pytest.mark.parametrize("arch", list(ARCHS))
def test_sweep_point_parity(arch: str) -> None:
    keras_model, _, _ = pair(arch)
    layer = SWEEP[arch]
    order = ascending_order(layer_scores(keras_model, [layer])[layer])
    _same_result(arch, {layer: sorted(int(i) for i in order[:5])})


@pytest.mark.parametrize("arch", list(ARCHS))
def test_whole_model_step_parity(arch: str) -> None:
    keras_model, spec, _ = pair(arch)
    layers = WHOLE[arch]
    scores = layer_scores(keras_model, layers)
    widths = {n: len(s) for n, s in scores.items()}
    groups = group_schedule(cluster_groups(scores, dict.fromkeys(layers, 3)), widths, 2)
    # The least important cluster of every layer (random init favours the widest layers, so
    # a prefix of the schedule would touch one layer only).
    firsts = {g.layer: g for g in reversed(groups)}
    removal = take_groups([g for g in groups if firsts[g.layer] is g], len(layers))
    assert sorted(removal) == sorted(layers)
    _same_result(arch, removal)


def test_impossible_requests_are_refused() -> None:
    _, _, model = pair("ssd_mobilenet_v1")
    with pytest.raises(ConfigError, match="has 8 filters; cannot remove indices"):
        prune_in_place(model, {"conv0": [8]})
    with pytest.raises(ConfigError, match="leaves none"):
        prune_in_place(model, {"conv0": list(range(8))})
    with pytest.raises(ConfigError, match="not a prunable layer"):
        prune_in_place(model, {"conv1_dw": [0]})
    assert widths_of(model)["conv0"] == 8
