"""Tests for edgeprune.compression.quantize.convert: the four TFLite flavours of one detector,
their tensor
types, file sizes and numerical agreement, and the argument errors.

The detector is SSD-SqueezeNet at width 1.0 and 64x64 input (3.5 M parameters, so weights
dominate the flatbuffer), with 80% of its Conv2D weights zeroed (as magnitude pruning leaves
them, so the sparse flatbuffer has something to compress) and batch norm calibrated on images
(so its outputs carry signal). Each conversion takes seconds: all four run once per module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from detector_helpers import (
    build_tiny,
    calibrate_batchnorm,
    smooth_images,
    tf_keras,
    tiny_spec,
    zero_smallest_weights,
)

from edgeprune.compression.quantize import DTYPES, TFLITE_OUTPUTS, convert, logits_model
from edgeprune.detection.detect import class_probabilities
from edgeprune.detection.models import export_model
from edgeprune.measurement.latency import LiteRTRunner

ARCH = "ssd_squeezenet"


@dataclass(frozen=True)
class Converted:
    """The converted files, the sizes ``convert`` returned, and Keras reference outputs."""

    paths: dict[str, Path]
    sizes: dict[str, int]
    images: np.ndarray
    keras_outputs: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    _, keras = tf_keras(0)
    model = build_tiny(tiny_spec(ARCH, width_multiplier=1.0))
    zero_smallest_weights(model, 0.8)
    calibrate_batchnorm(model, smooth_images(16, seed=9))
    representative = smooth_images(16, seed=3)
    out = tmp_path_factory.mktemp("tflite")
    paths = {dtype: out / f"{ARCH}_{dtype}.tflite" for dtype in DTYPES}
    sizes = {
        dtype: convert(model, dtype, path, representative if dtype == "int8" else None)
        for dtype, path in paths.items()
    }
    images = smooth_images(2, seed=4)  # not in the representative set
    outputs = export_model(model, keras)(images, training=False)
    return Converted(paths, sizes, images, {k: np.asarray(v) for k, v in outputs.items()})


def _io_dtypes(path: Path) -> tuple[set[type], set[type]]:
    """numpy scalar types of a flatbuffer's inputs and outputs."""
    interpreter = Interpreter(model_path=str(path))
    inputs = {d["dtype"] for d in interpreter.get_input_details()}
    outputs = {d["dtype"] for d in interpreter.get_output_details()}
    return inputs, outputs


def _run(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs for a batch, one image at a time (static batch 1): ``loc`` and the dequantised
    ``conf_logits`` as the file gives them, and ``conf``, the host's float softmax of them."""
    runner = LiteRTRunner(path, num_threads=1)
    outs = [runner.invoke(image[None]) for image in images]
    got = {name: np.concatenate([o[name] for o in outs]) for name in TFLITE_OUTPUTS}
    return {**got, "conf": class_probabilities(got)}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_all_flavours_are_written_with_the_returned_size(converted: Converted) -> None:
    assert set(converted.paths) == {"float32", "float16", "int8", "sparse"}
    for dtype, path in converted.paths.items():
        assert path.is_file(), dtype
        assert path.stat().st_size == converted.sizes[dtype] > 0
        assert path.read_bytes()[4:8] == b"TFL3"  # flatbuffer file identifier
    # Written atomically: no temporary files left beside them.
    assert sorted(p.name for p in converted.paths["int8"].parent.iterdir()) == sorted(
        p.name for p in converted.paths.values())


@pytest.mark.parametrize("dtype", ["float32", "float16", "sparse"])
def test_float_flavours_have_float32_io(converted: Converted, dtype: str) -> None:
    assert _io_dtypes(converted.paths[dtype]) == ({np.float32}, {np.float32})


def test_int8_has_int8_io(converted: Converted) -> None:
    assert _io_dtypes(converted.paths["int8"]) == ({np.int8}, {np.int8})
    runner = LiteRTRunner(converted.paths["int8"])
    assert all(info.quantized for info in runner.inputs.values())
    image = runner.inputs["image"]
    assert image.shape == (1, 64, 64, 3)
    # Calibrated on 0..255 images: one input step per pixel value.
    assert image.scale == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_flavour_ends_at_the_logits(converted: Converted, dtype: str) -> None:
    runner = LiteRTRunner(converted.paths[dtype])
    assert set(runner.outputs) == {"loc", "conf_logits"}


def test_int8_scores_are_not_tied_on_a_quantised_softmax_grid(converted: Converted) -> None:
    """The int8 file outputs logits; their float softmax gives (nearly) all-distinct scores,
    where a softmax quantised to int8 holds at most 257 values (steps of 1/256)."""
    runner = LiteRTRunner(converted.paths["int8"])
    assert runner.outputs["conf_logits"].dtype == np.int8  # really quantised logits
    scores = _run(converted.paths["int8"], converted.images)["conf"][..., 1:].ravel()
    assert scores.size > 2 * 257
    assert np.unique(scores).size > 0.9 * scores.size
    on_grid = np.isclose(scores * 256, np.round(scores * 256), atol=1e-4)
    assert on_grid.mean() < 0.1
    # What the old design (softmax inside the int8 graph) gave: every score on the grid.
    grid = np.round(scores * 256) / 256
    assert np.unique(grid).size <= 257 < np.unique(scores).size


def test_logits_model_cuts_an_exported_detector_before_its_softmax() -> None:
    tf, keras = tf_keras(0)
    model = build_tiny(tiny_spec(ARCH))
    images = smooth_images(1, seed=5)
    want = model(images, training=False)
    cut = logits_model(export_model(model, keras))
    got = cut(images, training=False)
    assert set(cut.output_names) == set(TFLITE_OUTPUTS)
    np.testing.assert_allclose(got["conf_logits"], want["conf_logits"], atol=1e-5)
    np.testing.assert_allclose(got["loc"], want["loc"], atol=1e-5)
    assert logits_model(model) is model


def test_size_ratios(converted: Converted) -> None:
    s = converted.sizes
    assert s["float32"] > 4 * 3_000_000  # ~3.5 M float32 weights
    assert 0.4 < s["float16"] / s["float32"] < 0.6
    assert 0.2 < s["int8"] / s["float32"] < 0.4
    # 80% zeros: the sparse encoding is much smaller than the dense float32 file.
    assert s["sparse"] / s["float32"] < 0.6


@pytest.mark.parametrize(("dtype", "conf_tol", "loc_tol"), [
    ("float32", 1e-4, 1e-3),
    ("sparse", 1e-4, 1e-3),
    # float16 weights: a random network turns their rounding into visible output changes
    # (measured: conf max 0.014, loc max 0.09).
    ("float16", 5e-2, 0.25),
])
def test_float_flavours_match_keras(converted: Converted, dtype: str, conf_tol: float,
                                    loc_tol: float) -> None:
    got = _run(converted.paths[dtype], converted.images)
    want = converted.keras_outputs
    assert got["conf"].shape == want["conf"].shape
    assert got["loc"].shape == want["loc"].shape
    np.testing.assert_allclose(got["conf"], want["conf"], atol=conf_tol)
    np.testing.assert_allclose(got["loc"], want["loc"], atol=loc_tol)
    np.testing.assert_allclose(got["conf"].sum(-1), 1.0, atol=1e-3)


def test_int8_agrees_with_float32(converted: Converted) -> None:
    ref = _run(converted.paths["float32"], converted.images[:1])
    q = _run(converted.paths["int8"], converted.images[:1])
    # The outputs carry signal (not uniform scores, not ~0 offsets) ...
    assert ref["conf"].std() > 0.05 and np.abs(ref["loc"]).mean() > 0.1
    # ... and int8 follows them. Measured on this model: conf max 0.16 / mean 0.03, both
    # correlations >= 0.9; a random (untrained) network amplifies quantisation noise much
    # more than a trained one.
    conf_diff = np.abs(q["conf"] - ref["conf"])
    assert conf_diff.max() < 0.35
    assert conf_diff.mean() < 0.06
    assert _corr(q["conf"], ref["conf"]) > 0.85
    assert _corr(q["loc"], ref["loc"]) > 0.85
    np.testing.assert_allclose(q["conf"].sum(-1), 1.0, atol=0.05)


# --------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def small_model() -> Any:
    return build_tiny(tiny_spec(ARCH))


def test_unknown_dtype_raises_value_error(small_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="int4"):
        convert(small_model, "int4", path)
    assert not path.exists()


@pytest.mark.parametrize("representative", [None, np.zeros((0, 64, 64, 3), np.float32)])
def test_int8_without_representative_images_raises(small_model: Any, tmp_path: Path,
                                                   representative: np.ndarray | None) -> None:
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="representative"):
        convert(small_model, "int8", path, representative)
    assert not path.exists()


# --------------------------------------------------------------------------- calibration set


def _calibration_ids(monkeypatch: pytest.MonkeyPatch, seed: int, count: int,
                     n_train: int = 50) -> list[int]:
    """Which of ``n_train`` training images ``representative_images`` picks (file access is
    replaced by stand-ins that record the request)."""
    from types import SimpleNamespace

    from edgeprune.stages import paper1

    anns = [SimpleNamespace(image_id=i) for i in range(n_train)]
    monkeypatch.setattr(paper1, "load_sets", lambda root, sets: list(anns))

    def fake_images(chosen: list[Any], size: tuple[int, int]) -> np.ndarray:
        assert size == (8, 8)
        return np.asarray([a.image_id for a in chosen])

    monkeypatch.setattr(paper1, "load_images", fake_images)
    config = {"seed": seed, "data": {"source": "synthetic", "train_sets": ["SYNTH/train"]}}
    return [int(i) for i in paper1.representative_images(config, (8, 8), count)]


def test_calibration_set_is_a_seeded_random_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _calibration_ids(monkeypatch, seed=0, count=10)
    assert len(first) == len(set(first)) == 10
    assert all(0 <= i < 50 for i in first)
    assert first != list(range(10))  # not simply the first images of the split
    assert _calibration_ids(monkeypatch, seed=0, count=10) == first  # reproducible
    assert _calibration_ids(monkeypatch, seed=1, count=10) != first  # follows `seed`
    # Asking for more images than the split holds gives the whole split, each once.
    assert sorted(_calibration_ids(monkeypatch, seed=0, count=80)) == list(range(50))
