"""Move files to a benchmark target and run commands there: local, adb and ssh transports.

Commands are always given as argument lists. Locally they run without a shell; remotely (adb
shell, ssh) each word is quoted with :func:`shlex.quote` before the remote shell sees it, so model
file names and config values cannot inject commands. Connection failures (ssh exit status 255,
adb "device not found"/"offline") are retried with exponential backoff and then reported as a
:class:`~edgeprune.errors.TargetError` naming the target and its host or serial; timeouts are
reported the same way, immediately.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from edgeprune.errors import TargetError
from edgeprune.measurement.latency import host_cpu_model
from edgeprune.measurement.targets import Target

__all__ = [
    "AdbTransport",
    "CommandResult",
    "DEFAULT_BACKOFF_S",
    "LocalTransport",
    "SshTransport",
    "Transport",
    "local_sha256",
    "transport_for",
]

#: First retry delay in seconds; it doubles on every further attempt.
DEFAULT_BACKOFF_S = 1.0
DEFAULT_CONNECT_TIMEOUT_S = 10
_TAIL_CHARS = 600
_SHA256_RE = re.compile(r"^([0-9a-f]{64})\b")

# Prints "key=value" lines describing a Linux machine; parsed by _parse_identity.
_LINUX_IDENTITY_SCRIPT = r"""
echo "kernel=$(uname -r)"
echo "machine=$(uname -m)"
echo "uname=$(uname -a)"
[ -r /proc/device-tree/model ] && echo "device_model=$(tr -d '\000' < /proc/device-tree/model)"
[ -r /sys/class/dmi/id/product_name ] && echo "dmi_product=$(cat /sys/class/dmi/id/product_name)"
echo "cpu=$(grep -m1 -E '^(model name|Hardware|Model)[[:space:]]*:' /proc/cpuinfo | cut -d: -f2-)"
[ -r /etc/os-release ] && echo "os=$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '\"')"
true
"""

_ANDROID_PROPS = {
    "device_model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "os_release": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
    "soc": "ro.board.platform",
}
_ANDROID_IDENTITY_SCRIPT = "\n".join(
    [f'echo "{key}=$(getprop {prop})"' for key, prop in _ANDROID_PROPS.items()]
    + ['echo "kernel=$(uname -r)"', "true"]
)


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one command: exit status and decoded output (like CompletedProcess)."""

    rc: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:
        """Alias of ``rc`` for code written against :class:`subprocess.CompletedProcess`."""
        return self.rc

    @property
    def output(self) -> str:
        """stdout followed by stderr, as kept in raw logs."""
        return self.stdout + self.stderr


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]


def _parse_identity(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier() and value.strip():
            out[key] = value.strip()
    return out


def local_sha256(path: Path) -> str | None:
    """SHA-256 of a file on this machine, or None if it does not exist."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Transport(ABC):
    """Common behaviour: subprocess execution, timeouts and connection retries."""

    kind = "abstract"

    def __init__(self, *, target: str, retries: int = 2, backoff_s: float | None = None) -> None:
        self.target = target
        self.retries = retries
        self.backoff_s = DEFAULT_BACKOFF_S if backoff_s is None else backoff_s

    @property
    @abstractmethod
    def address(self) -> str:
        """Where the target is (serial, user@host:port, local host), for messages."""

    @abstractmethod
    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy the local file to ``remote`` on the target, creating its directory."""

    @abstractmethod
    def run(self, argv: list[str], timeout: float) -> CommandResult:
        """Run ``argv`` on the target and return its exit status and output."""

    @abstractmethod
    def identity(self) -> dict[str, str]:
        """Describe the machine: device model, OS, kernel, CPU where known."""

    def sha256(self, remote_path: str) -> str | None:
        """SHA-256 of a file on the target, or None if it is absent or cannot be hashed."""
        result = self.run(["sha256sum", remote_path], timeout=120)
        match = _SHA256_RE.match(result.stdout.strip()) if result.rc == 0 else None
        return match.group(1) if match else None

    def error(self, message: str) -> TargetError:
        """A TargetError whose message starts with the target name and address."""
        return TargetError(f"target '{self.target}' ({self.address}): {message}")

    def _execute(
        self, argv: list[str], timeout: float, what: str, stdin: IO[bytes] | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(
                argv,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise self.error(f"{what} timed out after {timeout:g} s") from None
        except FileNotFoundError:
            raise self.error(f"cannot run {argv[0]!r}: not found (is it installed?)") from None
        return CommandResult(
            proc.returncode,
            proc.stdout.decode("utf-8", errors="replace"),
            proc.stderr.decode("utf-8", errors="replace"),
        )

    def _connection_failed(self, result: CommandResult) -> bool:
        return False

    def _with_retries(self, attempt: Callable[[], CommandResult], what: str) -> CommandResult:
        result = attempt()
        for i in range(self.retries):
            if not self._connection_failed(result):
                return result
            time.sleep(self.backoff_s * 2**i)
            result = attempt()
        if self._connection_failed(result):
            raise self.error(
                f"cannot reach the device after {self.retries + 1} attempt(s) ({what}): "
                f"{_tail(result.output) or 'no output'}"
            )
        return result


class LocalTransport(Transport):
    """This machine: files are copied (or used in place), commands run without a shell."""

    kind = "local"

    def __init__(self, *, target: str = "local", retries: int = 0,
                 backoff_s: float | None = None) -> None:
        super().__init__(target=target, retries=retries, backoff_s=backoff_s)

    @property
    def address(self) -> str:
        return "local host"

    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        src, dst = Path(local), Path(remote)
        if not src.is_file():
            raise FileNotFoundError(f"cannot push {src}: no such file")
        if dst.exists() and dst.resolve() == src.resolve():
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._execute(list(argv), timeout, f"command {argv[0]!r}")

    def sha256(self, remote_path: str) -> str | None:
        return local_sha256(Path(remote_path))

    def identity(self) -> dict[str, str]:
        info = {
            "kernel": platform.release(),
            "machine": platform.machine(),
            "uname": " ".join(p for p in platform.uname() if p),
            "cpu": host_cpu_model(),
            "os": _local_os_name(),
            "hostname": platform.node(),
        }
        for key, path in (("device_model", "/proc/device-tree/model"),
                          ("dmi_product", "/sys/class/dmi/id/product_name")):
            try:
                info[key] = Path(path).read_text(errors="replace").strip("\x00\n ")
            except OSError:
                continue
        info.setdefault("device_model", info.get("dmi_product") or info["cpu"])
        return info


def _local_os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return platform.platform()
    return release.get("PRETTY_NAME", platform.platform())


class AdbTransport(Transport):
    """An Android device reached with ``adb -s SERIAL`` (phone, Google Glass)."""

    kind = "adb"
    _RC_MARK = "__EDGEPRUNE_RC="
    _RC_RE = re.compile(r"\n__EDGEPRUNE_RC=(\d+)\n?$")
    _OFFLINE_RE = re.compile(
        r"device '.*' not found|device not found|device offline|no devices/emulators found|"
        r"device unauthorized|device still authorizing|more than one device",
        re.IGNORECASE,
    )

    def __init__(self, serial: str, adb: str = "adb", *, target: str = "adb", retries: int = 2,
                 backoff_s: float | None = None) -> None:
        super().__init__(target=target, retries=retries, backoff_s=backoff_s)
        self.serial = serial
        self.adb = adb

    @property
    def address(self) -> str:
        return f"adb serial {self.serial}"

    def _connection_failed(self, result: CommandResult) -> bool:
        return result.rc != 0 and bool(self._OFFLINE_RE.search(result.output))

    def _adb(self, args: list[str], timeout: float, what: str) -> CommandResult:
        argv = [self.adb, "-s", self.serial, *args]
        return self._with_retries(lambda: self._execute(argv, timeout, what), what)

    def get_state(self, timeout: float = 30) -> str:
        """``adb get-state`` ("device" when usable); TargetError if the device is not there."""
        result = self._adb(["get-state"], timeout, "adb get-state")
        if result.rc != 0:
            raise self.error(f"adb get-state failed: {_tail(result.output)}")
        return result.stdout.strip()

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        # Old adbd (before Android 7) does not return the exit status, so the device shell
        # prints it after the command's output and it is read back from stdout. Only sh
        # built-ins are used: old toolbox builds have no printf.
        command = f"{shlex.join(argv)}; __ep_rc=$?; echo; echo {self._RC_MARK}$__ep_rc"
        result = self._adb(["shell", command], timeout, f"adb shell {argv[0]!r}")
        stdout = result.stdout.replace("\r\n", "\n")
        match = self._RC_RE.search(stdout)
        if match is None:
            return CommandResult(result.rc or 255, stdout, result.stderr)
        return CommandResult(int(match.group(1)), stdout[: match.start()], result.stderr)

    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        src = Path(local)
        if not src.is_file():
            raise FileNotFoundError(f"cannot push {src}: no such file")
        parent = str(PurePosixPath(remote).parent)
        made = self.run(["mkdir", "-p", parent], timeout=60)
        if made.rc != 0:
            raise self.error(f"cannot create {parent!r}: {_tail(made.output)}")
        result = self._adb(["push", str(src), remote], timeout=600, what="adb push")
        if result.rc != 0:
            raise self.error(f"adb push {src.name} -> {remote} failed: {_tail(result.output)}")

    def identity(self) -> dict[str, str]:
        result = self.run(["sh", "-c", _ANDROID_IDENTITY_SCRIPT], timeout=60)
        info = _parse_identity(result.stdout)
        info.setdefault("device_model", "unknown")
        info["os"] = f"Android {info.get('os_release', '?')} (SDK {info.get('sdk', '?')})"
        info["serial"] = self.serial
        return info


class SshTransport(Transport):
    """A Linux board reached over OpenSSH (Raspberry Pi + NCS2, Jetson TX2), non-interactively.

    Files are streamed through ``ssh ... 'cat > file'`` rather than scp, which behaves the same on
    every OpenSSH version (scp's remote-path handling changed when it moved to SFTP) and needs no
    SFTP subsystem on the board.
    """

    kind = "ssh"

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int = 22,
        key_file: str | None = None,
        strict_host_key_checking: bool = True,
        known_hosts: str | None = None,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
        *,
        target: str = "ssh",
        retries: int = 2,
        backoff_s: float | None = None,
        ssh: str = "ssh",
    ) -> None:
        super().__init__(target=target, retries=retries, backoff_s=backoff_s)
        self.host = host
        self.user = user
        self.port = port
        self.key_file = key_file
        self.strict_host_key_checking = strict_host_key_checking
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self.ssh = ssh

    @property
    def address(self) -> str:
        return f"ssh {self.destination}:{self.port}"

    @property
    def destination(self) -> str:
        """``user@host`` or ``host``."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def options(self) -> list[str]:
        """ssh command-line options shared by every call."""
        opts = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            # Relaxed checking still refuses a *changed* key: accept-new only records new ones.
            "-o", "StrictHostKeyChecking="
            f"{'yes' if self.strict_host_key_checking else 'accept-new'}",
            # A dead link is noticed in ~45 s instead of hanging until the job's timeout.
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
            "-p", str(self.port),
        ]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={os.path.expanduser(self.known_hosts)}"]
        if self.key_file:
            opts += ["-i", os.path.expanduser(self.key_file), "-o", "IdentitiesOnly=yes"]
        return opts

    def _connection_failed(self, result: CommandResult) -> bool:
        return result.rc == 255  # ssh's own failures; a remote command exiting 255 looks the same

    def _ssh(self, command: str, timeout: float, what: str,
             stdin_path: Path | None = None) -> CommandResult:
        argv = [self.ssh, *self.options(), "--", self.destination, command]

        def attempt() -> CommandResult:
            if stdin_path is None:
                return self._execute(argv, timeout, what)
            with stdin_path.open("rb") as fh:
                return self._execute(argv, timeout, what, stdin=fh)

        return self._with_retries(attempt, what)

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._ssh(shlex.join(argv), timeout, f"ssh command {argv[0]!r}")

    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        src = Path(local)
        if not src.is_file():
            raise FileNotFoundError(f"cannot push {src}: no such file")
        parent = str(PurePosixPath(remote).parent)
        partial = f"{remote}.part"
        command = (
            f"mkdir -p -- {shlex.quote(parent)} && cat > {shlex.quote(partial)} && "
            f"mv -f -- {shlex.quote(partial)} {shlex.quote(remote)}"
        )
        result = self._ssh(command, timeout=600, what=f"copy {src.name}", stdin_path=src)
        if result.rc != 0:
            raise self.error(f"copying {src.name} to {remote} failed: {_tail(result.output)}")

    def identity(self) -> dict[str, str]:
        result = self.run(["sh", "-c", _LINUX_IDENTITY_SCRIPT], timeout=60)
        if result.rc != 0:
            raise self.error(f"cannot read machine identity: {_tail(result.output)}")
        info = _parse_identity(result.stdout)
        info.setdefault("device_model", info.get("dmi_product") or info.get("cpu") or "unknown")
        info.setdefault("os", "unknown")
        return info


def transport_for(target: Target, **overrides: Any) -> Transport:
    """Build the transport a target's config describes (``overrides`` go to the constructor)."""
    common: dict[str, Any] = {"target": target.name, "retries": target.retries, **overrides}
    if target.transport == "adb":
        assert target.serial is not None
        return AdbTransport(target.serial, **common)
    if target.transport == "ssh":
        assert target.host is not None
        return SshTransport(
            target.host,
            user=target.user,
            port=target.port or 22,
            key_file=target.key_file,
            strict_host_key_checking=target.strict_host_key_checking is not False,
            known_hosts=target.known_hosts,
            **common,
        )
    return LocalTransport(**common)
