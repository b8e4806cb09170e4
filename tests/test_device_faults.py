"""Fault injection on the device layer, against the real sshd of tests/test_transport.py.

Every "device program" here is a STAND-IN shell script put where the target's ``python`` or
``trtexec`` would be (the ssh target runs it on this machine through the real sshd): one hangs and
ignores SIGTERM, one kills itself with SIGSEGV, one exits 255, one logs its start and end times
and the checksum of the model it was given, one imitates TensorRT's trtexec (engine build from an
ONNX file, then a timing that prints the reconstructed TensorRT 10.3 output of tests/data).
Measured figures (time from timeout to no remote process, overlaps) are printed with ``-s``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import test_transport
import yaml
from test_transport import SshServer, single_target

from edgeprune.errors import TargetError
from edgeprune.measurement.compare import CompareSettings, compare_on_target
from edgeprune.measurement.devices.bench import run_benchmark, staged_name
from edgeprune.measurement.devices.parsers import BenchmarkOutputError
from edgeprune.measurement.devices.transport import LOCK_FILE, local_sha256

# The real sshd and the fast retry backoff of tests/test_transport.py (a fresh server here).
sshd = test_transport.sshd
fast_backoff = test_transport.fast_backoff

DATA = Path(__file__).with_name("data")
HANG_TOKEN = "987654"  # `sleep 987654`: what pgrep looks for on the "device"


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def model_file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def remote_hang_processes(sshd: SshServer) -> list[str]:
    """Processes of the hanging stand-in still alive on the device (pgrep over ssh; a killed
    process not yet reaped by its new parent, ``<defunct>``, is dead and not counted)."""
    found = sshd.transport().run(["pgrep", "-fa", f"sleep {HANG_TOKEN[:-1]}[{HANG_TOKEN[-1]}]|"
                                  "hang-pytho[n]"], timeout=30)
    return [line for line in found.stdout.splitlines() if "<defunct>" not in line]


def seconds_until_gone(sshd: SshServer, since: float, limit_s: float = 15.0) -> float:
    """Seconds from ``since`` (time.time()) to the answer of the first pgrep over ssh that finds
    no stand-in process: an upper bound of when they went (each pgrep takes an ssh login)."""
    while True:
        found = remote_hang_processes(sshd)
        answered = time.time()
        if not found:
            return answered - since
        if answered - since > limit_s:
            return float("inf")
        time.sleep(0.1)


# --------------------------------------------------------------------------- (b) hangs

HANG = f"""\
# STAND-IN for the target's python (tests/test_device_faults.py): prints a line, then hangs
# with a child, both ignoring SIGTERM, so only `timeout -k`'s SIGKILL of the group ends them.
trap '' TERM
date +%s.%N > "$(dirname "$0")/started"
echo "stand-in runner: started, now hanging"
sleep {HANG_TOKEN} &
wait
"""


def test_hanging_benchmark_is_gone_from_the_device_after_its_timeout(
        sshd: SshServer, tmp_path: Path) -> None:
    python = script(tmp_path / "bin" / "hang-python", HANG)
    target = single_target("board", sshd.spec(runtime="litert-python", python=str(python),
                                              workdir=str(tmp_path / "w"), timeout_s=2))
    model = model_file(tmp_path / "m.tflite", b"TFL3-hang")
    raw_log = tmp_path / "logs" / "board.raw.log"
    with pytest.raises(TargetError) as info:
        run_benchmark(target, model, raw_log, warmup=0, runs=2)
    raised = time.time()
    message = str(info.value)
    assert "\n" not in message
    assert re.search(r"target 'board' \(ssh .*\): ssh command .* timed out after 2 s on the "
                     r"device; partial output kept in .*board\.raw\.log$", message), message
    assert "started, now hanging" in raw_log.read_text()  # partial output kept
    gone_after = seconds_until_gone(sshd, raised)
    started = float((python.parent / "started").read_text())
    assert raised + gone_after - (started + 2.0) <= 10.0, remote_hang_processes(sshd)
    print(f"\n[faults] hang, timeout_s=2 (TERM ignored, KILL 5 s later): error raised "
          f"{raised - started:.1f} s after the start; the first pgrep after it found no remote "
          f"process, answered {gone_after:.2f} s after the error "
          f"({raised + gone_after - started - 2.0:.1f} s after the limit)")


def test_killed_job_leaves_no_process_and_no_lock_on_the_device(sshd: SshServer,
                                                                tmp_path: Path) -> None:
    """The job (this side's process group) is SIGKILLed while the device runs the benchmark:
    the device's own `timeout` still ends it, and the device lock dies with the ssh session."""
    python = script(tmp_path / "bin" / "hang-python", HANG)
    workdir = tmp_path / "w"
    spec = sshd.spec(runtime="litert-python", python=str(python), workdir=str(workdir),
                     timeout_s=3)
    model = model_file(tmp_path / "m.tflite", b"TFL3-killed")
    job = textwrap.dedent(f"""\
        from edgeprune.measurement.devices.bench import run_benchmark
        from edgeprune.measurement.targets import parse_targets
        target = parse_targets({{"targets": {{"board": {spec!r}}}}})["board"]
        run_benchmark(target, {str(model)!r}, {str(tmp_path / "raw.log")!r}, warmup=0, runs=2)
        """)
    proc = subprocess.Popen([sys.executable, "-c", job], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = python.parent / "started"
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert started.exists(), "the stand-in never started"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.time()
    assert remote_hang_processes(sshd)  # still running on the device right after the kill
    gone_after = seconds_until_gone(sshd, killed)
    limit_at = float(started.read_text()) + 3.0
    gone_at = killed + gone_after
    assert gone_at - limit_at <= 10.0
    free = sshd.transport().run(["flock", "-n", str(workdir / LOCK_FILE), "true"], timeout=30)
    assert free.rc == 0, "the killed job's device lock is still held"
    print(f"\n[faults] job SIGKILLed 0.5 s into a hang (timeout_s=3, TERM ignored): no remote "
          f"process by {gone_at - limit_at:.2f} s after the device limit (pgrep answer), "
          f"{gone_after:.2f} s after the kill; device lock free")


# --------------------------------------------------------------------------- (c) crashes

def crash_python(tmp_path: Path, how: str) -> Path:
    return script(tmp_path / "bin" / "crash-python", f"""\
        # STAND-IN for the target's python (tests/test_device_faults.py): prints, then {how}.
        echo call >> "$(dirname "$0")/calls"
        echo "loading model"
        echo "INFO: delegate applied" >&2
        {"kill -SEGV $$" if how == "segfaults" else "exit 255"}
        """)


@pytest.mark.parametrize(("how", "described"), [
    ("segfaults", r"killed by signal 11 \(SIGSEGV\)"),
    ("exits 255", r"exit status 255"),
])
def test_remote_crash_is_reported_as_a_crash_not_retried(sshd: SshServer, tmp_path: Path,
                                                         how: str, described: str) -> None:
    python = crash_python(tmp_path, how)
    target = single_target("board", sshd.spec(runtime="litert-python", python=str(python),
                                              workdir=str(tmp_path / "w"), retries=2))
    raw_log = tmp_path / "logs" / "board.raw.log"
    with pytest.raises(TargetError) as info:
        run_benchmark(target, model_file(tmp_path / "m.tflite", b"TFL3-crash"), raw_log)
    message = str(info.value)
    assert "\n" not in message and "cannot reach" not in message
    # (the device's shell may add its own "Segmentation fault" line to the output)
    assert re.search(rf"target 'board' \(ssh .*\): litert-python {described}; last lines: "
                     r"loading model \| INFO: delegate applied( \| .*Segmentation fault.*)?; "
                     r"output kept in .*board\.raw\.log$", message), message
    assert (python.parent / "calls").read_text().count("call") == 1  # never retried
    assert raw_log.read_text().startswith("loading model\nINFO: delegate applied\n")


# --------------------------------------------------------------------------- trtexec

TRTEXEC = """\
# STAND-IN for TensorRT's trtexec (tests/test_device_faults.py), not the real tool. Builds an
# "engine" (a text file naming the ONNX checksum and precision) from --onnx into --saveEngine;
# with --loadEngine prints the reconstructed TensorRT 10.3 output of tests/data with the
# requested iteration count, cut short when a file "truncate" lies beside this script.
here="$(dirname "$0")"
echo "$*" >> "$here/calls"
onnx=""; save=""; load=""; iterations=10; fp16=0
for arg in "$@"; do
  case "$arg" in
    --onnx=*) onnx="${arg#--onnx=}" ;;
    --saveEngine=*) save="${arg#--saveEngine=}" ;;
    --loadEngine=*) load="${arg#--loadEngine=}" ;;
    --iterations=*) iterations="${arg#--iterations=}" ;;
    --fp16) fp16=1 ;;
  esac
done
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b10] # trtexec $*"
if [ -n "$save" ]; then
  [ -f "$onnx" ] || { echo "[E] Cannot open $onnx"; exit 1; }
  { echo "ENGINE fp16=$fp16"; sha256sum "$onnx" | cut -d' ' -f1; } > "$save"
  echo "[I] Engine built in 0.5 sec."
  exit 0
fi
[ -f "$load" ] || { echo "[E] Error opening engine file: $load"; exit 1; }
if [ -f "$here/truncate" ]; then
  sed -n '1,/GPU Compute Time/p' "$here/trtexec_10.3.log" | sed '$s/, median.*//'
  exit 0
fi
sed "s/Timing trace has 50 queries/Timing trace has $iterations queries/" "$here/trtexec_10.3.log"
"""


def test_trtexec_over_ssh_engine_once_per_model_interleaved(sshd: SshServer,
                                                           tmp_path: Path) -> None:
    trtexec = script(tmp_path / "jetson" / "trtexec", TRTEXEC)
    shutil.copyfile(DATA / "trtexec_10.3.log", trtexec.parent / "trtexec_10.3.log")
    workdir = tmp_path / "w"
    target = single_target("jetson", sshd.spec(runtime="trtexec", binary=str(trtexec),
                                               fp16=True, workdir=str(workdir), runs=40))
    a = model_file(tmp_path / "onnx" / "a.onnx", b"onnx-model-a")
    b = model_file(tmp_path / "onnx" / "b.onnx", b"onnx-model-b")
    settings = CompareSettings(seconds=0.0, min_groups=2, resamples=200, seed=5)
    comparison = compare_on_target(target, [a, b], settings, tmp_path / "cmp.log")
    calls = (trtexec.parent / "calls").read_text().splitlines()
    builds = [c for c in calls if "--saveEngine=" in c]
    loads = [c for c in calls if "--loadEngine=" in c]
    assert len(builds) == 2 and all("--fp16" in c for c in builds)  # once per model
    assert len(loads) == 4 and all("--iterations=40 --duration=0" in c for c in loads)
    for model in (a, b):
        engine = workdir / "engines" / f"{Path(staged_name(model)).stem}-fp16.plan"
        assert engine.read_text().split() == ["ENGINE", "fp16=1", local_sha256(model)]
    assert [m.median_ms for m in comparison.models] == [0.647705, 0.647705]
    assert comparison.raw["warmup"] == 287 and comparison.raw["block_runs"] == 40
    ident = comparison.identity
    assert (ident["runtime"], ident["runtime_version"], ident["precision"]) == (
        "tensorrt trtexec", "10.3.0", "fp16")
    assert "engine build" in (tmp_path / "cmp.log").read_text()

    # (c) a later job (the engine is found on the device: no build) whose output is cut short:
    # one-line BenchmarkOutputError naming target and field, no retry, raw output kept.
    (trtexec.parent / "truncate").write_text("")
    raw_log = tmp_path / "logs" / "jetson.raw.log"
    before = len(calls)
    with pytest.raises(BenchmarkOutputError) as info:
        run_benchmark(target, a, raw_log)
    message = str(info.value)
    assert "\n" not in message and info.value.field == "GPU Compute Time median"
    assert re.match(r"target 'jetson' \(ssh .*\): trtexec output unreadable, field 'GPU Compute "
                    r"Time median': .*; raw output kept in .*jetson\.raw\.log$", message), message
    after = (trtexec.parent / "calls").read_text().splitlines()
    assert len(after) == before + 1 and "--loadEngine=" in after[-1]
    assert "GPU Compute Time: min = 0.636963 ms" in raw_log.read_text()


# --------------------------------------------------------------------------- work folder

RUNNER = """\
# STAND-IN for the target's python running remote_runner.py (tests/test_device_faults.py):
# logs "start <time> <sha256 of --model> <pid>" and "end <time> <pid>", prints a result line.
model=""; prev=""
for arg in "$@"; do [ "$prev" = "--model" ] && model="$arg"; prev="$arg"; done
log="$(dirname "$0")/runs.log"
echo "start $(date +%s.%N) $(sha256sum "$model" | cut -d' ' -f1) $$" >> "$log"
sleep 0.4
echo "end $(date +%s.%N) $$" >> "$log"
printf '%s%s\n' '{"edgeprune_runner": 1, "runtime": "stand-in", "runtime_version": "0", ' \
  '"samples_ms": [1.5, 1.25, 1.75]}'
"""


def test_work_folder_keeps_recent_models_and_drops_stale_part_files(sshd: SshServer,
                                                                    tmp_path: Path) -> None:
    python = script(tmp_path / "bin" / "python", RUNNER)
    workdir = tmp_path / "w"
    models, engines = workdir / "models", workdir / "engines"
    old = [f"{i:016x}" for i in range(1, 5)]  # stems of earlier jobs' models, oldest first
    now = time.time()
    for age, stem in zip((400, 300, 200, 100), old, strict=True):
        for path in (models / f"{stem}.tflite", engines / f"{stem}-fp32.plan"):
            model_file(path, stem.encode())
            os.utime(path, (now - age, now - age))
    stale = model_file(models / "0123.tflite.part", b"half")
    os.utime(stale, (now - 3600, now - 3600))
    fresh = model_file(models / "00000000feedface.tflite.part", b"copy in flight")
    other = model_file(models / "notes.txt", b"not staged by edgeprune")
    target = single_target("board", sshd.spec(runtime="litert-python", python=str(python),
                                              workdir=str(workdir), keep=2))
    model = model_file(tmp_path / "current.tflite", b"TFL3-current")
    result = run_benchmark(target, model, tmp_path / "raw.log", warmup=0, runs=3)
    left = sorted(p.name for p in models.iterdir())
    assert left == sorted([f"{old[2]}.tflite", f"{old[3]}.tflite", staged_name(model),
                           "notes.txt", fresh.name])
    assert sorted(p.name for p in engines.iterdir()) == [f"{old[2]}-fp32.plan",
                                                         f"{old[3]}-fp32.plan"]
    assert not stale.exists() and fresh.exists() and other.exists()
    assert result["stats"]["median_ms"] == 1.5 and result["identity"]["lock_wait_s"] >= 0


# --------------------------------------------------------------------------- (e) one board

SNAKEFILE = """\
import subprocess, sys
TARGETS = ["lo-ip", "lo-name"]
MODELS = ["m1", "m2"]

rule all:
    input: expand("out/{t}/{m}.json", t=TARGETS, m=MODELS)

rule time_model:
    input: "models/{m}.tflite"
    output: "out/{t}/{m}.json"
    log: "logs/{t}/{m}.raw.log"
    shell: f"{sys.executable} drive.py {{wildcards.t}} {{input}} {{output}} {{log}}"
"""

DRIVE = """\
import json, sys
import yaml
from edgeprune.measurement.devices.bench import run_benchmark
from edgeprune.measurement.targets import parse_targets

name, model, out, raw = sys.argv[1:]
target = parse_targets(yaml.safe_load(open("targets.yaml")))[name]
with open(out, "w") as fh:
    json.dump(run_benchmark(target, model, raw, warmup=0, runs=3), fh)
"""


def test_two_host_strings_one_board_never_overlap(sshd: SshServer, tmp_path: Path) -> None:
    """`127.0.0.1` and `localhost` name one sshd; Snakemake sees two devices (two resources) and
    runs 4 jobs at once, yet the device-side lock serialises them."""
    python = script(tmp_path / "board" / "python", RUNNER)
    known = tmp_path / "known_hosts"
    entry = sshd.known_hosts.read_text().split(maxsplit=1)[1]
    known.write_text(f"[127.0.0.1]:{sshd.port} {entry}[localhost]:{sshd.port} {entry}")
    common = {**sshd.spec(runtime="litert-python", python=str(python),
                          workdir=str(tmp_path / "board" / "w")), "known_hosts": str(known)}
    run_dir = tmp_path / "run"
    config = {"targets": {"lo-ip": {**common, "host": "127.0.0.1"},
                          "lo-name": {**common, "host": "localhost"}}}
    (run_dir / "models").mkdir(parents=True)
    (run_dir / "targets.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "Snakefile").write_text(SNAKEFILE)
    (run_dir / "drive.py").write_text(DRIVE)
    for name in ("m1", "m2"):
        model_file(run_dir / "models" / f"{name}.tflite", f"TFL3-{name}".encode())
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "4", "--quiet",
                           "--snakefile", "Snakefile", "--directory", str(run_dir)],
                          cwd=run_dir, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    runs: dict[str, dict[str, Any]] = {}
    for line in (python.parent / "runs.log").read_text().splitlines():
        kind, stamp, *rest = line.split()
        runs.setdefault(rest[-1], {})[kind] = float(stamp)
        if kind == "start":
            runs[rest[-1]]["sha256"] = rest[0]
    spans = sorted((r["start"], r["end"]) for r in runs.values())
    assert len(spans) == 4
    overlaps = sum(1 for (_, end), (start, _) in zip(spans, spans[1:], strict=False) if start < end)
    assert overlaps == 0, spans
    device_sums = sorted(r["sha256"] for r in runs.values())
    results = [json.loads(p.read_text()) for p in sorted((run_dir / "out").rglob("*.json"))]
    assert sorted(r["model_sha256"] for r in results) == device_sums
    assert {r["target"] for r in results} == {"lo-ip", "lo-name"}
    waited = [r["identity"]["lock_wait_s"] for r in results]
    gaps = [start - end for (_, end), (start, _) in zip(spans, spans[1:], strict=False)]
    print(f"\n[faults] 4 jobs under --cores 4 on one sshd as 127.0.0.1 and localhost: "
          f"{overlaps} overlaps; gaps between timings {min(gaps):.2f}-{max(gaps):.2f} s; "
          f"lock waits {', '.join(f'{w:.1f}' for w in sorted(waited))} s; device checksums "
          "match every JSON's model_sha256")
