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
import pytest
import yaml
from test_transport import free_port
from tiny_clip import write_clip, write_tiny_spec
from tiny_models import tiny_models

from edgeprune.errors import ConfigError, TargetError
from edgeprune.fileio import read_json, write_json
from edgeprune.jobs import JobLog
from edgeprune.stages.devices import (
    APP_DEFAULTS,
    app_fps,
    app_postprocess,
    app_settings,
    demo_video,
    device_resource,
    latency,
    pivot_by_target,
)
from edgeprune.synthetic import generate_dataset
from edgeprune.targets import parse_targets

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


def test_latency_stage_writes_identity_and_stats(tmp_path: Path) -> None:
    cfg = config(targets={"host-litert": {"threads": 1, "warmup": 1, "runs": 5}})
    out, raw = tmp_path / "lat" / "base_float32.json", tmp_path / "lat" / "base_float32.log"
    record = latency(cfg, "host-litert", "mobilenet_v2_ssd", "base", "float32",
                     tiny_models().float_path, out, raw, job_log(tmp_path))
    result = read_json(out)
    assert (result["target"], result["arch"], result["variant"], result["dtype"]) == (
        "host-litert", "mobilenet_v2_ssd", "base", "float32")
    assert result["stats"]["n"] == 5 and result["raw_log"] == str(raw) and raw.is_file()
    ident = result["identity"]
    assert ident["runtime"] == "ai-edge-litert" and ident["threads"] == 1 and ident["os"]
    assert record.experiment == "devices-test"
    assert record.run_name == "mobilenet_v2_ssd/base/latency-host-litert-float32"
    assert (record.params["target"], record.params["transport"], record.params["runtime"]) == (
        "host-litert", "local", "litert-python")
    assert record.params["device"]["device_model"] == ident["device_model"]
    assert record.params["runs"] == 5 and record.tags["target"] == "host-litert"
    assert set(record.metrics) == {"median_ms", "mean_ms", "p90_ms", "std_ms", "cv", "fps",
                                   "min_ms", "max_ms"}
    assert record.artifacts == [out, raw]


def test_app_fps_stage_over_a_clip(tmp_path: Path) -> None:
    cfg = config(app={"warmup": 2, "frames": 4, "score_threshold": 0.4})
    clip = write_clip(tmp_path / "clip.avi", 10, size=(30, 40)).path
    out = tmp_path / "app" / "base_float32.json"
    record = app_fps(cfg, "host-litert", "mobilenet_v2_ssd", "base", "float32",
                     tiny_models().float_path, write_tiny_spec(tmp_path / "base.spec.json"),
                     clip, out, tmp_path / "app" / "base_float32.log", 1, job_log(tmp_path))
    result = read_json(out)
    assert result["frames"] == 4 and result["warmup_frames"] == 2
    assert result["settings"]["threads"] == 1  # the job's threads: the target sets none
    assert result["settings"]["postprocess"]["score_threshold"] == 0.4
    assert record.run_name == "mobilenet_v2_ssd/base/app-host-litert-float32"
    assert record.params["target"] == "host-litert" and record.params["engine"] == "litert"
    assert record.params["video_frames"] == 10 and record.params["max_frames"] == 4
    assert record.metrics["fps"] == pytest.approx(result["fps"])
    assert {"decode_median_ms", "inference_median_ms", "postprocess_median_ms",
            "frame_median_ms"} <= set(record.metrics)
    assert "FPS; per frame (median ms)" in (tmp_path / "job.log").read_text()


def test_disabled_target_through_the_stages(tmp_path: Path) -> None:
    cfg = config(targets={"host-litert": {"enabled": False}})
    expected = "target 'host-litert' is disabled in config (targets.host-litert.enabled: false)"
    with pytest.raises(TargetError) as info:
        latency(cfg, "host-litert", "a", "base", "float32", tiny_models().float_path,
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
        latency(cfg, "rpi", "a", "base", "float32", tiny_models().float_path,
                tmp_path / "l.json", tmp_path / "l.log", job_log(tmp_path))
    clip = write_clip(tmp_path / "clip.avi", 3).path
    with pytest.raises(TargetError, match=pattern):
        app_fps(cfg, "rpi", "a", "base", "float32", tiny_models().float_path,
                write_tiny_spec(tmp_path / "s.json"), clip, tmp_path / "a.json",
                tmp_path / "a.log", 1, job_log(tmp_path))
    with pytest.raises(ConfigError, match=r"targets\.nope: no such target"):
        latency(cfg, "nope", "a", "base", "float32", tiny_models().float_path,
                tmp_path / "l.json", tmp_path / "l.log", job_log(tmp_path))


def test_failed_tool_output_reaches_the_job_log(tmp_path: Path) -> None:
    """Snakemake deletes a failed job's outputs, raw log included; the job log keeps the tail."""
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"garbage")
    cfg = config(targets={"host-app": {"transport": "local", "runtime": "benchmark_app"}})
    with pytest.raises(TargetError):
        latency(cfg, "host-app", "a", "base", "float32", broken, tmp_path / "l.json",
                tmp_path / "l.log", job_log(tmp_path))
    text = (tmp_path / "job.log").read_text()
    assert f"raw output ({tmp_path / 'l.log'}" in text and "broken.tflite" in text


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
             "jetson-tx2-gpu", "jetson-tx2-cpu"]
    assert list(example["targets"]) == ["host-litert", "host-openvino", *names]
    assert list(targets_validator().iter_errors(example)) == []
    targets = parse_targets(example)
    assert all(not targets[name].enabled for name in names)
    assert targets["rpi4-ncs2"].device == "MYRIAD" and targets["glass-ee2"].transport == "adb"
    assert device_resource(targets["rpi4-ncs2"]) == device_resource(targets["rpi4-cpu"])
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
                latency_results(["mobilenet_v2_ssd"], ["base"], ["int8"]),
                app_results(["mobilenet_v2_ssd"], ["base"], ["int8"]),
        """))
    for path in ("results/tflite/mobilenet_v2_ssd/base_int8.tflite",
                 "results/openvino/mobilenet_v2_ssd/base_int8.xml",
                 "results/models/mobilenet_v2_ssd/base.spec.json", "results/data/demo.avi"):
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
    targets = ["host-litert", "host-openvino", "pi-cpu", "pi-ncs2", "s23"]
    assert sorted(t for r, t in jobs if r == "latency") == sorted(targets)
    assert sorted(t for r, t in jobs if r == "app_fps") == sorted(set(targets) - {"s23"})
    for (rule, target), (resources, model) in jobs.items():
        own = {"host-litert": "device_host", "host-openvino": "device_host",
               "pi-cpu": "device_ssh_pi_22", "pi-ncs2": "device_ssh_pi_22",
               "s23": "device_adb_S1"}[target]
        assert {k for k, v in resources.items() if v == "1"} == {own}, (rule, target)
        assert set(resources) == {"device_host", "device_ssh_pi_22", "device_adb_S1",
                                  "device_adb_S2"}
        assert model.endswith(".xml" if target in ("host-openvino", "pi-ncs2") else ".tflite")
