"""Tests for the interleaved timing engine (remote_runner.interleave), its statistics
(edgeprune.measurement.compare) and the ``python -m edgeprune.latency compare`` command.

The engine is driven by STAND-IN models on a FAKE clock: a stand-in inference advances the clock
by its latency (with per-instance and per-call noise) instead of sleeping, so known delays can be
injected and nothing depends on this machine's real speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_models

from edgeprune.errors import ConfigError, TargetError
from edgeprune.measurement.compare import (
    CompareSettings,
    ModelLatency,
    compare_on_target,
    mean_rate_ci95,
    settings_for,
    summarize_groups,
)
from edgeprune.measurement.devices import remote_runner
from edgeprune.measurement.devices.remote_runner import interleave
from edgeprune.measurement.targets import parse_targets

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """Nanosecond clock that only moves when a stand-in model 'runs'."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


class StandIn:
    """Opener of a stand-in model of ``base_ms`` latency: every instance gets its own random
    speed factor (instance effect, sd ``instance_sd``), every call positive jitter."""

    def __init__(self, clock: FakeClock, base_ms: float, rng: np.random.Generator,
                 log: list[int] | None = None, index: int = 0, instance_sd: float = 0.01,
                 call_sd: float = 0.02) -> None:
        self.clock, self.base_ms, self.rng = clock, base_ms, rng
        self.log, self.index = log, index
        self.instance_sd, self.call_sd = instance_sd, call_sd
        self.opened = 0

    def __call__(self) -> Callable[[], None]:
        self.opened += 1
        if self.log is not None:
            self.log.append(self.index)
        factor = 1.0 + self.rng.normal(0.0, self.instance_sd)

        def run() -> None:
            jitter = 1.0 + abs(self.rng.normal(0.0, self.call_sd))
            self.clock.ns += int(self.base_ms * factor * jitter * 1e6)

        return run


def fake_run(delays: list[float], seed: int, seconds: float = 3.0, min_groups: int = 6,
             noise_seed: int | None = None, log: list[int] | None = None,
             max_groups: int = 100000) -> tuple[dict, list[StandIn]]:
    clock = FakeClock()
    rng = np.random.default_rng(1000 + seed if noise_seed is None else noise_seed)
    openers = [StandIn(clock, 1.0 * (1.0 + d), rng, log, i) for i, d in enumerate(delays)]
    raw = interleave(openers, block_runs=10, blocks_per_group=4, warmup=2, seconds=seconds,
                     min_groups=min_groups, max_groups=max_groups, seed=seed, clock=clock)
    return raw, openers


def paths(n: int) -> list[str]:
    return [f"m{i}.tflite" for i in range(n)]


# --------------------------------------------------------------------------- engine


def test_three_percent_slower_model_is_detected() -> None:
    raw, _ = fake_run([0.0, 0.03, -0.03], seed=1)
    comparison = summarize_groups(raw, paths(3), "fake", resamples=1000, seed=1)
    slower, faster = comparison.differences
    assert slower.significant and faster.significant
    assert slower.ci95_pct[0] > 1.5 and 2.0 < slower.diff_pct < 4.0
    assert faster.ci95_pct[1] < -1.5 and -4.0 < faster.diff_pct < -2.0
    assert slower.reference == "m0.tflite" and slower.path == "m1.tflite"
    assert slower.ci95_ms[0] < slower.diff_ms < slower.ci95_ms[1]


def test_aa_comparison_is_not_significant_in_95_percent_of_repeats() -> None:
    repeats = 60
    significant = 0
    for seed in range(repeats):
        raw, _ = fake_run([0.0, 0.0], seed=seed, seconds=1.5)
        diff = summarize_groups(raw, paths(2), "fake", resamples=500, seed=seed).differences[0]
        significant += diff.significant
    assert significant <= 0.05 * repeats, significant


def test_orders_and_seed_are_recorded_and_reproducible() -> None:
    first, _ = fake_run([0.0, 0.01, 0.02], seed=7, noise_seed=0)
    again, _ = fake_run([0.0, 0.01, 0.02], seed=7, noise_seed=0)
    other, _ = fake_run([0.0, 0.01, 0.02], seed=8, noise_seed=0)
    orders = [(g["instance_order"], g["block_orders"]) for g in first["groups"]]
    assert orders == [(g["instance_order"], g["block_orders"]) for g in again["groups"]]
    assert orders[:6] != [(g["instance_order"], g["block_orders"]) for g in other["groups"]][:6]
    assert first == again
    assert (first["seed"], first["block_runs"], first["blocks_per_group"], first["warmup"]) == (
        7, 10, 4, 2)
    for group in first["groups"]:
        assert sorted(group["instance_order"]) == [0, 1, 2]
        assert len(group["block_orders"]) == 4
        assert all(sorted(order) == [0, 1, 2] for order in group["block_orders"])
        assert np.asarray(group["block_medians_ms"]).shape == (4, 3)
    # Not always the same order: the seeded shuffle really shuffles.
    assert len({tuple(o) for g in first["groups"] for o in g["block_orders"]}) > 1


def test_fresh_instances_per_group_in_the_recorded_order() -> None:
    log: list[int] = []
    raw, openers = fake_run([0.0, 0.0, 0.0], seed=3, log=log)
    n_groups = len(raw["groups"])
    assert n_groups >= 6
    assert [o.opened for o in openers] == [n_groups] * 3
    assert log == [i for g in raw["groups"] for i in g["instance_order"]]


def test_group_budget_limits() -> None:
    raw, _ = fake_run([0.0, 0.0], seed=0, seconds=0.0, min_groups=4)
    assert len(raw["groups"]) == 4
    raw, _ = fake_run([0.0, 0.0], seed=0, seconds=1e9, min_groups=2, max_groups=5)
    assert len(raw["groups"]) == 5
    assert raw["elapsed_s"] > 0
    with pytest.raises(ValueError):
        interleave([], block_runs=1, blocks_per_group=1, warmup=0, seconds=0, min_groups=1,
                   max_groups=1, seed=0)


def test_block_medians_are_medians_of_block_runs() -> None:
    clock = FakeClock()
    times = iter([5, 1, 3, 100, 2, 4] * 100)

    def opener() -> Callable[[], None]:
        def run() -> None:
            clock.ns += next(times) * 1_000_000
        return run

    raw = interleave([opener], block_runs=3, blocks_per_group=2, warmup=0, seconds=0,
                     min_groups=1, max_groups=1, seed=0, clock=clock)
    assert raw["groups"][0]["block_medians_ms"] == [[3.0], [4.0]]


# --------------------------------------------------------------------------- statistics


def test_summarize_groups_estimates_and_intervals() -> None:
    raw, _ = fake_run([0.0, 0.5], seed=2)
    comparison = summarize_groups(raw, paths(2), "fake", resamples=800, seed=0,
                                  identity={"runtime": "x"}, settings={"seed": 2})
    pooled = np.asarray([g["block_medians_ms"] for g in raw["groups"]])
    for i, model in enumerate(comparison.models):
        assert model.median_ms == pytest.approx(float(np.median(pooled[:, :, i])))
        assert model.ci95_ms[0] <= model.median_ms <= model.ci95_ms[1]
        assert model.fps == pytest.approx(1000.0 / model.median_ms)
        assert model.fps_ci95[0] <= model.fps <= model.fps_ci95[1]
        assert len(model.block_medians_ms) == len(raw["groups"])
    diff = comparison.differences[0]
    assert diff.ci95_pct[0] <= diff.diff_pct <= diff.ci95_pct[1]
    assert 40.0 < diff.diff_pct < 60.0 and diff.significant
    data = comparison.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["groups"] == len(raw["groups"]) and data["identity"] == {"runtime": "x"}
    assert set(data["models"][0]) >= {"path", "median_ms", "ci95_ms"}
    assert set(data["differences"][0]) >= {"path", "diff_ms", "diff_pct", "ci95_pct",
                                           "significant"}


def test_identical_models_give_a_zero_difference() -> None:
    raw, _ = fake_run([0.0, 0.0], seed=0)
    for group in raw["groups"]:
        group["block_medians_ms"] = [[row[0], row[0]] for row in group["block_medians_ms"]]
    diff = summarize_groups(raw, paths(2), "fake", 200, 0).differences[0]
    assert (diff.diff_pct, diff.ci95_pct, diff.significant) == (0.0, (0.0, 0.0), False)


def test_model_latency_fps_interval() -> None:
    model = ModelLatency("a", 2.0, (1.0, 4.0), [[2.0]])
    assert model.fps == 500.0 and model.fps_ci95 == (250.0, 1000.0)


def test_mean_rate_interval_contains_the_rate() -> None:
    rng = np.random.default_rng(0)
    frames = rng.gamma(20.0, 0.5, size=200)  # ms
    rate = 1000.0 / frames.mean()
    lo, hi = mean_rate_ci95(frames, rate, resamples=500, seed=1)
    assert lo < rate < hi and hi - lo < 0.1 * rate


def test_settings_come_from_the_target() -> None:
    target = parse_targets({"threads": 3, "targets": {
        "host-litert": {"seconds": 7, "block_runs": 5, "blocks_per_group": 2, "warmup": 4}}})[
        "host-litert"]
    assert target.threads == 3  # the config's threads: the target sets none
    settings = settings_for(target, seed=9, seconds=None)
    assert settings == CompareSettings(seconds=7.0, block_runs=5, blocks_per_group=2, warmup=4,
                                       seed=9)
    assert settings_for(target, seconds=1.5).seconds == 1.5


# --------------------------------------------------------------------------- real runtimes


FAST = CompareSettings(seconds=0.2, block_runs=3, blocks_per_group=2, warmup=1, min_groups=3,
                       resamples=200, seed=5)


def test_compare_on_host_targets_records_threads(tmp_path: Path) -> None:
    model = tiny_models().float_path
    copy = tmp_path / "copy.tflite"
    shutil.copyfile(model, copy)
    targets = parse_targets({"threads": 2})
    litert = compare_on_target(targets["host-litert"], [model, copy], FAST, tmp_path / "l.log")
    assert litert.identity["runtime"] == "ai-edge-litert"
    assert litert.identity["threads"] == 2 and litert.identity["threads_used"] == 2
    assert litert.settings["threads"] == 2 and litert.settings["seed"] == 5
    assert len(litert.raw["groups"]) >= 3 and litert.models[0].median_ms > 0
    assert json.loads((tmp_path / "l.log").read_text())["interleave"] == litert.raw
    ov = compare_on_target(targets["host-openvino"], [model, copy], FAST)
    assert ov.identity["runtime"] == "openvino" and ov.identity["threads_used"] == 2
    assert ov.identity["openvino_device"] == "CPU"
    assert ov.identity["inference_precision"] == "f32"   # not bf16 on a bf16-capable CPU


def test_compare_through_the_runner_subprocess(tmp_path: Path) -> None:
    """A local target whose python is not this interpreter runs remote_runner.py --compare."""
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    models = [tiny_models().float_path, tiny_models().int8_path]
    target = parse_targets({"targets": {"host-litert": {"python": str(python), "threads": 1}}})[
        "host-litert"]
    comparison = compare_on_target(target, models, FAST, tmp_path / "runner.log")
    raw_log = (tmp_path / "runner.log").read_text()
    assert "--compare" in raw_log.splitlines()[0] and '"interleave"' in raw_log
    assert comparison.identity["threads_used"] == 1
    assert comparison.identity["runtime"] == "ai-edge-litert"
    assert comparison.raw["seed"] == 5 and len(comparison.raw["groups"]) >= 3
    assert [m.path for m in comparison.models] == [str(m) for m in models]


def test_compare_refuses_bad_input(tmp_path: Path) -> None:
    targets = parse_targets({"targets": {"host-openvino": {"enabled": False}}})
    model = tiny_models().float_path
    with pytest.raises(ConfigError, match="model not found"):
        compare_on_target(targets["host-litert"], [model, tmp_path / "no.tflite"], FAST)
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    with pytest.raises(ConfigError, match="share one format"):
        compare_on_target(targets["host-litert"], [model, xml], FAST)
    with pytest.raises(ConfigError, match=r"reads \.tflite models, not \.xml"):
        compare_on_target(targets["host-litert"], [xml, xml], FAST)
    with pytest.raises(TargetError, match="disabled"):
        compare_on_target(targets["host-openvino"], [model, model], FAST)


# --------------------------------------------------------------------------- command line


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "edgeprune.measurement.latency", "compare", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_cli_compares_two_models_and_writes_json(tmp_path: Path) -> None:
    models = tiny_models()
    out = tmp_path / "out" / "cmp.json"
    run = run_cli(str(models.float_path), str(models.int8_path), "--seconds", "0.3",
                  "--threads", "1", "--seed", "4", "--json", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "compare: timing 2 models on host-litert" in run.stderr
    assert "difference to" in run.stdout and "significant: " in run.stdout
    data = json.loads(out.read_text())
    assert data["target"] == "host-litert"
    assert [m["path"] for m in data["models"]] == [str(models.float_path), str(models.int8_path)]
    for m in data["models"]:
        lo, hi = m["ci95_ms"]
        assert lo <= m["median_ms"] <= hi
    (diff,) = data["differences"]
    assert diff["path"] == str(models.int8_path) and isinstance(diff["significant"], bool)
    assert isinstance(diff["diff_ms"], float) and len(diff["ci95_pct"]) == 2
    assert data["settings"]["seed"] == 4 and data["settings"]["threads"] == 1
    assert data["identity"]["threads_used"] == 1
    assert data["raw"]["groups"][0]["block_orders"]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    model = str(tiny_models().float_path)
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    cases = [
        ((model, str(tmp_path / "missing.tflite")), "model not found"),
        ((model, str(xml)), "cannot choose a target"),
        ((model, model, "--target", "nope"), "targets.nope: no such target"),
        ((model, str(xml), "--target", "host-litert"), "share one format"),
    ]
    for args, message in cases:
        run = run_cli(*args, cwd=tmp_path)
        assert run.returncode == 2, (args, run.stderr)
        assert run.stdout == ""
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_runner_compare_mode_prints_one_json_line(tmp_path: Path) -> None:
    models = tiny_models()
    run = subprocess.run(
        [sys.executable, str(Path(remote_runner.__file__)), "--runtime", "openvino", "--compare",
         "--model", str(models.float_path), "--model", str(models.float_path), "--seconds", "0",
         "--min-groups", "2", "--block-runs", "2", "--blocks-per-group", "3", "--warmup", "0",
         "--threads", "1", "--seed", "11"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    payload = json.loads(run.stdout.strip().splitlines()[-1])
    assert payload["mode"] == "compare" and payload["seed"] == 11
    assert payload["threads"] == 1 and payload["threads_used"] == 1
    raw = payload["interleave"]
    assert len(raw["groups"]) == 2 and len(raw["groups"][0]["block_medians_ms"]) == 3
    assert payload["input_shapes"] == [[[1, 16, 16, 3]]] * 2
