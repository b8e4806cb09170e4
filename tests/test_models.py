"""Tests for edgeprune.detection.models: the three SSD detectors, per-layer widths, export, spec
dicts."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from detector_helpers import NUM_CLASSES, build_tiny, random_images, tf_keras, tiny_spec

from edgeprune.detection.models import (
    ARCHITECTURES,
    DetectorSpec,
    default_widths,
    export_model,
    feature_sizes,
    resolve_widths,
    width_layer_names,
)
from edgeprune.detection.models.registry import anchors_for, make_divisible
from edgeprune.errors import ConfigError

ARCHS = sorted(ARCHITECTURES)


@pytest.fixture(scope="module")
def tiny_detectors() -> dict[str, Any]:
    """One default tiny detector per architecture, built once for the module."""
    return {arch: build_tiny(tiny_spec(arch)) for arch in ARCHS}


def _filters(model: Any, width_key: str) -> int:
    """Output channels of the layer a width key controls (MobileNetV2 blocks: the projection)."""
    names = {layer.name for layer in model.layers}
    name = width_key if width_key in names else f"{width_key}_project"
    return int(model.get_layer(name).filters)


def test_three_architectures_are_registered() -> None:
    assert ARCHS == ["mobilenet_v2_ssd", "ssd_mobilenet_v1", "ssd_squeezenet"]


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shapes_agree_with_anchors(arch: str, tiny_detectors: dict[str, Any]) -> None:
    spec = tiny_spec(arch)
    model = tiny_detectors[arch]
    anchors = anchors_for(spec, model)
    sizes = feature_sizes(model)
    assert len(sizes) == 6
    # Default first_stride 16 at 64x64: maps of 4x4, 2x2, then 1x1 (stride-2 "same" convs).
    assert sizes[:3] == ((4, 4), (2, 2), (1, 1))
    per_location = len(spec.aspect_ratios) + 1
    assert anchors.shape == (sum(h * w for h, w in sizes) * per_location, 4)
    out = model(random_images(2), training=False)
    assert set(out) == {"loc", "conf_logits"}
    assert tuple(out["loc"].shape) == (2, anchors.shape[0], 4)
    assert tuple(out["conf_logits"].shape) == (2, anchors.shape[0], NUM_CLASSES + 1)
    assert np.isfinite(out["loc"].numpy()).all()


def test_first_stride_8_adds_a_finer_map() -> None:
    spec = tiny_spec("ssd_squeezenet", first_stride=8)
    model = build_tiny(spec)
    sizes = feature_sizes(model)
    assert sizes[:3] == ((8, 8), (4, 4), (2, 2))
    anchors = anchors_for(spec, model)
    out = model(random_images(1), training=False)
    assert tuple(out["loc"].shape) == (1, anchors.shape[0], 4)
    assert anchors.shape[0] == (64 + 16 + 4 + 3) * 4


def test_bad_first_stride_and_arch_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="first_stride"):
        build_tiny(tiny_spec("ssd_squeezenet", first_stride=4))
    with pytest.raises(ConfigError, match="resnet"):
        width_layer_names("resnet")
    with pytest.raises(ConfigError, match="unknown architecture"):
        default_widths("resnet")


@pytest.mark.parametrize("arch", ARCHS)
def test_default_widths_follow_multiplier(arch: str, tiny_detectors: dict[str, Any]) -> None:
    names = width_layer_names(arch)
    full = default_widths(arch)
    quarter = default_widths(arch, 0.25)
    assert list(full) == names == list(quarter)
    assert all(w % 8 == 0 and w >= 8 for w in quarter.values())
    assert quarter == {n: make_divisible(w * 0.25) for n, w in full.items()}
    model = tiny_detectors[arch]
    for key in (names[0], names[1], "extra1_1", "extra4_2"):
        assert _filters(model, key) == quarter[key]


@pytest.mark.parametrize("arch", ARCHS)
def test_width_mapping_changes_built_filters(arch: str, tiny_detectors: dict[str, Any]) -> None:
    names = width_layer_names(arch)
    overrides = {names[0]: 24, names[3]: 40, "extra2_2": 16}
    spec = tiny_spec(arch, widths=overrides)
    widths = resolve_widths(spec)
    defaults = default_widths(arch, 0.25)
    assert widths == {**defaults, **overrides}
    model = build_tiny(spec)
    for key, value in overrides.items():
        assert _filters(model, key) == value
    untouched = names[-1]
    assert _filters(model, untouched) == defaults[untouched]
    # The network still runs and keeps the anchor layout.
    out = model(random_images(1), training=False)
    assert out["loc"].shape[1] == anchors_for(spec, model).shape[0]
    # Layers that consume a changed layer follow it.
    if arch == "mobilenet_v2_ssd":
        assert names[3] == "b3"
        assert model.get_layer("b4_expand").filters == 6 * 40
        # Block 3 (stride 1) keeps its residual add only while input and output widths match.
        assert "b3_add" in {layer.name for layer in tiny_detectors[arch].layers}
        assert "b3_add" not in {layer.name for layer in model.layers}
    elif arch == "ssd_mobilenet_v1":
        assert names[3] == "conv3"
        assert model.get_layer("conv4_dw").output_shape[-1] == 40
        assert model.get_layer("conv4").kernel.shape[2] == 40
    else:
        assert names[3] == "fire2_expand3x3"
        concat = defaults["fire2_expand1x1"] + 40
        assert model.get_layer("fire2_concat").output_shape[-1] == concat
        assert model.get_layer("fire3_squeeze1x1").kernel.shape[2] == concat


def test_width_list_sets_every_layer() -> None:
    arch = "ssd_squeezenet"
    names = width_layer_names(arch)
    values = [8 + 8 * (i % 3) for i in range(len(names))]
    spec = tiny_spec(arch, widths=values)
    assert resolve_widths(spec) == dict(zip(names, values, strict=True))
    model = build_tiny(spec)
    for name, value in zip(names, values, strict=True):
        assert model.get_layer(name).filters == value


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_widths_raise_errors_naming_the_problem(arch: str) -> None:
    names = width_layer_names(arch)
    with pytest.raises(ConfigError, match="no_such_layer"):
        resolve_widths(tiny_spec(arch, widths={"no_such_layer": 8}))
    with pytest.raises(ConfigError, match=f"needs {len(names)} filter counts"):
        resolve_widths(tiny_spec(arch, widths=[8] * (len(names) - 1)))
    with pytest.raises(ConfigError, match=names[2]):
        resolve_widths(tiny_spec(arch, widths={names[2]: 0}))
    bad_list = [8] * len(names)
    bad_list[-1] = -1
    with pytest.raises(ConfigError, match=names[-1]):
        resolve_widths(tiny_spec(arch, widths=bad_list))


@pytest.mark.parametrize("arch", ARCHS)
def test_export_model_gives_softmax_scores(arch: str, tiny_detectors: dict[str, Any]) -> None:
    tf, keras = tf_keras()
    model = tiny_detectors[arch]
    export = export_model(model, keras)
    assert set(export.output_names) == {"loc", "conf"}
    images = random_images(2, seed=5)
    out = export(images, training=False)
    train_out = model(images, training=False)
    conf = out["conf"].numpy()
    assert conf.shape == tuple(train_out["conf_logits"].shape)
    np.testing.assert_allclose(conf.sum(axis=-1), 1.0, atol=1e-5)
    assert conf.min() >= 0.0
    np.testing.assert_allclose(conf, tf.nn.softmax(train_out["conf_logits"]).numpy(), atol=1e-6)
    np.testing.assert_allclose(out["loc"].numpy(), train_out["loc"].numpy(), atol=1e-6)


@pytest.mark.parametrize("widths", [None, {"extra1_1": 16}])
def test_detector_spec_dict_round_trip(widths: dict[str, int] | None) -> None:
    spec = tiny_spec("ssd_mobilenet_v1", widths=widths, min_scale=0.15, max_scale=0.85,
                     aspect_ratios=(1.0, 2.0, 0.5, 3.0, 1.0 / 3.0), first_stride=8)
    d = spec.to_dict()
    assert d["widths"] == resolve_widths(spec)
    restored = DetectorSpec.from_dict(json.loads(json.dumps(d)))
    assert restored.to_dict() == d
    assert restored.arch == spec.arch
    assert restored.num_classes == spec.num_classes
    assert restored.input_size == spec.input_size
    assert restored.aspect_ratios == pytest.approx(spec.aspect_ratios)
    assert (restored.min_scale, restored.max_scale, restored.first_stride) == (0.15, 0.85, 8)
    assert resolve_widths(restored) == resolve_widths(spec)
    # Resolved widths survive a change of width multiplier: they are stored explicitly.
    assert resolve_widths(DetectorSpec.from_dict({**d, "width_multiplier": 1.0})) == d["widths"]


# --------------------------------------------------------------------------- base training stage


def test_base_counts_are_taken_after_training(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Any) -> None:
    """Table 1's base row (params, non-zero params) describes the trained weights, not the
    initialisation (whose zero biases and batch-norm offsets would count as pruned)."""
    from pathlib import Path

    import yaml

    from edgeprune.compression.size import keras_counts
    from edgeprune.jobs import JobLog
    from edgeprune.reporting.tracking import DatasetInfo
    from edgeprune.stages import train as stage

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    config["detectors"]["mobilenet_v2_ssd"].update(input_size=[64, 64], width_multiplier=0.25)
    config["anchors"]["aspect_ratios"] = [1.0, 2.0, 0.5]
    trained: dict[str, Any] = {}

    def fake_train(model: Any, data: Any, anchors: Any, cfg: Any, log: Any = None,
                   **checkpointing: Any) -> dict:
        """Stand-in for training: every zero-initialised weight moves off zero, and one kernel
        ends up half zeros."""
        trained["before"] = keras_counts(model)
        new = [np.where(w == 0, 0.5, w).astype(w.dtype) for w in model.get_weights()]
        model.set_weights(new)
        conv = next(layer for layer in model.layers if type(layer).__name__ == "Conv2D")
        kernel, *rest = conv.get_weights()
        kernel.ravel()[: kernel.size // 2] = 0.0
        conv.set_weights([kernel, *rest])
        trained["after"] = keras_counts(model)
        return {"loss": [1.0], "seconds": [0.1]}

    monkeypatch.setattr(stage, "load_train_data", lambda config, size, log: [0] * 4)
    monkeypatch.setattr(stage, "train", fake_train)
    monkeypatch.setattr(stage, "train_fingerprint", lambda *args, **kwargs: {})
    monkeypatch.setattr(stage, "dataset_info", lambda config, context: DatasetInfo(
        name="synthetic:test", digest="0" * 16, source=str(tmp_path), splits={"train": 4}))
    monkeypatch.setattr(stage, "recalibrate", lambda model, data, cfg, log: None)
    monkeypatch.setattr(stage, "save_keras", lambda model, path: Path(path).write_bytes(b"k"))
    monkeypatch.setattr(stage, "save_spec", lambda spec, model, path: None)
    metrics_out = tmp_path / "metrics.json"
    stage.train_base(config, "mobilenet_v2_ssd", tmp_path / "m.keras", tmp_path / "s.json",
                     metrics_out, 1, JobLog(None, "test", echo=None))
    metrics = json.loads(metrics_out.read_text())["metrics"]
    before, after = trained["before"], trained["after"]
    assert before["nonzero_params"] != after["nonzero_params"]  # the stand-in changed them
    assert metrics["params"] == after["params"]
    assert metrics["nonzero_params"] == after["nonzero_params"]
