"""Tests for edgeprune.compression.prune: variant names, layer selection, global allocation, and a
real short
prune-while-fine-tuning of a tiny detector for both scopes (the way paper1.prune_finetune does
it: apply_pruning -> train with UpdatePruningStep -> strip -> measured_sparsity)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from detector_helpers import build_tiny, random_detection_data, tf_keras, tiny_spec

from edgeprune.compression.prune import (
    MAX_LAYER_SPARSITY,
    PruneConfig,
    apply_pruning,
    global_layer_sparsities,
    measured_sparsity,
    prunable_layers,
    schedule_steps,
    sparsity_of,
    strip,
    update_step_callback,
    variant_name,
)
from edgeprune.data.augment import AugmentConfig
from edgeprune.detection.models.registry import anchors_for
from edgeprune.detection.train import TrainConfig, steps_per_epoch, train
from edgeprune.errors import ConfigError

# MobileNet v1 has the fewest Conv2D layers of the three detectors (tracing the pruned training
# step is what makes these tests slow), and depthwise layers that must stay dense by default.
ARCH = "ssd_mobilenet_v1"
PRUNE_INPUT = 32


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("sparsity", "name"), [
    (0.0, "base"), (0.5, "prune50"), (0.725, "prune72p5"), (0.9, "prune90"),
    (0.07, "prune7"), (0.875, "prune87p5"), (0.99, "prune99"),
])
def test_variant_name_and_back(sparsity: float, name: str) -> None:
    assert variant_name(sparsity) == name
    assert sparsity_of(name) == pytest.approx(sparsity, abs=1e-12)


def test_variant_round_trip_over_a_grid() -> None:
    for pct in np.arange(0.5, 100.0, 0.5):
        s = float(pct) / 100
        assert sparsity_of(variant_name(s)) == pytest.approx(s, abs=1e-9)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_variant_name_rejects_out_of_range(sparsity: float) -> None:
    with pytest.raises(ConfigError, match="outside"):
        variant_name(sparsity)


@pytest.mark.parametrize("variant", ["pruned50", "prune", "prunex", "prune0", "prune100", "fp16"])
def test_sparsity_of_rejects_bad_names(variant: str) -> None:
    with pytest.raises(ConfigError, match=variant):
        sparsity_of(variant)


# --------------------------------------------------------------------------- layer selection


@pytest.fixture(scope="module")
def tiny_v1() -> Any:
    return build_tiny(tiny_spec(ARCH, input_size=(PRUNE_INPUT, PRUNE_INPUT)))


def test_prunable_layers_take_conv2d_only_by_default(tiny_v1: Any) -> None:
    names = prunable_layers(tiny_v1, PruneConfig().layer_types)
    by_name = {layer.name: type(layer).__name__ for layer in tiny_v1.layers}
    assert names
    assert all(by_name[n] == "Conv2D" for n in names)
    assert {n for n, t in by_name.items() if t == "Conv2D"} == set(names)
    assert "conv1_dw" not in names and "conv1" in names and "head0_conf" in names
    both = prunable_layers(tiny_v1, ("Conv2D", "DepthwiseConv2D"))
    assert set(both) == set(names) | {n for n, t in by_name.items() if t == "DepthwiseConv2D"}
    assert len(both) == len(names) + 13
    assert prunable_layers(tiny_v1, ("Dense",)) == []


def test_apply_pruning_rejects_layer_types_matching_nothing(tiny_v1: Any) -> None:
    with pytest.raises(ConfigError, match="Dense"):
        apply_pruning(tiny_v1, 0.5, 10, PruneConfig(layer_types=("Dense",)))


# --------------------------------------------------------------------------- global allocation


def _uneven_model(seed: int) -> Any:
    """Three conv layers whose kernels have very different magnitudes."""
    _, keras = tf_keras(seed)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="small")(inp)
    x = keras.layers.Conv2D(16, 3, name="medium")(x)
    x = keras.layers.Conv2D(4, 1, name="large")(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(seed)
    for name, scale in (("small", 0.01), ("medium", 0.1), ("large", 1.0)):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(0.0, scale, kernel.shape).astype(np.float32), bias])
    return model


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
def test_global_sparsities_are_one_threshold_with_the_target_mean(target: float) -> None:
    model = _uneven_model(0)
    names = ["small", "medium", "large"]
    alloc = global_layer_sparsities(model, names, target)
    kernels = {n: np.abs(model.get_layer(n).get_weights()[0]).ravel() for n in names}
    sizes = {n: kernels[n].size for n in names}
    chosen = {n: alloc[n] * sizes[n] for n in names}
    # Exactly round(target * n) weights are chosen overall, a whole number in every layer.
    assert sum(chosen.values()) == pytest.approx(round(target * sum(sizes.values())), abs=1e-6)
    for n in names:
        assert chosen[n] == pytest.approx(round(chosen[n]), abs=1e-6)
    # No layer is pruned entirely (tfmot refuses 1.0): "small" (weights ~0.01) is capped.
    assert max(alloc.values()) <= MAX_LAYER_SPARSITY
    assert alloc["small"] == pytest.approx(np.floor(MAX_LAYER_SPARSITY * sizes["small"])
                                           / sizes["small"])
    # Uneven magnitudes give uneven sparsities: small weights are pruned first.
    assert alloc["small"] >= alloc["medium"] >= alloc["large"]
    assert alloc["small"] > alloc["large"]
    # One threshold over the layers below the cap: every pruned weight there is <= every kept
    # weight there, and a capped layer loses exactly its smallest weights.
    pruned_max, kept_min = 0.0, np.inf
    for n in names:
        v = np.sort(kernels[n])
        k = int(round(alloc[n] * v.size))
        if alloc[n] >= MAX_LAYER_SPARSITY - 1.0 / v.size:
            continue
        if k:
            pruned_max = max(pruned_max, float(v[k - 1]))
        if k < v.size:
            kept_min = min(kept_min, float(v[k]))
    assert pruned_max <= kept_min


def test_global_sparsities_handle_ties_exactly() -> None:
    """Many equal magnitudes (zeros from an earlier pruning, repeated values) straddle the
    threshold: exactly round(target * n) weights are still chosen, first by layer order."""
    model = _uneven_model(2)
    for name, value in (("small", 0.0), ("medium", 0.5), ("large", 0.5)):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([np.full_like(kernel, value), bias])
    names = ["small", "medium", "large"]
    sizes = {n: model.get_layer(n).get_weights()[0].size for n in names}  # 216, 1152, 64
    total = sum(sizes.values())
    alloc = global_layer_sparsities(model, names, 0.5)
    chosen = {n: round(alloc[n] * sizes[n]) for n in names}
    assert sum(chosen.values()) == round(0.5 * total)
    # The all-zero layer is taken first (up to the cap), the tie at 0.5 is split by layer order.
    assert chosen["small"] == int(np.floor(MAX_LAYER_SPARSITY * sizes["small"]))
    assert chosen["large"] == 0
    assert chosen["medium"] == round(0.5 * total) - chosen["small"]


def test_global_sparsities_reject_a_target_no_layer_cap_allows() -> None:
    model = _uneven_model(3)
    with pytest.raises(ConfigError, match="per_layer"):
        global_layer_sparsities(model, ["small"], 0.995)
    with pytest.raises(ConfigError, match="outside"):
        global_layer_sparsities(model, ["small"], 1.0)


def test_global_sparsities_zero_target_and_equal_layers() -> None:
    model = _uneven_model(1)
    assert global_layer_sparsities(model, ["small", "large"], 0.0) == {"small": 0.0, "large": 0.0}
    one = global_layer_sparsities(model, ["medium"], 0.5)
    assert one["medium"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(("total", "end_fraction", "frequency", "expected"), [
    (100, 0.6, None, (6, 60)),
    (10, 0.6, None, (1, 6)),
    (4, 0.6, None, (1, 2)),
    (100, 0.5, 7, (7, 49)),
    (1, 0.6, None, (1, 1)),
])
def test_schedule_steps_end_on_an_update(total: int, end_fraction: float, frequency: int | None,
                                         expected: tuple[int, int]) -> None:
    freq, end = schedule_steps(total, PruneConfig(end_fraction=end_fraction, frequency=frequency))
    assert (freq, end) == expected
    assert end % freq == 0 and end <= max(total, freq)


# --------------------------------------------------------------------------- real pruning


def _prune_finetune(sparsity: float, cfg: PruneConfig) -> tuple[Any, Any, dict[str, Any]]:
    """Prune a fresh tiny detector while fine-tuning briefly; return (base, stripped, measured)."""
    spec = tiny_spec(ARCH, input_size=(PRUNE_INPUT, PRUNE_INPUT))
    model = build_tiny(spec, seed=1)
    anchors = anchors_for(spec, model)
    data = random_detection_data(8, size=PRUNE_INPUT, seed=1)
    tcfg = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3, warmup_epochs=0.0,
                       augment=AugmentConfig(enabled=False))
    total_steps = steps_per_epoch(len(data), tcfg.batch_size) * tcfg.epochs
    pruned = apply_pruning(model, sparsity, total_steps, cfg)
    wrapped = [layer.layer.name for layer in pruned.layers if hasattr(layer, "pruning_vars")]
    candidates = prunable_layers(model, cfg.layer_types)
    if cfg.scope == "per_layer":
        assert sorted(wrapped) == sorted(candidates)
    else:  # layers whose global allocation is 0 stay unwrapped
        assert wrapped and set(wrapped) <= set(candidates)
    lines: list[str] = []
    tf, _ = tf_keras()
    # Tracing the pruned training step costs ~20 s of Python on this model; executing the same
    # step function eagerly for four steps takes a fraction of that and prunes identically.
    tf.config.run_functions_eagerly(True)
    try:
        history = train(pruned, data, anchors, tcfg, log=lines.append,
                        callbacks=[update_step_callback()])
    finally:
        tf.config.run_functions_eagerly(False)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert len(lines) == 2
    final = strip(pruned)
    assert not any(hasattr(layer, "pruning_vars") for layer in final.layers)
    return model, final, measured_sparsity(final, prunable_layers(final, cfg.layer_types))


def test_per_layer_pruning_reaches_target_in_every_layer() -> None:
    target = 0.6
    base, final, reached = _prune_finetune(target, PruneConfig(scope="per_layer"))
    assert reached["sparsity"] == pytest.approx(target, abs=0.01)
    for name, value in reached["per_layer"].items():
        assert value == pytest.approx(target, abs=0.01), name
    # Depthwise layers are not pruned by default.
    dw = final.get_layer("conv2_dw").get_weights()[0]
    assert np.count_nonzero(dw) == dw.size
    # The stripped model is still a detector with the same outputs.
    assert final.output_names == base.output_names
    assert final.count_params() == base.count_params()


def test_global_pruning_reaches_target_overall_with_uneven_layers() -> None:
    target = 0.5
    _, _, reached = _prune_finetune(target, PruneConfig(scope="global"))
    assert reached["sparsity"] == pytest.approx(target, abs=0.01)
    per_layer = np.array(list(reached["per_layer"].values()))
    # One threshold across layers gives different sparsities per layer.
    assert per_layer.max() - per_layer.min() > 0.1


def test_batchnorm_recalibration_matches_data_statistics() -> None:
    """After recalibration, a BN layer's moving mean is the mean of its per-batch means on the
    given images, whatever the stale statistics were before; weights do not change."""
    from edgeprune.detection.train import recalibrate_batchnorm

    _, keras = tf_keras()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inp)
    out = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, out)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 50.0, np.float32))
    kernel = model.get_layer("conv").get_weights()[0].copy()
    images = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 3)).astype(np.float32)
    assert recalibrate_batchnorm(model, images, batch_size=16) == 4
    conv = model.get_layer("conv")
    batch_means = [conv(images[i:i + 16]).numpy().mean(axis=(0, 1, 2)) for i in range(0, 64, 16)]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(batch_means, axis=0), atol=1e-5)
    np.testing.assert_array_equal(model.get_layer("conv").get_weights()[0], kernel)
    assert bn.momentum == 0.99


def test_prefetch_keeps_order_and_reraises() -> None:
    from edgeprune.detection.train import prefetch

    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]
    # Leaving early stops the producer.
    for item in prefetch(iter(range(1000)), depth=1):
        if item == 3:
            break
