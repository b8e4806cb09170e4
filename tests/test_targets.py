"""Tests for the target registry (edgeprune.measurement.targets) and its JSON-schema fragment."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edgeprune.errors import ConfigError
from edgeprune.measurement.targets import (
    BUILTIN_TARGETS,
    Delegates,
    Target,
    enabled_targets,
    get_target,
    parse_targets,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

EXAMPLE = {
    "targets": {
        "pixel4": {
            "transport": "adb",
            "serial": "9B131FFAZ004NN",
            "runtime": "benchmark_model",
            "binary": "tools/android_aarch64_benchmark_model",
            "threads": 4,
            "delegates": {"gpu": True},
        },
        "glass": {
            "enabled": False,
            "transport": "adb",
            "serial": "192.168.1.40:5555",
            "runtime": "benchmark_model",
            "binary": "tools/android_arm_benchmark_model",
            "workdir": "/data/local/tmp/ep",
            "runs": 20,
        },
        "rpi-ncs2": {
            "transport": "ssh",
            "host": "raspberrypi.local",
            "user": "pi",
            "key_file": "~/.ssh/id_ed25519",
            "runtime": "openvino",
            "device": "MYRIAD",
            "python": "/home/pi/ov/bin/python3",
            "timeout_s": 1200,
        },
        "tx2": {
            "transport": "ssh",
            "host": "10.0.0.7",
            "port": 2222,
            "strict_host_key_checking": False,
            "runtime": "litert-python",
            "workdir": "~/bench",
        },
        "host-openvino": {"enabled": False},
    }
}


def targets_with(name: str, **spec: Any) -> dict[str, Target]:
    return parse_targets({"targets": {name: spec}})


def test_builtin_targets_exist_by_default() -> None:
    for cfg in (None, {}, {"targets": None}, {"targets": {}}):
        targets = parse_targets(cfg)
        assert set(targets) == set(BUILTIN_TARGETS)
    litert = parse_targets({})["host-litert"]
    assert (litert.transport, litert.runtime, litert.enabled) == ("local", "litert-python", True)
    assert litert.python == sys.executable and litert.delegates == Delegates()
    ov = parse_targets({})["host-openvino"]
    assert (ov.transport, ov.runtime, ov.device, ov.delegates) == ("local", "openvino", "CPU", None)


def test_example_config_parses_with_defaults() -> None:
    targets = parse_targets(EXAMPLE)
    pixel = targets["pixel4"]
    assert pixel.workdir == "/data/local/tmp/edgeprune"
    assert pixel.delegates == Delegates(xnnpack=True, gpu=True, nnapi=False)
    assert (pixel.warmup, pixel.runs, pixel.retries, pixel.timeout_s) == (10, 50, 2, 600.0)
    assert pixel.address == "adb serial 9B131FFAZ004NN"
    rpi = targets["rpi-ncs2"]
    assert (rpi.port, rpi.strict_host_key_checking, rpi.workdir) == (22, True, "edgeprune")
    assert rpi.address == "ssh pi@raspberrypi.local:22"
    tx2 = targets["tx2"]
    assert tx2.python == "python3" and tx2.workdir == "bench"  # "~/" is the login directory
    assert tx2.strict_host_key_checking is False and tx2.port == 2222
    assert targets["host-openvino"].runtime == "openvino"  # merged over the built-in spec


def test_enabled_targets_filters_and_keeps_order() -> None:
    targets = parse_targets(EXAMPLE)
    enabled = enabled_targets(targets)
    assert list(enabled) == ["host-litert", "pixel4", "rpi-ncs2", "tx2"]


def test_get_target_unknown_name() -> None:
    with pytest.raises(ConfigError, match=r"targets\.nope: no such target.*host-litert"):
        get_target(parse_targets({}), "nope")


def test_targets_are_frozen() -> None:
    target = parse_targets({})["host-litert"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.threads = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"transport": "usb", "runtime": "benchmark_model"},
         r"targets\.t\.transport: expected one of local, adb, ssh, got 'usb'"),
        ({"transport": "ssh", "runtime": "tensorrt", "host": "h"},
         r"targets\.t\.runtime: expected one of litert-python"),
        ({"runtime": "openvino"}, r"targets\.t\.transport: expected one of"),
        ({"transport": "adb", "runtime": "benchmark_model", "binary": "b"},
         r"targets\.t\.serial: expected an adb device serial, got '<missing>'"),
        ({"transport": "adb", "serial": "X", "runtime": "openvino"},
         r"targets\.t\.runtime: expected one of benchmark_model for adb targets"),
        ({"transport": "adb", "serial": "X", "runtime": "benchmark_model"},
         r"targets\.t\.binary: expected the path of a benchmark_model binary"),
        ({"transport": "ssh", "runtime": "openvino"}, r"targets\.t\.host: expected a host name"),
        ({"transport": "ssh", "host": "-oProxyCommand=x", "runtime": "openvino"},
         r"targets\.t\.host: expected a host name"),
        ({"transport": "ssh", "host": "h", "port": 70000, "runtime": "openvino"},
         r"targets\.t\.port: expected an integer between 1 and 65535, got 70000"),
        ({"transport": "ssh", "host": "h", "port": "22", "runtime": "openvino"},
         r"targets\.t\.port: expected an integer"),
        ({"transport": "local", "runtime": "openvino", "enabled": "yes"},
         r"targets\.t\.enabled: expected true or false, got 'yes'"),
        ({"transport": "local", "runtime": "openvino", "threads": 0},
         r"targets\.t\.threads: expected an integer between 1 and 1024, got 0"),
        ({"transport": "local", "runtime": "openvino", "threads": True},
         r"targets\.t\.threads: expected an integer"),
        ({"transport": "local", "runtime": "openvino", "runs": 0},
         r"targets\.t\.runs: expected an integer >= 1, got 0"),
        ({"transport": "local", "runtime": "openvino", "timeout_s": -5},
         r"targets\.t\.timeout_s: expected a number > 0"),
        ({"transport": "local", "runtime": "openvino", "seconds": 0},
         r"targets\.t\.seconds: expected a number > 0, got 0"),
        ({"transport": "local", "runtime": "openvino", "block_runs": 0},
         r"targets\.t\.block_runs: expected an integer >= 1, got 0"),
        ({"transport": "local", "runtime": "openvino", "blocks_per_group": 1.5},
         r"targets\.t\.blocks_per_group: expected an integer >= 1"),
        ({"transport": "local", "runtime": "openvino", "device": "TPU"},
         r"targets\.t\.device: expected one of CPU, GPU, MYRIAD, got 'TPU'"),
        ({"transport": "local", "runtime": "litert-python", "device": "CPU"},
         r"targets\.t\.device: not allowed here \(device applies to openvino"),
        ({"transport": "local", "runtime": "openvino", "delegates": {"xnnpack": True}},
         r"targets\.t\.delegates: not allowed here"),
        ({"transport": "local", "runtime": "litert-python", "delegates": {"gpu": True}},
         r"targets\.t\.delegates: litert-python supports only xnnpack"),
        ({"transport": "local", "runtime": "litert-python", "delegates": {"xnnpack": 1}},
         r"targets\.t\.delegates\.xnnpack: expected true or false, got 1"),
        ({"transport": "local", "runtime": "litert-python", "delegates": {"hexagon": True}},
         r"targets\.t\.delegates\.hexagon: unknown delegate"),
        ({"transport": "ssh", "host": "h", "runtime": "benchmark_model", "binary": "b",
          "delegates": {"nnapi": True}},
         r"targets\.t\.delegates\.nnapi: NNAPI exists only on adb targets"),
        ({"transport": "adb", "serial": "X", "runtime": "benchmark_model", "binary": "b",
          "delegates": {"nnapi": True, "gpu": True}},
         r"targets\.t\.delegates: expected at most one of gpu, nnapi"),
        ({"transport": "adb", "serial": "X", "runtime": "benchmark_model", "binary": "b",
          "host": "h"},
         r"targets\.t\.host: not allowed here \(only ssh targets"),
        ({"transport": "ssh", "host": "h", "runtime": "openvino", "serial": "X"},
         r"targets\.t\.serial: not allowed here \(only adb targets take a serial\)"),
        ({"transport": "local", "runtime": "openvino", "workdir": "/tmp/x"},
         r"targets\.t\.workdir: not allowed here"),
        ({"transport": "adb", "serial": "X", "runtime": "benchmark_model", "binary": "b",
          "workdir": "relative/dir"},
         r"targets\.t\.workdir: expected an absolute device path"),
        ({"transport": "local", "runtime": "openvino", "binary": "x"},
         r"targets\.t\.binary: not allowed here"),
        ({"transport": "local", "runtime": "benchmark_model", "binary": "b", "python": "py"},
         r"targets\.t\.python: not allowed here"),
        ({"transport": "local", "runtime": "openvino", "hots": "typo"},
         r"targets\.t\.hots: unknown key; allowed keys are"),
        ({"transport": "local", "runtime": "trtexec"},
         r"targets\.t\.runtime: expected one of litert-python, benchmark_model, openvino, "
         r"benchmark_app for local targets"),
        ({"transport": "ssh", "host": "h", "runtime": "openvino", "fp16": True},
         r"targets\.t\.fp16: not allowed here \(fp16 applies to trtexec\)"),
        ({"transport": "ssh", "host": "h", "runtime": "trtexec", "fp16": "yes"},
         r"targets\.t\.fp16: expected true or false, got 'yes'"),
        ({"transport": "ssh", "host": "h", "runtime": "trtexec", "python": "py"},
         r"targets\.t\.python: not allowed here"),
        ({"transport": "local", "runtime": "openvino", "keep": 3},
         r"targets\.t\.keep: not allowed here \(local targets run files in place\)"),
        ({"transport": "ssh", "host": "h", "runtime": "openvino", "keep": 0},
         r"targets\.t\.keep: expected an integer >= 1, got 0"),
    ],
)
def test_invalid_specs_name_the_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        targets_with("t", **spec)


def test_trtexec_target_and_keep() -> None:
    jetson = targets_with("jetson", transport="ssh", host="192.168.1.60", runtime="trtexec",
                          fp16=True, keep=4)["jetson"]
    assert (jetson.runtime, jetson.binary, jetson.fp16, jetson.keep) == ("trtexec", "trtexec",
                                                                         True, 4)
    assert jetson.python is None and jetson.device is None and jetson.delegates is None
    plain = targets_with("j2", transport="ssh", host="h", runtime="trtexec",
                         binary="/usr/src/tensorrt/bin/trtexec")["j2"]
    assert (plain.binary, plain.fp16, plain.keep) == ("/usr/src/tensorrt/bin/trtexec", False, 32)
    assert targets_with("p", transport="adb", serial="X", runtime="benchmark_model",
                        binary="b")["p"].keep == 32
    local = parse_targets({})["host-litert"]
    assert local.keep is None and local.fp16 is None


def test_invalid_section_and_names() -> None:
    with pytest.raises(ConfigError, match=r"^targets: expected a mapping"):
        parse_targets({"targets": ["pixel4"]})
    with pytest.raises(ConfigError, match=r"targets\.bad name: target names must match"):
        parse_targets({"targets": {"bad name": {"transport": "local", "runtime": "openvino"}}})
    with pytest.raises(ConfigError, match=r"targets\.t: expected a mapping"):
        parse_targets({"targets": {"t": "adb"}})


def test_local_targets_default_to_the_config_threads() -> None:
    remote = {"transport": "ssh", "host": "h", "runtime": "litert-python"}
    targets = parse_targets({"threads": 3, "targets": {"pi": remote}})
    assert targets["host-litert"].threads == targets["host-openvino"].threads == 3
    assert targets["pi"].threads is None  # a remote device's runtime chooses
    assert parse_targets({})["host-litert"].threads == 2  # config default
    pinned = parse_targets({"threads": 3, "targets": {"host-litert": {"threads": 1}}})
    assert pinned["host-litert"].threads == 1
    for bad in (0, True, "2"):
        with pytest.raises(ConfigError, match=r"^threads: expected an integer >= 1"):
            parse_targets({"threads": bad})


def test_comparison_settings_parse_with_defaults() -> None:
    target = parse_targets({})["host-litert"]
    assert (target.seconds, target.block_runs, target.blocks_per_group) == (60.0, 10, 4)
    tuned = targets_with("t", transport="local", runtime="openvino", seconds=3,
                         block_runs=5, blocks_per_group=2)["t"]
    assert (tuned.seconds, tuned.block_runs, tuned.blocks_per_group) == (3.0, 5, 2)


def test_builtin_override_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"targets\.host-litert\.threads"):
        parse_targets({"targets": {"host-litert": {"threads": -1}}})
    targets = parse_targets({"targets": {"host-litert": {"threads": 2, "warmup": 0}}})
    assert (targets["host-litert"].threads, targets["host-litert"].warmup) == (2, 0)


# --------------------------------------------------------------------------- schema fragment


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """The `targets` part of the config schema, with the schema's own definitions."""
    full = yaml.safe_load(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(full)
    schema = {"type": "object", "definitions": full["definitions"],
              "properties": {"targets": full["properties"]["targets"]}}
    return jsonschema.Draft202012Validator(schema)


def test_schema_accepts_example(validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(EXAMPLE)) == []


def test_schema_covers_exactly_the_target_fields(
        validator: jsonschema.Draft202012Validator) -> None:
    properties = set(validator.schema["definitions"]["target"]["properties"])
    fields = {f.name for f in dataclasses.fields(Target)} - {"name"}
    assert properties == fields


def test_schema_defaults_match_python_defaults(validator: jsonschema.Draft202012Validator) -> None:
    properties = validator.schema["definitions"]["target"]["properties"]
    local = parse_targets({})["host-litert"]
    for key, prop in properties.items():
        if "default" in prop:
            assert getattr(local, key) == prop["default"], key


@pytest.mark.parametrize(
    "spec",
    [
        {"transport": "adb", "runtime": "benchmark_model", "binary": "b"},  # no serial
        {"transport": "adb", "serial": "X", "runtime": "openvino"},
        {"transport": "ssh", "runtime": "openvino"},  # no host
        {"transport": "local", "runtime": "benchmark_model"},  # no binary
        {"transport": "local", "runtime": "openvino", "hots": "typo"},
        {"transport": "local", "runtime": "openvino", "port": 22},
        {"transport": "local", "runtime": "litert-python", "device": "CPU"},
        {"transport": "local", "runtime": "openvino", "delegates": {"xnnpack": True}},
        {"transport": "local", "runtime": "litert-python", "delegates": {"tpu": True}},
        {"transport": "ssh", "host": "h", "runtime": "openvino", "port": 0},
        {"transport": "local", "runtime": "openvino", "seconds": 0},
        {"transport": "local", "runtime": "openvino", "block_runs": 0},
        {"transport": "local", "runtime": "trtexec"},
        {"transport": "ssh", "host": "h", "runtime": "openvino", "fp16": True},
        {"transport": "local", "runtime": "openvino", "keep": 3},
        {"transport": "ssh", "host": "h", "runtime": "openvino", "keep": 0},
    ],
)
def test_schema_rejects_what_python_rejects(
    validator: jsonschema.Draft202012Validator, spec: dict[str, Any]
) -> None:
    config = {"targets": {"t": spec}}
    assert list(validator.iter_errors(config)), spec
    with pytest.raises(ConfigError):
        parse_targets(config)
