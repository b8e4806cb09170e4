"""The swept layer alone (issue 12, point 4): its output equals the layer's output inside the
detector for the same input, thinning applies as filter surgery would, and it converts to the
formats the sweep times."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from detector_helpers import build_tiny, calibrate_batchnorm, random_images, tf_keras, tiny_spec

from edgeprune.compression.cluster.isolate import (
    isolate_layer,
    unit_input_shape,
    unit_io,
    unit_layers,
)
from edgeprune.compression.cluster.surgery import prune_filters
from edgeprune.errors import ConfigError


@functools.cache
def _detector(arch: str) -> tuple[Any, Any]:
    spec = tiny_spec(arch)
    model = build_tiny(spec)
    calibrate_batchnorm(model, random_images(8, seed=3))
    return model, spec


def _unit_outputs(model: Any, layer: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, keras = tf_keras()
    uin, uout = unit_io(model, layer, keras)(images)
    return np.asarray(uin), np.asarray(uout)


@pytest.mark.parametrize(("arch", "layer", "chain"), [
    ("ssd_mobilenet_v1", "conv11",
     ["conv11_dw", "conv11_dw_bn", "conv11_dw_relu", "conv11", "conv11_bn", "conv11_relu"]),
    ("ssd_squeezenet", "fire8_expand3x3",
     ["fire8_expand3x3", "fire8_expand3x3_bn", "fire8_expand3x3_relu"]),
])
def test_isolated_layer_equals_layer_inside_detector(arch: str, layer: str,
                                                     chain: list[str]) -> None:
    model, _ = _detector(arch)
    _, keras = tf_keras()
    assert unit_layers(model, layer) == chain
    alone = isolate_layer(model, layer, keras)
    assert tuple(alone.input_shape[1:]) == unit_input_shape(model, layer)
    assert alone.input_shape[0] == 1
    assert [lay.name for lay in alone.layers[1:]] == chain
    for image in random_images(2, seed=5):
        uin, uout = _unit_outputs(model, layer, image[None])
        np.testing.assert_allclose(np.asarray(alone(uin)), uout, rtol=1e-5, atol=1e-5)
        assert float(np.abs(uout).max()) > 0.0          # not a vacuous comparison


@pytest.mark.parametrize(("arch", "layer"), [("ssd_mobilenet_v1", "conv11"),
                                             ("ssd_squeezenet", "fire8_expand3x3")])
def test_thinning_matches_filter_surgery(arch: str, layer: str) -> None:
    model, spec = _detector(arch)
    _, keras = tf_keras()
    width = int(model.get_layer(layer).filters)
    removed = [0, 3, width - 1]
    keep = [i for i in range(width) if i not in removed]
    thin, _ = prune_filters(model, spec, {layer: removed}, keras)
    alone = isolate_layer(model, layer, keras, keep)
    assert alone.output_shape[-1] == width - len(removed)
    image = random_images(1, seed=7)
    uin, uout = _unit_outputs(thin, layer, image)
    # Same as the unit of the thinned detector, and as the kept channels of the full unit.
    np.testing.assert_allclose(np.asarray(alone(uin)), uout, rtol=1e-5, atol=1e-5)
    _, full_out = _unit_outputs(model, layer, image)
    np.testing.assert_allclose(np.asarray(alone(uin)), full_out[..., keep], rtol=1e-5,
                               atol=1e-5)
    via_surgery = isolate_layer(thin, layer, keras)
    for a, b in zip(alone.get_weights(), via_surgery.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_isolate_refuses_bad_requests() -> None:
    model, _ = _detector("ssd_mobilenet_v1")
    _, keras = tf_keras()
    with pytest.raises(ConfigError, match="conv11_bn"):
        isolate_layer(model, "conv11_bn", keras)
    with pytest.raises(ConfigError, match="conv11"):
        isolate_layer(model, "conv11", keras, keep=[999])


def test_isolated_layer_converts_to_both_formats(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgeprune.compression.cluster.convert import write_model_artifacts

    model, _ = _detector("ssd_squeezenet")
    _, keras = tf_keras()
    layer = "fire8_expand3x3"
    alone = isolate_layer(model, layer, keras, keep=list(range(0, 16, 2)))
    arts = write_model_artifacts(alone, tmp_path / "layer_0008", ("tflite", "ir"))
    assert arts["tflite"].path.name == "layer_0008.tflite"
    assert arts["ir"].path.with_suffix(".bin").is_file()
    x = np.random.default_rng(0).uniform(0, 6, alone.input_shape).astype(np.float32)
    want = np.asarray(alone(x))
    interp = Interpreter(model_path=str(arts["tflite"].path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    import openvino as ov

    # f32 inference: the CPU plugin may default to bf16 on CPUs that have it.
    compiled = ov.Core().compile_model(str(arts["ir"].path), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    got_ir = compiled(x)[0]
    assert len(compiled.inputs) == 1
    np.testing.assert_allclose(got_ir, want, rtol=1e-4, atol=1e-4)
