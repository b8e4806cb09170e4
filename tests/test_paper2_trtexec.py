"""Paper 2 on a Jetson-style target (issue 10, point 7): ``runtime: trtexec`` over ssh gets ONNX
files from both halves of the workflow.

* The Keras backend's ONNX files (thinned detector and isolated unit, every architecture with
  MobileNetV2-SSD among them), converted by tf2onnx, pass ``onnx.checker``, have the names of
  the IR (``image`` -> ``loc``, ``conf``; a unit ``x``), a static batch of 1, and give the Keras
  model's outputs (within 1e-4) when OpenVINO reads them (onnxruntime is not a pinned package;
  OpenVINO reads ONNX). Without tf2onnx the export is a one-line DataError.
* A config with a trtexec target needs neither torch nor a torch twin with the Keras backend,
  and ``accuracy: per_format`` scores the ONNX files (OpenVINO); it fails at parse time, in one
  line naming the target and the install command, when tf2onnx is missing.
* The package stage functions of a sweep and a whole-model series (build, then time) on a
  trtexec target behind the real sshd of tests/test_transport.py, with the stand-in trtexec of
  tests/test_device_faults.py: ONNX files are written, each is built into an engine once and
  timed by the stand-in, and the CSVs carry its latency; application FPS is skipped, logged.
  The whole-model series scores its ONNX files (``per_format``), the sweep its Keras models.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import test_transport
from detector_helpers import build_tiny, random_images, tf_keras, tiny_spec
from test_cluster_surgery import _calibrate_bn
from test_device_faults import DATA, TRTEXEC, script
from test_transport import SshServer

from edgeprune.compression.cluster.backend import keras_backend
from edgeprune.compression.cluster.convert import (
    FORMATS,
    RUNTIME_FORMAT,
    TF2ONNX_PIN,
    keras_onnx_bytes,
)
from edgeprune.compression.cluster.measure import FORMAT_RUNTIME
from edgeprune.compression.cluster.settings import paper2_settings
from edgeprune.data.synthetic import generate_dataset
from edgeprune.detection.model_io import save_keras, save_spec
from edgeprune.detection.models import export_model
from edgeprune.errors import ConfigError, DataError
from edgeprune.jobs import JobLog
from edgeprune.measurement.devices.transport import local_sha256
from edgeprune.stages import paper2

# The real sshd of tests/test_transport.py (a fresh server for this module).
sshd = test_transport.sshd

ROOT = Path(__file__).resolve().parents[1]
ARCH = "ssd_mobilenet_v1"
CLASSES = ["circle", "square", "triangle"]
TIMING = {"seconds": 0.1, "block_runs": 2, "blocks_per_group": 2, "warmup": 1, "min_groups": 2}


def _ov_outputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of an ONNX file (or an IR) read by OpenVINO, by tensor name (first name of each
    output), in float32 (the CPU plugin's default is bf16 where the CPU has it)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(x)
    return {next(iter(port.get_names())): np.asarray(v) for port, v in result.items()}


def test_onnx_is_the_format_of_trtexec_in_both_backends() -> None:
    from edgeprune.compression.torch_backend.export import FORMATS as TORCH_FORMATS

    assert RUNTIME_FORMAT["trtexec"] == "onnx"
    assert FORMATS["onnx"] == TORCH_FORMATS["onnx"] == ".onnx"
    assert FORMAT_RUNTIME["onnx"] == "openvino"           # per_format scores ONNX on the host
    # The pin named in the install hints is the one the environment gets.
    assert TF2ONNX_PIN in (ROOT / "envs" / "requirements.txt").read_text().split()


#: Per architecture: filters removed from the detector, and the layer isolated (some kept).
THIN = {
    "ssd_mobilenet_v1": ({"conv3": [0, 2, 5], "conv5": [1]}, "conv3"),
    "mobilenet_v2_ssd": ({"last": [1, 2, 30], "extra2_1": [3]}, "last"),   # no torch twin
}


def _static_io(path: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Input and output names of an ONNX file with their dimensions, checked by
    ``onnx.checker`` (full check: shapes inferred)."""
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)

    def dims(values: Any) -> dict[str, list[int]]:
        return {v.name: [d.dim_value if d.HasField("dim_value") else -1
                         for d in v.type.tensor_type.shape.dim] for v in values}

    return dims(proto.graph.input), dims(proto.graph.output)


@pytest.mark.parametrize("arch", sorted(THIN))
def test_keras_onnx_through_tf2onnx_matches_keras(arch: str, tmp_path: Path) -> None:
    _, keras = tf_keras(0)
    spec = tiny_spec(arch)
    model = build_tiny(spec)
    _calibrate_bn(model, random_images(16, seed=1), np.random.default_rng(0))
    backend = keras_backend(keras)
    model = backend.load(model, spec)
    removal, unit_layer = THIN[arch]
    # A thinned detector: its own widths, through the Keras backend's artifacts (IR beside it).
    thin, thin_spec = backend.prune(model, spec, removal)
    arts = backend.artifacts(thin, tmp_path / "thin", ("onnx", "ir"))
    assert arts["onnx"].path == tmp_path / "thin.onnx" and arts["onnx"].seconds > 0
    inputs, outputs = _static_io(arts["onnx"].path)
    assert inputs == {"image": [1, *spec.input_size, 3]}
    assert list(outputs) == ["loc", "conf"]                   # the order of the torch files
    assert all(d[0] == 1 for d in outputs.values())
    x = random_images(2, seed=3)
    want = export_model(thin, keras)(x[:1], training=False)
    got = _ov_outputs(arts["onnx"].path, x[:1])
    for name in ("loc", "conf"):
        assert got[name].shape == np.asarray(want[name]).shape
        assert np.abs(got[name] - np.asarray(want[name])).max() < 1e-4, name
    assert got["conf"].shape[-1] == thin_spec.num_classes + 1
    ir = _ov_outputs(arts["ir"].path, x[:1])              # the IR of the same model agrees
    assert np.abs(ir["loc"] - got["loc"]).max() < 1e-4

    # The swept layer alone: a plain Keras model, input ``x`` as its IR.
    width = int(model.get_layer(unit_layer).filters)
    keep = [i for i in range(width) if i % 3]
    unit = backend.isolate(model, unit_layer, keep)
    unit_arts = backend.unit_artifacts(unit, tmp_path / "layer", ("onnx",))
    path = unit_arts["onnx"].path
    assert path == tmp_path / "layer.onnx"
    inputs, outputs = _static_io(path)
    assert inputs == {"x": [1, *unit.input_shape[1:]]} and len(outputs) == 1
    ux = np.random.default_rng(4).uniform(-1, 3, (1, *unit.input_shape[1:])).astype(np.float32)
    unit_out = next(iter(_ov_outputs(path, ux).values()))
    ref = np.asarray(unit(ux, training=False))
    assert unit_out.shape == ref.shape == (1, *ref.shape[1:3], len(keep))
    assert np.abs(unit_out - ref).max() < 1e-4


def test_keras_onnx_without_tf2onnx_is_a_one_line_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, keras = tf_keras(0)
    model = export_model(build_tiny(tiny_spec(ARCH)), keras)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)     # import tf2onnx raises ImportError
    with pytest.raises(DataError) as info:
        keras_onnx_bytes(model)
    message = str(info.value)
    assert "\n" not in message and repr(model.name) in message and TF2ONNX_PIN in message


def _config(tmp_path: Path, target: dict[str, Any], **paper2_over: Any) -> dict[str, Any]:
    section = {
        "archs": [ARCH], "targets": ["jetson"], "eval_images": 4,
        "sweep": {"layers": {ARCH: ["conv1"]}, "step": 7, "min_filters": 2, "max_removed": None,
                  "isolated": {"enabled": True, "step": 7}, "timing": TIMING},
        "cluster": {"size": 4, "size_from": "jetson"},
        "whole": {"layers": {ARCH: ["conv[1-2]"]}, "measure_every": 4, "steps": 1,
                  "min_filters": 4, "timing": TIMING, "finetune": {"enabled": False}},
        "app_fps": {"frames": 2, "warmup": 0, "passes": 1},
        **paper2_over,
    }
    return {"seed": 0, "threads": 1,
            "data": {"source": "synthetic", "test_sets": ["SYNTH/test"],
                     "synthetic": {"classes": CLASSES}},
            "detectors": {ARCH: {"input_size": [64, 64], "width_multiplier": 0.25,
                                 "widths": None}},
            "evaluation": {"bootstrap": 50},
            "targets": {"jetson": target}, "paper2": section}


def test_trtexec_target_parses_without_torch_and_fails_without_tf2onnx(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = {"transport": "ssh", "host": "jetson.local", "runtime": "trtexec"}
    config = _config(tmp_path, target)
    config["detectors"]["mobilenet_v2_ssd"] = config["detectors"][ARCH]
    config["paper2"]["archs"] = [ARCH, "mobilenet_v2_ssd"]
    for key in ("sweep", "whole"):
        config["paper2"][key]["layers"]["mobilenet_v2_ssd"] = ["last"]
    real = importlib.util.find_spec
    missing: set[str] = {"torch"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else real(name, *a))
    # Keras backend: no torch and no torch twin needed (mobilenet_v2_ssd has none), and the
    # ONNX files can be scored per format (OpenVINO reads them).
    s = paper2_settings(config)
    assert s.targets["jetson"].runtime == "trtexec" and s.archs == [ARCH, "mobilenet_v2_ssd"]
    per_format = {**config, "paper2": {**config["paper2"], "accuracy": "per_format"}}
    assert paper2_settings(per_format).accuracy == "per_format"
    missing.add("tf2onnx")
    with pytest.raises(ConfigError) as info:
        paper2_settings(config)
    message = str(info.value)
    assert "\n" not in message and "'jetson'" in message and "tf2onnx" in message
    assert f"pip install {TF2ONNX_PIN}" in message and "make venv" in message
    # The torch backend needs torch (a one-line error without it) and exports with torch.onnx:
    # tf2onnx is not needed there.
    torch_cfg = {**config, "paper2": {**config["paper2"], "archs": [ARCH], "backend": "torch"}}
    with pytest.raises(ConfigError, match=r"^config key 'paper2\.backend': the torch backend "
                                          r"needs torch and torch-pruning[^\n]*$"):
        paper2_settings(torch_cfg)
    missing.discard("torch")
    torch_only = {**config, "paper2": {**config["paper2"], "archs": [ARCH], "backend": "torch"}}
    assert paper2_settings(torch_only).backends == ("torch",)
    both = {**torch_only, "paper2": {**torch_only["paper2"], "backend": ["torch", "keras"]}}
    with pytest.raises(ConfigError, match="'jetson'.*tf2onnx"):
        paper2_settings(both)


def _arg(call: str, flag: str) -> str:
    """The value of ``flag=`` in one logged trtexec command line."""
    return next(a.split("=", 1)[1] for a in call.split() if a.startswith(f"{flag}="))


def _engines_are_of(workdir: Path, onnx_files: list[Path]) -> None:
    """Every engine on the "device" was built from one of ``onnx_files`` and each distinct file
    has its engine (the stand-in writes the ONNX checksum into the engine)."""
    engines = {p.read_text().split()[-1] for p in (workdir / "engines").glob("*.plan")}
    assert engines == {local_sha256(f) for f in onnx_files}


def test_paper2_sweep_and_whole_on_a_trtexec_target_over_ssh(
        sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trtexec = script(tmp_path / "jetson" / "trtexec", TRTEXEC)
    shutil.copyfile(DATA / "trtexec_10.3.log", trtexec.parent / "trtexec_10.3.log")
    target = sshd.spec(runtime="trtexec", binary=str(trtexec), fp16=True,
                       workdir=str(tmp_path / "w"), runs=5)
    config = _config(tmp_path, target)
    monkeypatch.chdir(tmp_path)           # the synthetic devkit lives under ./results
    generate_dataset(tmp_path / "results/data/VOCdevkit/SYNTH", CLASSES, {"test": 4}, (64, 64),
                     seed=0)
    spec = tiny_spec(ARCH)
    model = build_tiny(spec)
    save_keras(model, tmp_path / "base.keras")
    save_spec(spec, model, tmp_path / "base.json")
    log = JobLog(tmp_path / "job.log", "p2-trtexec", echo=None)

    # Sweep: whole network and the layer alone, ONNX only (the one target reads ONNX).
    models = tmp_path / "sweep_models"
    paper2.sweep_build(config, ARCH, "conv1", tmp_path / "base.keras", tmp_path / "base.json",
                       models, tmp_path / "points.json", 1, log)
    points = json.loads((tmp_path / "points.json").read_text())
    assert points["formats"] == ["onnx"]
    files = [models / r["file_onnx"] for r in points["rows"] + points["layer_rows"]]
    assert [f.name for f in files] == ["0016.onnx", "0009.onnx", "0002.onnx",
                                       "layer_0016.onnx", "layer_0009.onnx", "layer_0002.onnx"]
    assert all(f.stat().st_size > 0 for f in files)
    assert sorted(p.suffix for p in models.iterdir()) == [".onnx"] * 6
    paper2.sweep_time(config, ARCH, "conv1", "jetson", tmp_path / "points.json", models,
                      tmp_path / "sweep.csv", tmp_path / "raw_sweep", log)
    calls = (trtexec.parent / "calls").read_text().splitlines()
    built = [_arg(c, "--onnx") for c in calls if "--saveEngine=" in c]
    assert len(built) == 6 and all(b.endswith(".onnx") for b in built)  # once per model
    loads = pd.Series([_arg(c, "--loadEngine") for c in calls if "--loadEngine=" in c])
    assert loads.nunique() == 6 and loads.value_counts().min() >= TIMING["min_groups"]
    _engines_are_of(tmp_path / "w", files)
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    assert set(sweep["runtime"]) == {"trtexec"} and set(sweep["target"]) == {"jetson"}
    assert sweep.groupby("scope")["filters_left"].apply(list).to_dict() == {
        "layer": [16, 9, 2], "network": [16, 9, 2]}
    assert np.allclose(sweep["latency_median_ms"], 0.647705)   # the stand-in's TensorRT log
    net = sweep[sweep["scope"] == "network"]
    assert net["mAP"].notna().all()         # the Keras model's mAP (no ONNX evaluator needed)
    assert (net["convert_s"] > 0).all()

    # Whole-model series (cluster pruning), timed in one comparison; no application FPS. Its
    # mAP is that of the ONNX files (per_format: OpenVINO reads them).
    config = {**config, "paper2": {**config["paper2"], "accuracy": "per_format"}}
    (tmp_path / "sizes.json").write_text(json.dumps({"sizes": {"conv1": 4, "conv2": 4},
                                                     "phases": {}}))
    whole_models = tmp_path / "whole_models"
    paper2.whole_build(config, ARCH, "cluster", tmp_path / "base.keras", tmp_path / "base.json",
                       tmp_path / "sizes.json", whole_models, tmp_path / "cluster.json", 1, log)
    build = json.loads((tmp_path / "cluster.json").read_text())
    assert build["formats"] == ["onnx"]
    assert all("mAP_onnx" in r and "mAP_keras" not in r
               for r in [build["base"], *build["series"]["oneshot"]])
    # The base model's ONNX file scores as the Keras model did in the sweep (same 4 images).
    assert points["rows"][0]["removed"] == []
    assert build["base"]["mAP_onnx"] == pytest.approx(points["rows"][0]["mAP_keras"], abs=1e-6)
    steps = [build["base"], *build["series"]["oneshot"]]
    assert all((whole_models / r["file_onnx"]).stat().st_size > 0 for r in steps)
    before = len((trtexec.parent / "calls").read_text().splitlines())
    paper2.whole_time(config, ARCH, "jetson", [str(tmp_path / "cluster.json")],
                      [str(whole_models)], tmp_path / "base.json", tmp_path / "no-video.mp4",
                      tmp_path / "whole.csv", tmp_path / "raw_whole", log)
    new_calls = (trtexec.parent / "calls").read_text().splitlines()[before:]
    loads = pd.Series([_arg(c, "--loadEngine") for c in new_calls if "--loadEngine=" in c])
    distinct = {json.dumps(r["widths"], sort_keys=True) for r in steps}
    assert loads.nunique() == len(distinct) and \
        loads.value_counts().min() >= TIMING["min_groups"]
    _engines_are_of(tmp_path / "w", files + [whole_models / r["file_onnx"] for r in steps])
    whole = pd.read_csv(tmp_path / "whole.csv")
    assert len(whole) == len(steps) and set(whole["runtime"]) == {"trtexec"}
    assert np.allclose(whole["latency_median_ms"], 0.647705)
    assert np.allclose(whole["mAP"], [r["mAP_onnx"] for r in steps])
    assert whole["app_fps"].isna().all()
    assert "jetson: no application FPS with runtime trtexec" in (tmp_path / "job.log").read_text()
