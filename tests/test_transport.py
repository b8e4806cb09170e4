"""Tests for the device layer: transports and run_benchmark over local, ssh and adb.

SSH runs against a real OpenSSH server started by a fixture on 127.0.0.1 (host key and client key
generated per session, strict host-key checking on). adb cannot be exercised without a phone, so
the adb tests put a STAND-IN ``adb`` script first on PATH: it maps the device's /data/local/tmp to
a temporary directory and runs ``adb shell`` commands with the local ``sh``; a STAND-IN
``benchmark_model`` script prints output in the real tool's format.
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tiny_models import tiny_models

from edgeprune.errors import ConfigError, TargetError
from edgeprune.measurement.compare import CompareSettings, compare_on_target
from edgeprune.measurement.devices import transport as transport_mod
from edgeprune.measurement.devices.bench import run_benchmark, staged_name
from edgeprune.measurement.devices.transport import (
    AdbTransport,
    LocalTransport,
    SshTransport,
    local_sha256,
)
from edgeprune.measurement.targets import Target, parse_targets

SSHD = Path("/usr/sbin/sshd")
HOSTILE = "tiny model; touch PWN_A $(touch PWN_B) `touch PWN_C` it's"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry delays of a few milliseconds instead of seconds."""
    monkeypatch.setattr(transport_mod, "DEFAULT_BACKOFF_S", 0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hostile_names_absent(*dirs: Path) -> None:
    for directory in dirs:
        for marker in ("PWN_A", "PWN_B", "PWN_C"):
            assert not (directory / marker).exists(), f"shell injection ran: {directory / marker}"


def single_target(name: str, spec: dict[str, Any]) -> Target:
    return parse_targets({"targets": {name: spec}})[name]


# --------------------------------------------------------------------------- real sshd


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    client_key: Path
    known_hosts: Path

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {"transport": "ssh", "host": "127.0.0.1", "port": self.port, "user": self.user,
                "key_file": str(self.client_key), "known_hosts": str(self.known_hosts),
                "retries": 0, **extra}

    def transport(self, **kwargs: Any) -> SshTransport:
        options: dict[str, Any] = {
            "user": self.user, "port": self.port, "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts), "target": "test-ssh", "retries": 0,
            "connect_timeout": 5,
        }
        options.update(kwargs)
        return SshTransport("127.0.0.1", **options)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeprune-test",
                    "-f", str(path)], check=True)


def _sshd_config(d: Path, port: int) -> Path:
    config = d / "sshd_config"
    config.write_text(textwrap.dedent(f"""\
        ListenAddress 127.0.0.1:{port}
        HostKey {d / "host_ed25519"}
        PidFile {d / "sshd.pid"}
        AuthorizedKeysFile {d / "authorized_keys"}
        PubkeyAuthentication yes
        PasswordAuthentication no
        PermitRootLogin prohibit-password
        StrictModes no
        UsePAM no
        LogLevel ERROR
        """))
    return config


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"sshd exited with status {proc.returncode}: {err}", pytrace=False)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"sshd did not listen on 127.0.0.1:{port} within {timeout} s", pytrace=False)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A throwaway OpenSSH server on 127.0.0.1 accepting one generated ed25519 key."""
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.fail(
            "OpenSSH server/client not installed (need /usr/sbin/sshd, ssh, ssh-keygen): install "
            "openssh-server (apt-get install -y openssh-server); the SSH transport tests run "
            "against a real sshd", pytrace=False,
        )
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_ed25519")
    _keygen(d / "client_ed25519")
    shutil.copyfile(d / "client_ed25519.pub", d / "authorized_keys")
    port = free_port()
    config = _sshd_config(d, port)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.fail(f"sshd rejected the test config: {check.stderr}", pytrace=False)
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        _wait_for_port(proc, port)
        host_key = (d / "host_ed25519.pub").read_text().split()
        known_hosts = d / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        yield SshServer(port, getpass.getuser(), d / "client_ed25519", known_hosts)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ssh_run_quotes_every_word(sshd: SshServer, tmp_path: Path) -> None:
    ssh = sshd.transport()
    words = ["a; touch PWN_A", "$(touch PWN_B)", "`touch PWN_C`", "it's", "*", "two  spaces"]
    result = ssh.run(["printf", "%s\\n", *words], timeout=30)
    assert result.rc == 0, result.stderr
    assert result.stdout.splitlines() == words
    hostile_names_absent(Path.home(), Path.cwd())


def test_ssh_exit_status_and_stderr(sshd: SshServer) -> None:
    result = sshd.transport().run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_ssh_push_sha256_identity(sshd: SshServer, tmp_path: Path) -> None:
    ssh = sshd.transport()
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(300_000))
    remote_dir = tmp_path / "remote dir; touch PWN_A"
    remote = str(remote_dir / f"{HOSTILE}.bin")
    assert ssh.sha256(remote) is None
    ssh.push(local, remote)
    assert Path(remote).read_bytes() == local.read_bytes()
    assert ssh.sha256(remote) == local_sha256(local)
    hostile_names_absent(Path.home(), tmp_path, remote_dir)
    ident = ssh.identity()
    assert ident["kernel"] == platform.release()
    assert ident["machine"] == platform.machine()
    assert ident["os"] and ident["device_model"] and ident["uname"].startswith("Linux")


def test_ssh_push_checks_the_copy_on_the_device(sshd: SshServer, tmp_path: Path) -> None:
    """With a checksum, the copy replaces the target file only if it arrived intact."""
    ssh = sshd.transport()
    local = tmp_path / "model.bin"
    local.write_bytes(b"model bytes")
    remote = tmp_path / "remote" / "model.bin"
    assert ssh.push(local, str(remote), local_sha256(local)) is True
    assert remote.read_bytes() == b"model bytes"
    local.write_bytes(b"other bytes")
    with pytest.raises(TargetError, match=r"target 'test-ssh' .*copying model\.bin to .* "
                                          r"failed: arrived with sha256"):
        ssh.push(local, str(remote), "0" * 64)
    assert remote.read_bytes() == b"model bytes"  # untouched, and no .part left behind
    assert not (tmp_path / "remote" / "model.bin.part").exists()


def test_ssh_strict_host_key_checking_rejects_unknown_host(sshd: SshServer,
                                                           tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(TargetError, match=r"target 'test-ssh' \(ssh .*@127\.0\.0\.1:\d+\)"):
        sshd.transport(known_hosts=str(empty)).run(["true"], timeout=30)
    # Explicitly relaxed checking (strict_host_key_checking: false) accepts and records the key.
    relaxed = sshd.transport(known_hosts=str(empty), strict_host_key_checking=False)
    assert "StrictHostKeyChecking=accept-new" in relaxed.options()
    assert relaxed.run(["true"], timeout=30).rc == 0
    assert empty.read_text().strip()
    # ... but never a changed key: accept-new refuses a host whose recorded key differs.
    host, kind = empty.read_text().split()[:2]
    keygen = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(kind, "ecdsa")
    subprocess.run(["ssh-keygen", "-q", "-t", keygen, "-N", "", "-f", str(tmp_path / "other")],
                   check=True)
    other = (tmp_path / "other.pub").read_text().split()
    empty.write_text(f"{host} {other[0]} {other[1]}\n")
    with pytest.raises(TargetError, match="test-ssh"):
        relaxed.run(["true"], timeout=30)
    opts = relaxed.options()
    assert "ServerAliveInterval=15" in opts and "ServerAliveCountMax=3" in opts


def test_ssh_unreachable_port_retries_then_names_target(sshd: SshServer) -> None:
    port = free_port()
    ssh = sshd.transport(port=port, retries=2)
    with pytest.raises(TargetError) as info:
        ssh.run(["true"], timeout=30)
    message = str(info.value)
    assert "target 'test-ssh'" in message and f"127.0.0.1:{port}" in message
    assert "3 attempt(s)" in message and "refused" in message.lower()


def test_ssh_timeout_names_target(sshd: SshServer) -> None:
    with pytest.raises(TargetError, match=r"target 'test-ssh'.*timed out after 1 s"):
        sshd.transport().run(["sleep", "5"], timeout=1)


def test_run_benchmark_litert_python_over_ssh(sshd: SshServer, tmp_path: Path) -> None:
    model = tmp_path / f"{HOSTILE}.tflite"
    shutil.copyfile(tiny_models().float_path, model)
    workdir = tmp_path / "remote; touch PWN_A"
    target = single_target("board", sshd.spec(
        runtime="litert-python", python=sys.executable, workdir=str(workdir), threads=1))
    result = run_benchmark(target, model, tmp_path / "logs" / "board.log", warmup=1, runs=6)
    assert result["target"] == "board" and result["transport"] == "ssh"
    assert result["stats"]["n"] == 6 and len(result["samples_ms"]) == 6
    assert result["stats"]["p90_ms"] >= result["stats"]["median_ms"] > 0
    ident = result["identity"]
    assert ident["runtime"] == "ai-edge-litert" and ident["runtime_version"]
    assert ident["threads"] == 1 and ident["delegates"]["xnnpack"] is True
    assert ident["kernel"] == platform.release()
    staged = workdir / "models" / staged_name(model)  # named by checksum
    assert staged.read_bytes() == model.read_bytes()
    assert staged.name == f"{local_sha256(model)[:16]}.tflite"
    assert sorted(result["pushed"]) == sorted([str(workdir / "remote_runner.py"), str(staged)])
    raw = (tmp_path / "logs" / "board.log").read_text()
    payload = next(line for line in raw.splitlines() if line.startswith('{"'))
    assert json.loads(payload)["samples_ms"] == result["samples_ms"]
    hostile_names_absent(Path.home(), tmp_path, workdir, workdir / "models")
    again = run_benchmark(target, model, tmp_path / "logs" / "board2.log", warmup=0, runs=2)
    assert again["pushed"] == []  # runner and model already there with the same checksum


def test_run_benchmark_openvino_over_ssh(sshd: SshServer, tmp_path: Path) -> None:
    target = single_target("ov-board", sshd.spec(
        runtime="openvino", device="CPU", python=sys.executable, workdir=str(tmp_path / "w")))
    result = run_benchmark(target, tiny_models().float_path, tmp_path / "ov.log", warmup=1, runs=4)
    assert result["stats"]["n"] == 4
    assert result["identity"]["runtime"] == "openvino"
    assert result["identity"]["openvino_device"] == "CPU"
    assert result["tool"]["input_shapes"] == [[1, 16, 16, 3]]  # dynamic batch pinned to 1


def test_compare_through_remote_runner_over_ssh(sshd: SshServer, tmp_path: Path) -> None:
    """remote_runner.py --compare staged and run over real SSH; one JSON line comes back."""
    a = tmp_path / f"{HOSTILE}.tflite"
    shutil.copyfile(tiny_models().float_path, a)
    b = tiny_models().int8_path
    workdir = tmp_path / "remote"
    target = single_target("board", sshd.spec(
        runtime="litert-python", python=sys.executable, workdir=str(workdir), threads=1))
    settings = CompareSettings(seconds=0.2, block_runs=2, blocks_per_group=2, warmup=1,
                               min_groups=3, resamples=200, seed=21)
    comparison = compare_on_target(target, [a, b], settings, tmp_path / "cmp.log")
    assert [m.path for m in comparison.models] == [str(a), str(b)]
    assert len(comparison.raw["groups"]) >= 3 and comparison.raw["seed"] == 21
    ident = comparison.identity
    assert ident["runtime"] == "ai-edge-litert" and ident["threads_used"] == 1
    assert ident["kernel"] == platform.release()
    assert sorted(ident["pushed"]) == sorted([str(workdir / "remote_runner.py"),
                                              str(workdir / "models" / staged_name(a)),
                                              str(workdir / "models" / staged_name(b))])
    assert "--compare" in (tmp_path / "cmp.log").read_text().splitlines()[0]
    hostile_names_absent(Path.home(), tmp_path, workdir, workdir / "models")


def test_run_benchmark_unreachable_ssh_target(sshd: SshServer, tmp_path: Path) -> None:
    target = single_target("gone", sshd.spec(runtime="litert-python", port=free_port(),
                                             retries=1))
    with pytest.raises(TargetError, match=r"target 'gone' \(ssh .*127\.0\.0\.1.*2 attempt"):
        run_benchmark(target, tiny_models().float_path, tmp_path / "gone.log")


# --------------------------------------------------------------------------- adb stand-in

STANDIN_SERIAL = "R58M123ABC"

ADB_STANDIN = '''\
#!{python}
"""STAND-IN for the Android adb client, written by tests/test_transport.py -- not the real adb.

Knows one device ({serial}); its /data/local/tmp lives under {root}. Supports
"-s SERIAL get-state", "-s SERIAL push LOCAL REMOTE" and "-s SERIAL shell COMMAND..." (run with
the local sh, getprop answered by a script first on the device PATH). Every call is logged.
"""
import json
import os
import shutil
import subprocess
import sys

ROOT = {root!r}
LOG = {log!r}
DEVICE_BIN = {device_bin!r}


def main(argv):
    with open(LOG, "a") as log:
        log.write(json.dumps(argv) + "\\n")
    if len(argv) < 3 or argv[0] != "-s":
        sys.stderr.write("adb: usage: adb -s SERIAL COMMAND\\n")
        return 1
    serial, command, rest = argv[1], argv[2], argv[3:]
    if serial != {serial!r}:
        sys.stderr.write("adb: device '%s' not found\\n" % serial)
        return 1
    if command == "get-state":
        print("device")
        return 0
    if command == "push":
        local, remote = rest
        dest = ROOT + remote
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(local, dest)
        print("%s: 1 file pushed, 0 skipped." % local)
        return 0
    if command == "shell":
        script = " ".join(rest).replace("/data/local/tmp", ROOT + "/data/local/tmp")
        env = dict(os.environ, PATH=DEVICE_BIN + ":" + os.environ["PATH"])
        return subprocess.run(["sh", "-c", script], cwd=ROOT, env=env).returncode
    sys.stderr.write("adb: unknown command %s\\n" % command)
    return 1


sys.exit(main(sys.argv[1:]))
'''

GETPROP_STANDIN = """\
#!/bin/sh
# STAND-IN for Android getprop (tests/test_transport.py).
case "$1" in
  ro.product.model) echo "Pixel 4" ;;
  ro.product.manufacturer) echo "Google" ;;
  ro.build.version.release) echo "12" ;;
  ro.build.version.sdk) echo "31" ;;
  ro.product.cpu.abi) echo "arm64-v8a" ;;
  ro.board.platform) echo "msmnile" ;;
  *) echo "" ;;
esac
"""

# STAND-IN benchmark_model: records its arguments, fails like the real tool when the graph is
# missing or holds the word "corrupt", otherwise prints output in the real (newer, with
# percentiles) format.
BENCHMARK_MODEL_STANDIN = """\
#!/bin/sh
# STAND-IN for LiteRT benchmark_model (tests/test_transport.py), not the real tool.
printf '%s\\n' "$@" > "$(dirname "$0")/last_args.txt"
graph=""
for arg in "$@"; do
  case "$arg" in --graph=*) graph="${arg#--graph=}" ;; esac
done
echo "INFO: STARTING!"
echo "INFO: Graph: [$graph]"
if [ ! -f "$graph" ]; then
  echo "ERROR: Could not open '$graph'." >&2
  exit 1
fi
if grep -q corrupt "$graph"; then
  echo "ERROR: Failed to load model $graph" >&2
  exit 1
fi
cat <<'EOF'
INFO: Loaded model
INFO: Initialized session in 40.118ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
INFO: count=9 first=41877 curr=30511 min=30102 max=41877 avg=31866.7 std=3651 p5=30102 \
median=30640 p95=41877

INFO: Running benchmark for at least 30 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
INFO: count=33 first=30377 curr=30655 min=29730 max=34012 avg=30521.9 std=812 p5=29801 \
median=30418 p95=32544

INFO: Inference timings in us: Init: 40118, First inference: 41877, Warmup (avg): 31866.7, \
Inference (avg): 30521.9
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only \
APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at \
your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=12.2148 overall=27.6523
EOF
"""


@dataclass(frozen=True)
class AdbStandIn:
    root: Path
    log: Path
    binary: Path

    @property
    def device_tmp(self) -> Path:
        return self.root / "data" / "local" / "tmp"

    def calls(self, command: str) -> list[list[str]]:
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in calls if len(c) > 2 and c[2] == command]

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {"transport": "adb", "serial": STANDIN_SERIAL, "runtime": "benchmark_model",
                "binary": str(self.binary), "retries": 0, **extra}


def _write_script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def adb_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AdbStandIn:
    """Put the stand-in adb first on PATH; returns where its fake device lives."""
    root = tmp_path / "fake-device"
    (root / "data" / "local" / "tmp").mkdir(parents=True)
    device_bin = _write_script(root / "system" / "bin" / "getprop", GETPROP_STANDIN).parent
    log = tmp_path / "adb-calls.jsonl"
    log.write_text("")
    host_bin = tmp_path / "standin-bin"
    _write_script(host_bin / "adb", ADB_STANDIN.format(
        python=sys.executable, serial=STANDIN_SERIAL, root=str(root), log=str(log),
        device_bin=str(device_bin)))
    monkeypatch.setenv("PATH", f"{host_bin}{os.pathsep}{os.environ['PATH']}")
    binary = _write_script(tmp_path / "tools" / "benchmark_model", BENCHMARK_MODEL_STANDIN)
    return AdbStandIn(root, log, binary)


def test_adb_run_returns_status_and_quotes(adb_standin: AdbStandIn) -> None:
    adb = AdbTransport(STANDIN_SERIAL, target="phone")
    words = ["a; touch PWN_A", "$(touch PWN_B)", "`touch PWN_C`", "it's"]
    result = adb.run(["printf", "%s\\n", *words], timeout=30)
    assert (result.rc, result.stdout.splitlines()) == (0, words)
    assert adb.run(["sh", "-c", "echo partial; exit 7"], timeout=30).stdout == "partial\n"
    assert adb.run(["sh", "-c", "exit 7"], timeout=30).rc == 7
    assert adb.get_state() == "device"
    hostile_names_absent(adb_standin.root, Path.cwd())


def test_adb_identity_from_getprop(adb_standin: AdbStandIn) -> None:
    ident = AdbTransport(STANDIN_SERIAL, target="phone").identity()
    assert ident["device_model"] == "Pixel 4" and ident["manufacturer"] == "Google"
    assert ident["os"] == "Android 12 (SDK 31)" and ident["abi"] == "arm64-v8a"
    assert ident["serial"] == STANDIN_SERIAL and ident["kernel"]


def test_run_benchmark_over_adb_end_to_end(adb_standin: AdbStandIn, tmp_path: Path) -> None:
    model = tmp_path / f"{HOSTILE}.tflite"
    model.write_bytes(b"TFL3-not-really-a-model")
    target = single_target("phone", adb_standin.spec(threads=4, delegates={"gpu": True}))
    raw_log = tmp_path / "results" / "phone.log"
    result = run_benchmark(target, model, raw_log, warmup=5, runs=30)

    workdir = adb_standin.device_tmp / "edgeprune"
    assert sorted(result["pushed"]) == sorted([
        "/data/local/tmp/edgeprune/benchmark_model",
        f"/data/local/tmp/edgeprune/models/{staged_name(model)}",
    ])
    assert (workdir / "models" / staged_name(model)).read_bytes() == model.read_bytes()
    args = (workdir / "last_args.txt").read_text().splitlines()
    assert args[1:] == [
        "--warmup_runs=5", "--num_runs=30", "--use_xnnpack=true", "--use_gpu=true",
        "--use_nnapi=false", "--num_threads=4",
    ]
    assert args[0] == f"--graph={workdir}/models/{staged_name(model)}"

    stats = result["stats"]
    assert stats["n"] == 33
    assert stats["mean_ms"] == pytest.approx(30.5219)
    assert stats["median_ms"] == pytest.approx(30.418)
    assert (stats["min_ms"], stats["max_ms"]) == (pytest.approx(29.73), pytest.approx(34.012))
    assert stats["std_ms"] == pytest.approx(0.812)
    assert stats["fps"] == pytest.approx(1000 / 30.418) and stats["p90_ms"] is None
    tool = result["tool"]
    assert tool["init_us"] == 40118 and tool["warmup"]["count"] == 9
    assert tool["overall_mb"] == pytest.approx(27.6523)
    ident = result["identity"]
    assert (ident["device_model"], ident["os"]) == ("Pixel 4", "Android 12 (SDK 31)")
    assert ident["runtime"] == "benchmark_model" and ident["threads"] == 4
    assert ident["delegates"] == {"xnnpack": True, "gpu": True, "nnapi": False}
    assert result["binary_sha256"] == local_sha256(adb_standin.binary)
    assert raw_log.read_text().startswith("INFO: STARTING!")
    assert "Inference timings in us" in raw_log.read_text()
    assert result["raw_log"] == str(raw_log)
    hostile_names_absent(adb_standin.root, workdir, workdir / "models", tmp_path)

    # Second run: binary and model already on the device with matching checksums.
    again = run_benchmark(target, model, tmp_path / "results" / "phone2.log")
    assert again["pushed"] == []
    assert len(adb_standin.calls("push")) == 2
    # A rebuilt binary is pushed again, alone.
    adb_standin.binary.write_text(adb_standin.binary.read_text() + "\n# rebuilt\n")
    third = run_benchmark(target, model, tmp_path / "results" / "phone3.log")
    assert third["pushed"] == ["/data/local/tmp/edgeprune/benchmark_model"]


def test_benchmark_model_invocations_interleave_over_adb(adb_standin: AdbStandIn,
                                                        tmp_path: Path) -> None:
    """Each group runs every model once, in a seeded random order; files are pushed once."""
    models = []
    for name in ("a", "b", "c"):
        models.append(tmp_path / f"{name}.tflite")
        models[-1].write_bytes(f"TFL3-{name}".encode())
    target = single_target("phone", adb_standin.spec(runs=30, warmup=5))
    settings = CompareSettings(seconds=0.0, min_groups=3, resamples=100, seed=4)
    comparison = compare_on_target(target, models, settings, tmp_path / "phone.log")
    raw = comparison.raw
    assert len(raw["groups"]) == 3 and raw["blocks_per_group"] == 1 and raw["block_runs"] == 30
    assert raw["block_statistic"] == "median"
    for group in raw["groups"]:
        assert group["block_orders"] == [group["instance_order"]]
        assert sorted(group["instance_order"]) == [0, 1, 2]
        assert group["block_medians_ms"] == [[pytest.approx(30.418)] * 3]
    again = compare_on_target(target, models, settings, tmp_path / "phone2.log")
    assert [g["instance_order"] for g in again.raw["groups"]] == [
        g["instance_order"] for g in raw["groups"]]
    assert len(adb_standin.calls("push")) == 4  # binary + 3 models, once
    graphs = [line.split("[")[1].rstrip("]") for line in
              (tmp_path / "phone.log").read_text().splitlines()
              if line.startswith("INFO: Graph:")]
    expected = [str(adb_standin.device_tmp / "edgeprune" / "models" / staged_name(models[i]))
                for g in raw["groups"] for i in g["instance_order"]]
    assert graphs == expected
    assert comparison.differences[0].diff_pct == 0.0
    assert not comparison.differences[0].significant
    assert comparison.identity["runtime"] == "benchmark_model"


def test_adb_tool_failure_keeps_raw_log(adb_standin: AdbStandIn, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"corrupt garbage")
    target = single_target("phone", adb_standin.spec())
    raw_log = tmp_path / "phone.log"
    with pytest.raises(TargetError, match=r"target 'phone' \(adb serial R58M123ABC\): "
                                          r"benchmark_model exit status 1; last lines: .*"
                                          r"Failed to load model.*; output kept in .*phone\.log"):
        run_benchmark(target, model, raw_log)
    assert "Failed to load model" in raw_log.read_text()


def test_adb_wrong_serial_names_target_and_serial(adb_standin: AdbStandIn,
                                                  tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    target = single_target("phone", adb_standin.spec(serial="WRONG0001", retries=1))
    with pytest.raises(TargetError) as info:
        run_benchmark(target, model, tmp_path / "phone.log")
    message = str(info.value)
    assert "target 'phone'" in message and "WRONG0001" in message
    assert "2 attempt(s)" in message and "not found" in message
    assert len(adb_standin.calls("shell")) == 2  # first command, tried twice, then gave up


def test_adb_missing_binary_is_a_config_error(adb_standin: AdbStandIn, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    target = single_target("phone", adb_standin.spec(binary=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match=r"targets\.phone\.binary: .*nope does not exist"):
        run_benchmark(target, model, tmp_path / "phone.log")


# --------------------------------------------------------------------------- local, disabled


def test_disabled_target_is_refused(tmp_path: Path) -> None:
    target = parse_targets({"targets": {"host-litert": {"enabled": False}}})["host-litert"]
    with pytest.raises(TargetError) as info:
        run_benchmark(target, tiny_models().float_path, tmp_path / "x.log")
    assert str(info.value) == (
        "target 'host-litert' is disabled in config (targets.host-litert.enabled: false)"
    )
    assert not (tmp_path / "x.log").exists()


def test_local_timeout_names_target() -> None:
    with pytest.raises(TargetError, match=r"target 'host' \(local host\): .*timed out after 0.5"):
        LocalTransport(target="host").run(["sleep", "5"], timeout=0.5)


def test_local_builtin_targets_run(tmp_path: Path) -> None:
    targets = parse_targets({"targets": {"host-litert": {"threads": 1}}})
    model = tiny_models().int8_path
    litert = run_benchmark(targets["host-litert"], model, tmp_path / "l.log", warmup=1, runs=3)
    assert litert["stats"]["n"] == 3 and litert["pushed"] == []
    assert litert["identity"]["cpu"] and litert["identity"]["os"]
    ov = run_benchmark(targets["host-openvino"], model, tmp_path / "o.log", warmup=1, runs=3)
    assert ov["identity"]["runtime"] == "openvino" and ov["stats"]["n"] == 3


def test_local_benchmark_app_on_static_ir(tmp_path: Path) -> None:
    """The real OpenVINO benchmark_app from the environment, on an IR with a static batch."""
    import openvino as ov

    ir = tmp_path / "ir" / "tiny.xml"
    ir.parent.mkdir()
    ov.save_model(ov.convert_model(str(tiny_models().float_path), input=[1, 16, 16, 3]), str(ir))
    target = single_target("host-app", {"transport": "local", "runtime": "benchmark_app",
                                        "device": "CPU", "threads": 1})
    result = run_benchmark(target, ir, tmp_path / "app.log", runs=20)
    assert result["command"].split()[1:] == [
        "-m", str(ir), "-d", "CPU", "-niter", "20",
        "-hint", "none", "-nstreams", "1", "-api", "sync", "-nthreads", "1",
        "-infer_precision", "f32",
    ]
    stats = result["stats"]
    assert stats["n"] == 20 and stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]
    assert stats["std_ms"] is None and stats["p90_ms"] is None
    assert result["settings"]["warmup"] == 1  # benchmark_app's single untimed first inference
    assert result["identity"]["runtime_version"] == ov.get_version()
    assert "Throughput" in (tmp_path / "app.log").read_text()


def test_adb_device_lock_makes_a_second_job_wait(adb_standin: AdbStandIn) -> None:
    """The adb device lock lives on the device (flock in its work folder): a second
    transport, as another job would open it, cannot take it while the first holds it."""
    workdir = "/data/local/tmp/edgeprune"
    first = AdbTransport(STANDIN_SERIAL, target="phone-usb", retries=0)
    second = AdbTransport(STANDIN_SERIAL, target="phone-wifi", retries=0)
    errors: list[BaseException] = []

    def other_job() -> None:
        try:
            with second.lock(workdir, wait_s=1):
                pass
        except TargetError as exc:
            errors.append(exc)

    with first.lock(workdir) as waited:
        assert waited < 30
        thread = threading.Thread(target=other_job)
        thread.start()
        thread.join(timeout=60)
    assert len(errors) == 1 and "stayed busy" in str(errors[0])
    assert "phone-wifi" in str(errors[0])
    with second.lock(workdir, wait_s=5):  # free once the first job is done
        assert (adb_standin.device_tmp / "edgeprune" / ".edgeprune.lock").exists()
