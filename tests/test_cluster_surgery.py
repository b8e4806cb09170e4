"""Filter surgery: removing silenced filters leaves every output unchanged (all three
architectures), kept weights are copied sliced, and impossible requests are refused clearly."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

import edgeprune.tfenv  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edgeprune.compression.cluster.cost import model_cost
from edgeprune.compression.cluster.importance import theta_mw
from edgeprune.compression.cluster.surgery import (
    check_prunable,
    prunable_layers,
    prune_filters,
    silence_filters,
    trace_keeps,
)
from edgeprune.detection.models import DetectorSpec, build_detector, resolve_widths
from edgeprune.errors import ConfigError

SIZE = (64, 64)

# Several layers at once, touching every coupling: MobileNet pointwise -> next depthwise and
# pointwise, the stem, feature maps read by SSD heads and extras; SqueezeNet squeeze -> both
# expands, expands -> concat -> next squeeze, fire8/fire9 concats -> heads, extras and pooling.
CASES: dict[str, tuple[str, float, int, dict[str, list[int]]]] = {
    "v1": ("ssd_mobilenet_v1", 0.25, 16, {"conv0": [1, 3], "conv1": [0, 5, 7], "conv11": [2],
                                          "conv13": [1, 4], "extra1_1": [0], "extra4_2": [3]}),
    # First SSD map at stride 8: conv5 also feeds a head.
    "v1-stride8": ("ssd_mobilenet_v1", 0.25, 8, {"conv5": [0, 9], "conv11": [2],
                                                 "extra3_2": [1]}),
    "squeezenet": ("ssd_squeezenet", 0.25, 16, {
        "conv1": [0, 2], "fire2_squeeze1x1": [1], "fire2_expand1x1": [3],
        "fire2_expand3x3": [0, 15], "fire8_expand3x3": [2], "fire9_expand1x1": [5],
        "extra2_2": [1]}),
    # First SSD map at stride 8: fire5's concat feeds a head and, pooled, fire6.
    "squeezenet-stride8": ("ssd_squeezenet", 0.25, 8, {"fire5_expand1x1": [0, 7],
                                                       "fire5_expand3x3": [3]}),
    # MobileNetV2: the stem (block 1 has no residual at this width) and the last 1x1 conv.
    "v2": ("mobilenet_v2_ssd", 0.5, 16, {"stem": [0, 3], "last": [1, 2, 600],
                                          "extra2_1": [3]}),
}


@functools.cache
def _keras() -> Any:
    from edgeprune.tfenv import setup

    return setup(2, 0)[1]


def _calibrate_bn(model: Any, x: np.ndarray, rng: np.random.Generator) -> None:
    """Batch-norm statistics close to the real ones on ``x`` (so the signal neither dies nor
    saturates with depth) and random scales and shifts: every per-channel parameter matters.
    One forward pass, layer by layer, setting each batch norm before it is applied."""
    acts: dict[str, Any] = {}
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            acts[layer.name] = x
            continue
        parents = layer.inbound_nodes[0].inbound_layers
        ins = [acts[p.name] for p in (parents if isinstance(parents, list) else [parents])]
        arg = ins[0] if len(ins) == 1 else ins
        if type(layer).__name__ == "BatchNormalization":
            a = np.asarray(arg)
            mean, var = a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2)) + 1e-4
            c = mean.shape
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0.3, 0.5, c),
                               mean + rng.normal(0, 0.1, c) * np.sqrt(var),
                               var * rng.uniform(0.7, 1.4, c)])
        acts[layer.name] = layer(arg, training=False)


def _model(arch: str, wm: float, seed: int = 0,
           first_stride: int = 16) -> tuple[Any, DetectorSpec]:
    keras = _keras()
    keras.utils.set_random_seed(seed)
    spec = DetectorSpec(arch, 3, SIZE, wm, aspect_ratios=(1.0, 2.0, 0.5),
                        first_stride=first_stride)
    model = build_detector(spec, keras)
    _calibrate_bn(model, _images(4), np.random.default_rng(seed))
    return model, spec


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (n, *SIZE, 3)).astype(np.float32)


def _outputs(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model(x, training=False).items()}


@pytest.mark.parametrize("case", list(CASES))
def test_removing_silenced_filters_leaves_outputs_unchanged(case: str) -> None:
    arch, wm, first_stride, remove = CASES[case]
    model, spec = _model(arch, wm, first_stride=first_stride)
    x = _images()
    before = _outputs(model, x)
    # The network reacts to its input, so equal outputs below mean equal functions.
    assert np.abs(before["loc"][0] - before["loc"][1]).max() > 0.05
    silence_filters(model, remove)
    silenced = _outputs(model, x)
    thin, thin_spec = prune_filters(model, spec, remove, _keras())
    after = _outputs(thin, x)
    for name in silenced:
        assert after[name].shape == silenced[name].shape
        scale = float(np.abs(silenced[name]).max())
        np.testing.assert_allclose(after[name], silenced[name], rtol=0, atol=1e-4 * scale)
        # Silencing did change the network, so the comparison above is not vacuous.
        assert not np.allclose(before[name], silenced[name], atol=1e-3)
    widths, new = resolve_widths(spec), resolve_widths(thin_spec)
    for layer, idx in remove.items():
        assert new[layer] == widths[layer] - len(idx)
        assert thin.get_layer(layer).filters == new[layer]
    cost, thin_cost = model_cost(model), model_cost(thin)
    assert thin_cost["params"] < cost["params"] and thin_cost["macs"] < cost["macs"]
    assert thin_cost["params"] == thin.count_params()


def test_zero_kernel_alone_is_not_equivalent() -> None:
    """A zero filter still emits its batch norm's shift: removing it changes the outputs,
    which is why silencing also zeroes batch-norm scale and shift."""
    model, spec = _model("ssd_mobilenet_v1", 0.25)
    layer = model.get_layer("conv1")
    kernel = layer.get_weights()[0].copy()
    kernel[..., [0, 5]] = 0.0
    layer.set_weights([kernel])
    bn = model.get_layer("conv1_bn")
    gamma, beta, mean, var = bn.get_weights()
    beta[[0, 5]], mean[[0, 5]] = 1.0, 0.0     # the zero filters' channels carry ReLU6(1) = 1
    bn.set_weights([gamma, beta, mean, var])
    x = _images()
    ref = _outputs(model, x)
    thin, _ = prune_filters(model, spec, {"conv1": [0, 5]}, _keras())
    assert not np.allclose(_outputs(thin, x)["loc"], ref["loc"], atol=1e-3)


def test_kept_weights_are_copied_sliced() -> None:
    model, spec = _model("ssd_squeezenet", 0.25)
    thin, _ = prune_filters(model, spec, {"fire2_expand1x1": [1, 4]}, _keras())
    keep = np.setdiff1d(np.arange(16), [1, 4])
    old = model.get_layer("fire2_expand1x1").get_weights()[0]
    np.testing.assert_array_equal(thin.get_layer("fire2_expand1x1").get_weights()[0],
                                  old[..., keep])
    bn_old = model.get_layer("fire2_expand1x1_bn").get_weights()
    for a, b in zip(thin.get_layer("fire2_expand1x1_bn").get_weights(), bn_old, strict=True):
        np.testing.assert_array_equal(a, b[keep])
    # fire3's squeeze reads the concat [expand1x1 (16), expand3x3 (16)]: channels 1 and 4 go.
    squeeze = model.get_layer("fire3_squeeze1x1").get_weights()[0]
    concat_keep = np.setdiff1d(np.arange(32), [1, 4])
    np.testing.assert_array_equal(thin.get_layer("fire3_squeeze1x1").get_weights()[0],
                                  squeeze[:, :, concat_keep, :])
    # θ_MW of the kept filters is unchanged (the expand layer's inputs were not touched).
    np.testing.assert_allclose(theta_mw(thin.get_layer("fire2_expand1x1").get_weights()[0]),
                               theta_mw(old)[keep])


def test_trace_follows_depthwise_into_next_pointwise() -> None:
    model, _ = _model("ssd_mobilenet_v1", 0.25)
    keeps = trace_keeps(model, {"conv2": np.array([0, 2, 3])})
    for name in ("conv2", "conv2_bn", "conv2_relu", "conv3_dw", "conv3_dw_bn", "conv3_dw_relu"):
        assert keeps[name].tolist() == [0, 2, 3], name
    assert len(keeps["conv3"]) == model.get_layer("conv3").filters


def test_refusals_name_the_problem() -> None:
    assert "b3" not in prunable_layers("mobilenet_v2_ssd")
    assert "conv5" in prunable_layers("ssd_mobilenet_v1")
    with pytest.raises(ConfigError, match="paper2.sweep.layers.*expansion width"):
        check_prunable("mobilenet_v2_ssd", "b3", "paper2.sweep.layers.mobilenet_v2_ssd")
    with pytest.raises(ConfigError, match="not a prunable layer"):
        check_prunable("ssd_squeezenet", "fire2_concat")
    model, spec = _model("ssd_mobilenet_v1", 0.25)
    with pytest.raises(ConfigError, match="leaves none"):
        prune_filters(model, spec, {"conv0": list(range(8))}, _keras())
    with pytest.raises(ConfigError, match="cannot remove indices"):
        prune_filters(model, spec, {"conv0": [8]}, _keras())


def test_residual_addition_is_refused() -> None:
    """At width 0.25 MobileNetV2's first block has a residual: its stem cannot be thinned."""
    model, spec = _model("mobilenet_v2_ssd", 0.25)
    with pytest.raises(ConfigError, match="b1_add"):
        prune_filters(model, spec, {"stem": [0]}, _keras())


def test_macs_by_hand() -> None:
    keras = _keras()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    model = keras.Model(inp, x)
    # Conv: 4x4 outputs x 4 filters x 3x3x3 = 1728; depthwise: 4x4 x 4 channels x 3x3 = 576.
    assert model_cost(model) == {"params": 3 * 3 * 3 * 4 + 3 * 3 * 4, "macs": 1728 + 576}
