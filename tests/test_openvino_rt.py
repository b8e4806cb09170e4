"""Keras -> OpenVINO IR (fp32/fp16) and the OpenVINO runner; the frozen-graph TFLite path."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeprune.tfenv  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edgeprune.compression.cluster.convert import write_artifacts
from edgeprune.compression.cluster.measure import FORMAT_RUNTIME
from edgeprune.compression.openvino_rt import (
    _compile,
    convert_to_ir,
    freeze_detector,
    ir_files,
    openvino_runner,
)
from edgeprune.detection.detect import keras_runner, make_runner
from edgeprune.detection.models import DetectorSpec, build_detector
from edgeprune.errors import DataError
from edgeprune.measurement.devices import remote_runner as rr

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
    # remote_runner.py compiled it in the model's precision, not the CPU's bf16 default.
    assert result["tool"]["inference_precision"] == "f32"
    assert result["identity"]["inference_precision"] == "f32"


# --------------------------------------------------------------------------- precision


def test_cpu_compiles_in_the_model_precision(irs: dict[str, Path]) -> None:
    """On a CPU with bf16 support the plugin's default precision is bf16; every project compile
    on CPU asks for f32 (the evaluator's runner, in-process and board timing)."""
    import openvino as ov

    assert rr.inference_precision(_compile(irs["fp32"], 1)) == "f32"
    assert rr.inference_precision(_compile(irs["fp16"], None)) == "f32"  # f16 weights, f32 math
    config = rr.openvino_config("CPU", 2)
    assert config == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                      "INFERENCE_NUM_THREADS": "2"}
    core = ov.Core()
    compiled = rr.compile_openvino(core, core.read_model(str(irs["fp32"])), "CPU", config)
    assert rr.inference_precision(compiled) == "f32"
    info: dict[str, Any] = {}
    infer = rr.openvino_opener(ov, core, str(irs["fp32"]), "CPU", 1, 0, info)()
    infer()
    assert info["inference_precision"] == "f32" and info["threads_used"] == 1
    # Other devices keep their own precision (MYRIAD rejects the option).
    for device in ("MYRIAD", "GPU", "NPU"):
        assert rr.openvino_config(device, 2) == {"PERFORMANCE_HINT": "LATENCY"}


class _PickyCore:
    """A Core whose device refuses the precision option, as an old ARM plugin may."""

    def __init__(self) -> None:
        self.configs: list[dict[str, str]] = []

    def compile_model(self, model: Any, device: str, config: dict[str, str]) -> Any:
        self.configs.append(dict(config))
        if rr.PRECISION_KEY in config:
            raise RuntimeError(f"Unsupported property {rr.PRECISION_KEY} by CPU plugin")
        return _Compiled()


class _Compiled:
    def get_property(self, key: str) -> Any:
        raise RuntimeError(f"{key} is not supported")


def test_precision_option_refused_falls_back_and_records_none(
        capsys: pytest.CaptureFixture[str]) -> None:
    core = _PickyCore()
    compiled = rr.compile_openvino(core, object(), "CPU", rr.openvino_config("CPU", 1))
    assert core.configs == [
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
         "INFERENCE_NUM_THREADS": "1"},
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "1"}]
    assert "refused INFERENCE_PRECISION_HINT=f32" in capsys.readouterr().err
    assert rr.inference_precision(compiled) is None


class _BrokenCore:
    def compile_model(self, model: Any, device: str, config: dict[str, str]) -> Any:
        raise RuntimeError(f"{device} not found")


def test_compile_errors_without_the_precision_option_stand() -> None:
    with pytest.raises(RuntimeError, match="MYRIAD not found"):
        rr.compile_openvino(_BrokenCore(), object(), "MYRIAD", rr.openvino_config("MYRIAD", 1))
    with pytest.raises(RuntimeError, match="CPU not found"):  # retried once, then raised
        rr.compile_openvino(_BrokenCore(), object(), "CPU", rr.openvino_config("CPU", 1))


def test_local_benchmark_app_runs_in_f32(irs: dict[str, Path], tmp_path: Path) -> None:
    from edgeprune.measurement.devices.bench import run_benchmark
    from edgeprune.measurement.targets import parse_targets

    target = parse_targets({"targets": {"host-app": {
        "transport": "local", "runtime": "benchmark_app", "device": "CPU"}}})["host-app"]
    result = run_benchmark(target, irs["fp32"], tmp_path / "app.log", runs=5)
    argv = result["command"].split()
    assert argv[argv.index("-infer_precision") + 1] == "f32"
    assert result["tool"]["inference_precision"] == "f32"
    assert result["identity"]["inference_precision"] == "f32"


def test_onnx_file_is_scored_by_the_openvino_runner(tmp_path: Path) -> None:
    """The evaluator reads the ``.onnx`` files made for TensorRT targets with OpenVINO."""
    from detector_helpers import random_images, tiny_spec

    from edgeprune.compression.torch_backend.export import torch_runner, write_onnx
    from edgeprune.compression.torch_backend.models import build_torch_detector

    model = build_torch_detector(tiny_spec("ssd_squeezenet"), seed=0).eval()
    onnx = write_onnx(model, tmp_path / "m.onnx")
    x = random_images(2)
    want_loc, want_probs = torch_runner(model)(x)
    assert FORMAT_RUNTIME["onnx"] == "openvino"
    runner, batch = make_runner(FORMAT_RUNTIME["onnx"], onnx, 1)
    loc, probs = runner(x)
    assert batch is None and loc.shape == want_loc.shape and probs.shape == want_probs.shape
    assert np.abs(want_loc).max() > 1e-2  # not a vacuous comparison
    np.testing.assert_allclose(loc, want_loc, atol=1e-4)
    np.testing.assert_allclose(probs, want_probs, atol=1e-5)
    assert rr.inference_precision(_compile(onnx, 1)) == "f32"
    with pytest.raises(DataError, match=r"ONNX model .*nothing\.onnx does not exist"):
        openvino_runner(tmp_path / "nothing.onnx", threads=1)
