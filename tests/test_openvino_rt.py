"""Keras -> OpenVINO IR (fp32/fp16) and the OpenVINO runner; the frozen-graph TFLite path."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeprune.tfenv  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edgeprune.compression.cluster.convert import write_artifacts
from edgeprune.compression.openvino_rt import (
    convert_to_ir,
    freeze_detector,
    ir_files,
    openvino_runner,
)
from edgeprune.detection.detect import keras_runner, make_runner
from edgeprune.detection.models import DetectorSpec, build_detector
from edgeprune.errors import DataError

SIZE = (48, 48)


@functools.cache
def _model() -> Any:
    from edgeprune.tfenv import setup

    _, keras = setup(2, 0)
    keras.utils.set_random_seed(0)
    return build_detector(DetectorSpec("ssd_squeezenet", 2, SIZE, 0.25,
                                       aspect_ratios=(1.0, 2.0, 0.5)), keras)


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, *SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def irs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ir")
    frozen = freeze_detector(_model())
    return {p: convert_to_ir(frozen, out / f"base_{p}.xml", fp16=p == "fp16")
            for p in ("fp32", "fp16")}


def test_ir_files_written_atomically(irs: dict[str, Path]) -> None:
    for xml in irs.values():
        assert all(p.is_file() for p in ir_files(xml))
    leftovers = [p.name for p in irs["fp32"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # fp16 weights take about half the space.
    fp32, fp16 = (ir_files(irs[p])[1].stat().st_size for p in ("fp32", "fp16"))
    assert fp16 < 0.6 * fp32


def test_ir_is_static_batch_one_with_named_outputs(irs: dict[str, Path]) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(irs["fp32"]))
    assert list(model.inputs[0].get_partial_shape().to_shape()) == [1, *SIZE, 3]
    assert {n for out in model.outputs for n in out.get_names()} >= {"loc", "conf"}


def test_runner_matches_keras(irs: dict[str, Path]) -> None:
    x = _images(3)
    ref_loc, ref_probs = keras_runner(_model())(x)
    loc, probs = openvino_runner(irs["fp32"], threads=1)(x)
    assert loc.shape == ref_loc.shape and probs.shape == ref_probs.shape
    assert loc.dtype == np.float32
    np.testing.assert_allclose(loc, ref_loc, atol=1e-4)
    np.testing.assert_allclose(probs, ref_probs, atol=1e-5)
    runner, batch = make_runner("openvino", irs["fp16"], 1)
    loc16, probs16 = runner(x)
    assert batch is None
    np.testing.assert_allclose(loc16, ref_loc, atol=2e-2)
    np.testing.assert_allclose(probs16, ref_probs, atol=5e-3)


def test_missing_ir_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        openvino_runner(tmp_path / "nothing.xml", threads=1)


def test_tflite_from_frozen_graph_matches_keras(tmp_path: Path) -> None:
    from edgeprune.measurement.latency import LiteRTRunner

    arts = write_artifacts(_model(), tmp_path / "m", ("tflite",))
    lite = LiteRTRunner(arts["tflite"].path, num_threads=1)
    x = _images(1)
    out = lite.invoke(x)
    ref_loc, ref_probs = keras_runner(_model())(x)
    np.testing.assert_allclose(out["loc"], ref_loc, atol=1e-4)
    np.testing.assert_allclose(out["conf"], ref_probs, atol=1e-5)


def test_host_openvino_target_times_the_ir(irs: dict[str, Path], tmp_path: Path) -> None:
    from edgeprune.measurement.devices.bench import run_benchmark
    from edgeprune.measurement.targets import parse_targets

    target = parse_targets({})["host-openvino"]
    result = run_benchmark(target, irs["fp32"], tmp_path / "raw.log", warmup=1, runs=3)
    assert result["stats"]["n"] == 3 and result["stats"]["median_ms"] > 0
    assert (tmp_path / "raw.log").is_file()
