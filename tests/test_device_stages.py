"""Tests for the edge-device workflow stages (edgeprune.stages.devices), their config (the
``app:`` schema, the commented device examples in config/config.yaml) and the rules in
workflow/rules/devices.smk.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml
from test_transport import free_port
from tiny_clip import write_clip, write_tiny_spec
from tiny_models import tiny_models

from edgeprune.data.synthetic import generate_dataset
from edgeprune.errors import ConfigError, TargetError
from edgeprune.fileio import read_json, write_json
from edgeprune.jobs import JobLog
from edgeprune.measurement.targets import parse_targets
from edgeprune.stages.devices import (
    APP_DEFAULTS,
    app_fps,
    app_postprocess,
    app_settings,
    demo_video,
    device_resource,
    latency_compare,
    pivot_by_target,
)
from edgeprune.stages.report import _app_columns, _latency_columns

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "workflow" / "schemas"
EXAMPLE = ROOT / "config" / "config.yaml"


def job_log(tmp_path: Path) -> JobLog:
    return JobLog(tmp_path / "job.log", "test", echo=None)


def config(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"mlflow": {"experiment": "devices-test"},
                            "postprocess": {"score_threshold": 0.01}}
    base.update(sections)
    return base


# --------------------------------------------------------------------------- stages


def test_latency_compare_stage_times_all_models_together(tmp_path: Path) -> None:
    models = []
    for name, source in (("base_float32", tiny_models().float_path),
                         ("base_int8", tiny_models().int8_path)):
        models.append(tmp_path / "tflite" / f"{name}.tflite")
        models[-1].parent.mkdir(exist_ok=True)
        shutil.copyfile(source, models[-1])
    cfg = config(threads=1, seed=3, targets={"host-litert": {
        "seconds": 0.2, "block_runs": 2, "blocks_per_group": 2, "warmup": 1}})
    out, raw = tmp_path / "lat" / "table2.json", tmp_path / "lat" / "table2.log"
    record = latency_compare(cfg, "host-litert", "mobilenet_v2_ssd", models, out, raw,
                             job_log(tmp_path))
    result = read_json(out)
    assert (result["target"], result["arch"]) == ("host-litert", "mobilenet_v2_ssd")
    assert result["labels"] == ["base_float32", "base_int8"] and raw.is_file()
    assert [m["path"] for m in result["models"]] == [str(m) for m in models]
    assert result["settings"]["seed"] == 3 and result["raw"]["seed"] == 3
    assert (result["raw"]["block_runs"], result["raw"]["blocks_per_group"]) == (2, 2)
    ident = result["identity"]
    assert ident["runtime"] == "ai-edge-litert" and ident["os"]
    assert ident["threads"] == 1 and ident["threads_used"] == 1  # the config's threads
    vs = result["vs_float32"]["base_int8"]
    assert vs["reference"] == str(models[0]) and isinstance(vs["significant"], bool)
    assert list(result["vs_float32"]) == ["base_int8"]
    assert record.experiment == "devices-test"
    assert record.run_name == "mobilenet_v2_ssd/latency-host-litert"
    assert (record.params["target"], record.params["transport"], record.params["runtime"]) == (
        "host-litert", "local", "litert-python")
    assert record.params["device"]["device_model"] == ident["device_model"]
    assert (record.params["threads"], record.params["threads_used"], record.params["seed"]) == (
        1, 1, 3)
    assert record.params["groups"] == len(result["raw"]["groups"]) >= 6
    assert record.tags["target"] == "host-litert" and record.tags["stage"] == "latency"
    assert set(record.metrics) == {f"{m}_{k}" for m in result["labels"] for k in (
        "median_ms", "ci95_lo_ms", "ci95_hi_ms", "fps_inference")} | {"base_int8_vs_float32_pct"}
    assert record.metrics["base_int8_median_ms"] == result["models"][1]["median_ms"]
    assert record.artifacts == [out, raw]
    assert "vs float32" in (tmp_path / "job.log").read_text()
    # Table 2 reads it: FPS with interval, median ms, paired difference to float32.
    cells = _latency_columns([str(out)])
    assert set(cells) == {("base_float32", "host-litert"), ("base_int8", "host-litert")}
    int8 = cells[("base_int8", "host-litert")]
    assert int8["fps_ci95_lo"] <= int8["fps"] <= int8["fps_ci95_hi"]
    assert int8["ms"] == result["models"][1]["median_ms"]
    assert int8["vs_float32_pct"] == vs["diff_pct"]
    assert (int8["vs_float32_pct_ci95_lo"], int8["vs_float32_pct_ci95_hi"]) == tuple(
        vs["ci95_pct"])
    assert "vs_float32_pct" not in cells[("base_float32", "host-litert")]


def test_table2_app_fps_interval(tmp_path: Path) -> None:
    frames = [10.0, 12.0, 9.0, 11.0, 10.5, 30.0, 10.2, 9.8] * 5
    path = tmp_path / "base_int8.json"
    write_json(path, {"target": "rpi", "fps": 1000.0 / np.mean(frames),
                      "samples_ms": {"frame": frames}})
    cell = _app_columns([str(path)], seed=0)[("base_int8", "rpi")]
    assert cell["app_fps_ci95_lo"] < cell["app_fps"] < cell["app_fps_ci95_hi"]
    assert _app_columns([str(path)], seed=0) == _app_columns([str(path)], seed=0)


def test_app_fps_stage_over_a_clip(tmp_path: Path) -> None:
    cfg = config(threads=1, app={"warmup": 2, "frames": 4, "score_threshold": 0.4})
    clip = write_clip(tmp_path / "clip.avi", 10, size=(30, 40)).path
    out = tmp_path / "app" / "base_float32.json"
    record = app_fps(cfg, "host-litert", "mobilenet_v2_ssd", "base", "float32",
                     tiny_models().float_path, write_tiny_spec(tmp_path / "base.spec.json"),
                     clip, out, tmp_path / "app" / "base_float32.log", 1, job_log(tmp_path))
    result = read_json(out)
    assert result["frames"] == 4 and result["warmup_frames"] == 2
    assert result["settings"]["threads"] == 1  # the config's threads: the target sets none
    assert result["settings"]["postprocess"]["score_threshold"] == 0.4
    assert record.run_name == "mobilenet_v2_ssd/base/app-host-litert-float32"
    assert record.params["target"] == "host-litert" and record.params["engine"] == "litert"
    assert record.params["video_frames"] == 10 and record.params["max_frames"] == 4
    assert record.metrics["fps_app"] == pytest.approx(result["fps"])
    assert (record.params["format"], record.params["precision"]) == ("tflite", "float32")
    assert {"decode_median_ms", "inference_median_ms", "postprocess_median_ms",
            "frame_median_ms"} <= set(record.metrics)
    assert "FPS; per frame (median ms)" in (tmp_path / "job.log").read_text()


def test_disabled_target_through_the_stages(tmp_path: Path) -> None:
    cfg = config(targets={"host-litert": {"enabled": False}})
    expected = "target 'host-litert' is disabled in config (targets.host-litert.enabled: false)"
    with pytest.raises(TargetError) as info:
        latency_compare(cfg, "host-litert", "a", [tiny_models().float_path],
                        tmp_path / "l.json", tmp_path / "l.log", job_log(tmp_path))
    assert str(info.value) == expected
    clip = write_clip(tmp_path / "clip.avi", 3).path
    with pytest.raises(TargetError) as info:
        app_fps(cfg, "host-litert", "a", "base", "float32", tiny_models().float_path,
                write_tiny_spec(tmp_path / "s.json"), clip, tmp_path / "a.json",
                tmp_path / "a.log", 1, job_log(tmp_path))
    assert str(info.value) == expected
    assert not list(tmp_path.glob("[la].*"))


def test_unreachable_ssh_target_through_the_stages(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    spec = {"transport": "ssh", "host": "127.0.0.1", "port": port, "user": "nobody",
            "runtime": "litert-python", "retries": 0, "strict_host_key_checking": False,
            "known_hosts": str(tmp_path / "known_hosts")}
    cfg = config(targets={"rpi": spec}, app={"warmup": 0, "frames": 2})
    pattern = rf"^target 'rpi' \(ssh nobody@127\.0\.0\.1:{port}\): cannot reach the device"
    with pytest.raises(TargetError, match=pattern):
        latency_compare(cfg, "rpi", "a", [tiny_models().float_path], tmp_path / "l.json",
                        tmp_path / "l.log", job_log(tmp_path))
    clip = write_clip(tmp_path / "clip.avi", 3).path
    with pytest.raises(TargetError, match=pattern):
        app_fps(cfg, "rpi", "a", "base", "float32", tiny_models().float_path,
                write_tiny_spec(tmp_path / "s.json"), clip, tmp_path / "a.json",
                tmp_path / "a.log", 1, job_log(tmp_path))
    with pytest.raises(ConfigError, match=r"targets\.nope: no such target"):
        latency_compare(cfg, "nope", "a", [tiny_models().float_path], tmp_path / "l.json",
                        tmp_path / "l.log", job_log(tmp_path))


def test_failed_tool_output_reaches_the_job_log(tmp_path: Path) -> None:
    """Snakemake deletes a failed job's outputs, raw log included; the job log keeps the tail."""
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"garbage")
    broken.with_suffix(".bin").write_bytes(b"")
    cfg = config(targets={"host-app": {"transport": "local", "runtime": "benchmark_app"}})
    with pytest.raises(TargetError):
        latency_compare(cfg, "host-app", "a", [broken, broken], tmp_path / "l.json",
                        tmp_path / "l.log", job_log(tmp_path))
    text = (tmp_path / "job.log").read_text()
    assert f"raw output ({tmp_path / 'l.log'}" in text and "broken.xml" in text


def test_failed_job_keeps_the_raw_output_under_logs(tmp_path: Path) -> None:
    """With ``kept_log`` (the rule's ``log: raw=...``), the device's output is written there
    first: the message points there, and the ``raw`` output exists only after a success."""
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"garbage")
    broken.with_suffix(".bin").write_bytes(b"")
    cfg = config(targets={"host-app": {"transport": "local", "runtime": "benchmark_app"}})
    kept, raw = tmp_path / "logs" / "table2.raw.log", tmp_path / "out" / "table2.log"
    with pytest.raises(TargetError) as info:
        latency_compare(cfg, "host-app", "a", [broken, broken], tmp_path / "l.json", raw,
                        job_log(tmp_path), kept_log=kept)
    assert str(info.value).endswith(f"output kept in {kept}") and "\n" not in str(info.value)
    assert "broken.xml" in kept.read_text() and not raw.exists()
    models = [tmp_path / "m" / f"{n}.tflite" for n in ("base_float32", "base_int8")]
    models[0].parent.mkdir()
    shutil.copyfile(tiny_models().float_path, models[0])
    shutil.copyfile(tiny_models().int8_path, models[1])
    cfg = config(threads=1, targets={"host-litert": {
        "seconds": 0.1, "block_runs": 2, "blocks_per_group": 1, "warmup": 0}})
    latency_compare(cfg, "host-litert", "a", models, tmp_path / "ok.json", raw,
                    job_log(tmp_path), kept_log=kept)
    assert raw.read_bytes() == kept.read_bytes() and b"interleave" in raw.read_bytes()


def test_demo_video_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    generate_dataset(tmp_path / "results/data/VOCdevkit/SYNTH", ["circle"], {"test": 2},
                     (40, 48), seed=0)
    cfg = config(data={"source": "synthetic", "test_sets": ["SYNTH/test"]}, seed=3,
                 app={"warmup": 1, "frames": 4, "fps": 8, "size": [32, 32]})
    info = demo_video(cfg, "results/data/demo.avi", job_log(tmp_path))
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (5, 8.0, 32, 32)
    assert info["settings"]["frames"] == 4


# --------------------------------------------------------------------------- helpers


def test_device_resources_group_targets_by_machine() -> None:
    targets = parse_targets({"targets": {
        "rpi-cpu": {"transport": "ssh", "host": "pi.local", "runtime": "litert-python"},
        "rpi-ncs2": {"transport": "ssh", "host": "pi.local", "user": "pi",
                     "runtime": "openvino", "device": "MYRIAD"},
        "rpi-b": {"transport": "ssh", "host": "pi.local", "port": 2222,
                  "runtime": "litert-python"},
        "s23": {"transport": "adb", "serial": "R5CW0:5555", "runtime": "benchmark_model",
                "binary": "b"},
        "s23-gpu": {"transport": "adb", "serial": "R5CW0:5555", "runtime": "benchmark_model",
                    "binary": "b", "delegates": {"gpu": True}},
    }})
    names = {name: device_resource(t) for name, t in targets.items()}
    assert names["host-litert"] == names["host-openvino"] == "device_host"
    assert names["rpi-cpu"] == names["rpi-ncs2"] == "device_ssh_pi_local_22"
    assert names["rpi-b"] == "device_ssh_pi_local_2222"
    assert names["s23"] == names["s23-gpu"] == "device_adb_R5CW0_5555"
    assert all(name.isidentifier() for name in names.values())


def test_app_settings_defaults_and_errors() -> None:
    settings = app_settings({})
    assert (settings.video, settings.frames, settings.warmup, settings.size) == (
        None, 100, 10, (240, 320))
    assert app_postprocess(config()).score_threshold == 0.5
    assert app_postprocess(config(app={"score_threshold": None})).score_threshold == 0.01
    for app, message in [
        ({"frames": 0}, r"app\.frames': expected an integer >= 1, got 0"),
        ({"warmup": -1}, r"app\.warmup': expected an integer >= 0"),
        ({"fps": True}, r"app\.fps': expected a number"),
        ({"size": [8, 320]}, r"app\.size': expected \[height, width\]"),
        ({"video": ""}, r"app\.video': expected null or a file path"),
        ({"score_threshold": 2}, r"app\.score_threshold': expected null or a number"),
        ({"frame": 3}, r"app\.frame': unknown"),
    ]:
        with pytest.raises(ConfigError, match=message):
            app_settings({"app": app})


def test_pivot_by_target_gives_one_column_per_target(tmp_path: Path) -> None:
    paths = []
    for target, dtype, fps in [("host-litert", "float32", 50.0), ("rpi", "float32", 5.0),
                               ("host-litert", "int8", 80.0), ("rpi", "int8", 9.0)]:
        path = tmp_path / f"{target}_{dtype}.json"
        write_json(path, {"target": target, "arch": "ssd", "variant": "base", "dtype": dtype,
                          "stats": {"fps": fps}})
        paths.append(path)
    table = pivot_by_target(paths, "stats.fps")
    assert list(table.columns) == ["arch", "variant", "dtype", "host-litert", "rpi"]
    assert table[["dtype", "host-litert", "rpi"]].values.tolist() == [
        ["float32", 50.0, 5.0], ["int8", 80.0, 9.0]]
    with pytest.raises(KeyError, match="no key 'stats.p90'"):
        pivot_by_target(paths, "stats.p90")


# --------------------------------------------------------------------------- config files


def targets_validator() -> jsonschema.Draft202012Validator:
    """The ``targets`` part of the config schema, with the schema's own definitions."""
    full = yaml.safe_load((SCHEMAS / "config.schema.yaml").read_text())
    schema = {"type": "object", "definitions": full["definitions"],
              "properties": {"targets": full["properties"]["targets"]}}
    return jsonschema.Draft202012Validator(schema)


def app_validator() -> jsonschema.Draft202012Validator:
    """The ``app`` part of the config schema."""
    app = yaml.safe_load((SCHEMAS / "config.schema.yaml").read_text())["properties"]["app"]
    schema = {"type": "object", "properties": {"app": app}}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def uncommented_example() -> dict[str, Any]:
    """The example file with its commented-out target entries switched back on."""
    entry = re.compile(r"^(  )# ((?:[A-Za-z0-9][A-Za-z0-9_.-]*:\s*(?:#.*)?)|(?:  .*))$")
    text = "\n".join(entry.sub(r"\1\2", line) for line in EXAMPLE.read_text().splitlines())
    return yaml.safe_load(text)


def test_example_targets_validate_once_uncommented() -> None:
    example = uncommented_example()
    names = ["galaxy-s23", "galaxy-s23-gpu", "glass-ee2", "rpi4-ncs2", "rpi4-cpu",
             "jetson-tx2-gpu", "jetson-tx2-trt", "jetson-tx2-cpu"]
    assert list(example["targets"]) == ["host-litert", "host-openvino", *names]
    assert list(targets_validator().iter_errors(example)) == []
    targets = parse_targets(example)
    assert all(not targets[name].enabled for name in names)
    assert targets["rpi4-ncs2"].device == "MYRIAD" and targets["glass-ee2"].transport == "adb"
    assert device_resource(targets["rpi4-ncs2"]) == device_resource(targets["rpi4-cpu"])
    trt = targets["jetson-tx2-trt"]
    assert (trt.runtime, trt.fp16, trt.keep) == ("trtexec", True, 32)
    assert device_resource(trt) == device_resource(targets["jetson-tx2-gpu"])
    # As shipped (entries commented out), the file is valid too.
    shipped = yaml.safe_load(EXAMPLE.read_text())
    assert list(targets_validator().iter_errors(shipped)) == []
    assert list(parse_targets(shipped)) == ["host-litert", "host-openvino"]


def test_app_schema_matches_python() -> None:
    validator = app_validator()
    properties = validator.schema["properties"]["app"]["properties"]
    assert {k: v.get("default") for k, v in properties.items()} == APP_DEFAULTS
    example = uncommented_example()
    assert list(validator.iter_errors(example)) == []
    assert app_settings(example) == app_settings({})
    for bad in ({"frames": 0}, {"warmup": -1}, {"fps": 0}, {"size": [8, 320]}, {"video": ""},
                {"score_threshold": 2}, {"frame": 3}):
        assert list(validator.iter_errors({"app": bad})), bad
        with pytest.raises(ConfigError):
            app_settings({"app": bad})


# --------------------------------------------------------------------------- rules


def test_rules_dry_run_with_one_resource_per_device(tmp_path: Path) -> None:
    """devices.smk in a throwaway Snakefile: per-device resources, model per runtime."""
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    (tmp_path / "targets.yaml").write_text(textwrap.dedent("""\
        targets:
          pi-cpu: {transport: ssh, host: pi, runtime: litert-python}
          pi-ncs2: {transport: ssh, host: pi, runtime: openvino, device: MYRIAD}
          s23: {transport: adb, serial: S1, runtime: benchmark_model, binary: bm}
          glass: {enabled: false, transport: adb, serial: S2, runtime: benchmark_model,
                  binary: bm}
        """))
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""\
        configfile: "{ROOT}/config/config.yaml"
        configfile: "{ROOT}/config/tiny.yaml"
        configfile: "{tmp_path}/targets.yaml"
        include: "{ROOT}/workflow/rules/common.smk"
        include: "{ROOT}/workflow/rules/data.smk"
        include: "{ROOT}/workflow/rules/devices.smk"
        rule all_devices:
            input:
                expand("results/latency/{{target}}/mobilenet_v2_ssd/table2.json",
                       target=ENABLED_TARGETS),
                app_results(["mobilenet_v2_ssd"], ["base"], ["int8"]),
        """))
    models = [f"results/{kind}/mobilenet_v2_ssd/{v}_{d}.{ext}"
              for kind, ext in (("tflite", "tflite"), ("openvino", "xml"))
              for v in ("base", "prune50") for d in ("float32", "float16", "int8", "sparse")]
    for path in (*models, "results/models/mobilenet_v2_ssd/base.spec.json",
                 "results/data/demo.avi"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    run = subprocess.run([snakemake, "-n", "-p", "--cores", "2", "-d", str(tmp_path), "-s",
                          str(tmp_path / "Snakefile")], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = {}
    for block in run.stdout.split("rule ")[1:]:
        wildcards = re.search(r"wildcards: target=([\w.-]+)", block)
        if wildcards:
            rule = block.split(":")[0]
            resources = dict(re.findall(r"(device_\w+)=(\d)", block))
            model = re.search(r"input: ([^,\s]+)", block).group(1)
            jobs[(rule, wildcards.group(1))] = (resources, model)
            if rule == "latency_compare":  # all of Table 2's models in one job
                inputs = re.search(r"input: (.+)", block).group(1).split(", ")
                assert len(inputs) == 8 and inputs[0].endswith("base_float32" + Path(
                    model).suffix), inputs
    targets = ["host-litert", "host-openvino", "pi-cpu", "pi-ncs2", "s23"]
    assert sorted(t for r, t in jobs if r == "latency_compare") == sorted(targets)
    assert sorted(t for r, t in jobs if r == "app_fps") == sorted(set(targets) - {"s23"})
    for (rule, target), (resources, model) in jobs.items():
        own = {"host-litert": "device_host", "host-openvino": "device_host",
               "pi-cpu": "device_ssh_pi_22", "pi-ncs2": "device_ssh_pi_22",
               "s23": "device_adb_S1"}[target]
        assert {k for k, v in resources.items() if v == "1"} == {own}, (rule, target)
        assert set(resources) == {"device_host", "device_ssh_pi_22", "device_adb_S1",
                                  "device_adb_S2"}
        assert model.endswith(".xml" if target in ("host-openvino", "pi-ncs2") else ".tflite")
