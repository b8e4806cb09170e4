"""Move files to a benchmark target and run commands there: local, adb and ssh transports.

Commands are always given as argument lists. Locally they run without a shell; remotely (adb
shell, ssh) each word is quoted with :func:`shlex.quote` before the remote shell sees it, so model
file names and config values cannot inject commands.

Faults are told apart, because they call for different actions:

* **Time limits.** Remote commands run under the device's own ``timeout -k 5 <limit>`` (GNU
  coreutils, BusyBox and Android's toybox all have it), which signals the command's whole process
  group, so a benchmark that hangs is gone from the device at most 5 s after its limit even when
  this side was killed; this side waits ``limit + 15`` s before it kills its ssh/adb client. A
  timeout raises :class:`CommandTimeout` carrying the output printed so far.
* **Crashes.** The remote shell prints the command's exit status after it (``__EDGEPRUNE_RC=``),
  so a command that died by a signal (ssh exits 255 for some of those too) is returned as a
  :class:`CommandResult` whose :meth:`~CommandResult.describe` names the status or signal; it is
  never retried. Only ssh's own failures (exit 255 *without* that line) and adb's "device not
  found/offline" are retried, with exponential backoff, then reported as a
  :class:`~edgeprune.errors.TargetError` naming the target and its host or serial.
* **Sharing.** :meth:`Transport.lock` takes a lock on the device itself (``flock`` on
  ``<workdir>/.edgeprune.lock`` held by one ssh session for the whole job), so two jobs on one
  board wait for each other whatever host string, checkout or Snakemake resource they use; a
  killed job's session ends and the lock goes with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from edgeprune.errors import TargetError
from edgeprune.measurement.latency import host_cpu_model
from edgeprune.measurement.targets import Target

__all__ = [
    "AdbTransport",
    "CommandResult",
    "CommandTimeout",
    "KILL_AFTER_S",
    "LOCK_FILE",
    "LOCK_WAIT_S",
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
#: ``timeout -k KILL_AFTER_S``: seconds between the remote TERM and KILL of a command over time.
KILL_AFTER_S = 5
#: This side waits this much longer than the remote limit before it kills its own client.
_CLIENT_GRACE_S = KILL_AFTER_S + 10
#: Lock file in a remote target's work folder (see :meth:`Transport.lock`).
LOCK_FILE = ".edgeprune.lock"
#: How long a job waits for another job's device lock before it gives up (s).
LOCK_WAIT_S = 3600.0
_RC_MARK = "__EDGEPRUNE_RC="
_RC_RE = re.compile(r"\n__EDGEPRUNE_RC=(\d+)\n?$")
_LOCKED = "__EDGEPRUNE_LOCKED__"
_TAIL_CHARS = 600
_TAIL_LINES = 5
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

    def describe(self) -> str:
        """``exit status 3`` or ``killed by signal 11 (SIGSEGV)`` (a remote shell reports a
        signal as 128 + its number, Python as a negative status)."""
        number = -self.rc if self.rc < 0 else self.rc - 128 if 128 < self.rc < 128 + 65 else 0
        if number:
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            return f"killed by signal {number} ({name})"
        return f"exit status {self.rc}"

    def last_lines(self, n: int = _TAIL_LINES) -> str:
        """The last ``n`` non-empty output lines on one line, joined by `` | ``."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return " | ".join(lines[-n:])[-_TAIL_CHARS:] or "no output"

    @property
    def returncode(self) -> int:
        """Alias of ``rc`` for code written against :class:`subprocess.CompletedProcess`."""
        return self.rc

    @property
    def output(self) -> str:
        """stdout followed by stderr, as kept in raw logs."""
        return self.stdout + self.stderr


class CommandTimeout(TargetError):
    """A command ran past its time limit; ``partial`` holds what it printed until then."""

    def __init__(self, message: str, partial: CommandResult) -> None:
        super().__init__(message)
        self.partial = partial


def _tail(text: str) -> str:
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def remote_limited(argv: list[str], limit: float) -> str:
    """Shell text running ``argv`` under ``timeout -k KILL_AFTER_S limit`` and then printing its
    exit status on stderr as a line ``__EDGEPRUNE_RC=<status>`` after an empty line (every word
    quoted)."""
    return (f"timeout -k {KILL_AFTER_S} {max(limit, 0.1):g} {shlex.join(argv)}; "
            f"__ep_rc=$?; echo >&2; echo \"{_RC_MARK}$__ep_rc\" >&2")


def split_status(result: CommandResult) -> CommandResult | None:
    """The command's own result from a :func:`remote_limited` run, or None when the status line
    is missing (the remote shell never finished: the connection failed or broke)."""
    match = _RC_RE.search(result.stderr)
    if match is None:
        return None
    return CommandResult(int(match.group(1)), result.stdout, result.stderr[: match.start()])


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
    #: seconds to open a remote shell (ssh sets it from the target's settings)
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S

    def __init__(self, *, target: str, retries: int = 2, backoff_s: float | None = None) -> None:
        self.target = target
        self.retries = retries
        self.backoff_s = DEFAULT_BACKOFF_S if backoff_s is None else backoff_s

    @property
    @abstractmethod
    def address(self) -> str:
        """Where the target is (serial, user@host:port, local host), for messages."""

    @abstractmethod
    def push(self, local: str | os.PathLike[str], remote: str,
             sha256: str | None = None) -> bool:
        """Copy the local file to ``remote`` on the target, creating its directory. Returns
        True when the copy was checked against ``sha256`` on the device (ssh) before it
        replaced ``remote``; False when the caller has to check it."""

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

    def timeout_error(self, what: str, limit: float, partial: CommandResult,
                      where: str = "") -> CommandTimeout:
        """A :class:`CommandTimeout` naming the target, the command and its limit."""
        return CommandTimeout(self.error(f"{what} timed out after {limit:g} s{where}").args[0],
                              partial)

    def _execute(
        self, argv: list[str], timeout: float, what: str, stdin: IO[bytes] | None = None,
        limit: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` here in its own process group; past ``timeout`` the whole group is
        killed and :class:`CommandTimeout` (with the output so far) names ``limit``."""
        try:
            proc = subprocess.Popen(
                argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise self.error(f"cannot run {argv[0]!r}: not found (is it installed?)") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            rest_out, rest_err = proc.communicate()
            partial = CommandResult(-9, _decode(exc.stdout) + _decode(rest_out),
                                    _decode(exc.stderr) + _decode(rest_err))
            raise self.timeout_error(what, timeout if limit is None else limit,
                                     partial) from None
        return CommandResult(proc.returncode, _decode(out), _decode(err))

    def _shell_argv(self, command: str) -> list[str]:
        """The local command line that runs the shell ``command`` on the device."""
        raise NotImplementedError(f"{type(self).__name__} has no remote shell")

    @contextlib.contextmanager
    def lock(self, workdir: str | None, wait_s: float = LOCK_WAIT_S) -> Iterator[float]:
        """Hold ``flock <workdir>/.edgeprune.lock`` on the device for the body; yields the
        seconds spent waiting for it.

        One remote shell (ssh session, ``adb shell``) runs ``flock`` around a ``cat`` reading
        this side's pipe: the lock lasts until the body ends and the pipe is closed, or until
        this process dies (the session ends, ``cat`` sees end of file, the lock is released).
        The lock lives on the device, so two jobs wait for each other whatever names the
        device (host alias or address, USB serial or ``ip:port``), checkout or resources.
        ``flock`` is in util-linux (Raspberry Pi OS, Jetson Linux) and Android's toybox.
        """
        assert workdir is not None
        lock_path = str(PurePosixPath(workdir, LOCK_FILE))
        key = (f"{self.address}:{lock_path}", threading.get_ident())
        if key in _REMOTE_HOLDS:  # already held by this thread: nested use, no second session
            yield 0.0
            return
        holder = shlex.join(["sh", "-c", f"echo {_LOCKED}; exec cat >/dev/null"])
        command = (f"mkdir -p -- {shlex.quote(workdir)} && "
                   f"exec flock -w {wait_s:g} {shlex.quote(lock_path)} {holder}")
        start = time.monotonic()
        proc = None
        for attempt in range(self.retries + 1):
            proc = subprocess.Popen(self._shell_argv(command), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], wait_s + 2 * self.connect_timeout)
            line = proc.stdout.readline().decode(errors="replace") if ready else ""
            if line.strip() == _LOCKED:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            failed = CommandResult(proc.returncode, line, _decode(err))
            if not ready or (failed.rc == 1 and not self._connection_failed(failed)):
                raise self.error(f"the device lock {lock_path} stayed busy for {wait_s:g} s "
                                 "(another job is timing on this board)")
            if failed.rc == 127:
                raise self.error(f"cannot lock {lock_path}: 'flock' is not installed on the "
                                 f"device (util-linux): {_tail(failed.output)}")
            if not self._connection_failed(failed):
                raise self.error(f"cannot lock {lock_path} ({failed.describe()}): "
                                 f"{_tail(failed.output) or 'no output'}")
            if attempt == self.retries:
                raise self.error(f"cannot reach the device after {self.retries + 1} attempt(s) "
                                 f"(device lock): {_tail(failed.output) or 'no output'}")
            time.sleep(self.backoff_s * 2**attempt)
        assert proc is not None and proc.stdin is not None
        _REMOTE_HOLDS.add(key)
        try:
            yield time.monotonic() - start
        finally:
            _REMOTE_HOLDS.discard(key)
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=self.connect_timeout + 5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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


#: Device locks held over ssh by this process: (address and lock path, thread).
_REMOTE_HOLDS: set[tuple[str, int]] = set()
#: Re-entrant holds of local lock files: (path, thread) -> (open file, depth).
_LOCAL_HOLDS: dict[tuple[str, int], tuple[IO[str], int]] = {}


@contextlib.contextmanager
def local_file_lock(path: Path, wait_s: float, on_busy: Callable[[], Exception]
                    ) -> Iterator[float]:
    """``flock`` on ``path`` (re-entrant within one thread); yields the wait in seconds.

    ``on_busy()`` builds the exception raised when the lock is not free within ``wait_s``.
    """
    key = (str(path), threading.get_ident())
    if key in _LOCAL_HOLDS:
        fh, depth = _LOCAL_HOLDS[key]
        _LOCAL_HOLDS[key] = (fh, depth + 1)
        try:
            yield 0.0
        finally:
            fh, depth = _LOCAL_HOLDS[key]
            _LOCAL_HOLDS[key] = (fh, depth - 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - held until the body ends
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > wait_s:
                    raise on_busy() from None
                time.sleep(0.05)
        _LOCAL_HOLDS[key] = (fh, 1)
        try:
            yield time.monotonic() - start
        finally:
            del _LOCAL_HOLDS[key]
    finally:
        fh.close()


class LocalTransport(Transport):
    """This machine: files are copied (or used in place), commands run without a shell."""

    kind = "local"

    def __init__(self, *, target: str = "local", retries: int = 0,
                 backoff_s: float | None = None) -> None:
        super().__init__(target=target, retries=retries, backoff_s=backoff_s)

    @property
    def address(self) -> str:
        return "local host"

    def push(self, local: str | os.PathLike[str], remote: str,
             sha256: str | None = None) -> bool:
        src, dst = Path(local), Path(remote)
        if not src.is_file():
            raise FileNotFoundError(f"cannot push {src}: no such file")
        if dst.exists() and dst.resolve() == src.resolve():
            return False
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
        return False

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._execute(list(argv), timeout, f"command {argv[0]!r}")

    def sha256(self, remote_path: str) -> str | None:
        return local_sha256(Path(remote_path))

    def lock(self, workdir: str | None, wait_s: float = LOCK_WAIT_S) -> Iterator[float]:
        """This machine's timing lock, one per user (every checkout shares it)."""
        path = Path(tempfile.gettempdir()) / f"edgeprune-host-{os.getuid()}.lock"
        return local_file_lock(path, wait_s, lambda: self.error(
            f"another job held the timing lock {path} for more than {wait_s:g} s"))

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

    def _shell_argv(self, command: str) -> list[str]:
        return [self.adb, "-s", self.serial, "shell", command]

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
        # The device's toybox `timeout` ends the command (and its process group) at the limit.
        what = f"adb shell {argv[0]!r}"
        start = time.monotonic()
        command = (f"timeout -k {KILL_AFTER_S} {max(timeout, 0.1):g} {shlex.join(argv)}; "
                   f"__ep_rc=$?; echo; echo {self._RC_MARK}$__ep_rc")
        try:
            result = self._with_retries(
                lambda: self._execute([self.adb, "-s", self.serial, "shell", command],
                                      timeout + _CLIENT_GRACE_S, what, limit=timeout), what)
        except CommandTimeout as exc:
            raise self.timeout_error(what, timeout, exc.partial,
                                     " (the adb client stopped answering)") from None
        stdout = result.stdout.replace("\r\n", "\n")
        match = self._RC_RE.search(stdout)
        if match is None:
            return CommandResult(result.rc or 255, stdout, result.stderr)
        done = CommandResult(int(match.group(1)), stdout[: match.start()], result.stderr)
        if done.rc in (124, 128 + 9) and time.monotonic() - start >= timeout:
            raise self.timeout_error(what, timeout, done, " on the device")
        return done

    def push(self, local: str | os.PathLike[str], remote: str,
             sha256: str | None = None) -> bool:
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
        return False

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
        # ssh's own failures exit 255; a remote command that exited 255 or died by a signal
        # is told apart by the status line the remote shell prints after it.
        return result.rc == 255 and _RC_RE.search(result.stderr) is None

    def _argv(self, command: str) -> list[str]:
        return [self.ssh, *self.options(), "--", self.destination, command]

    _shell_argv = _argv

    def _ssh(self, command: str, timeout: float, what: str,
             stdin_path: Path | None = None, limit: float | None = None) -> CommandResult:
        argv = self._argv(command)

        def attempt() -> CommandResult:
            if stdin_path is None:
                return self._execute(argv, timeout, what, limit=limit)
            with stdin_path.open("rb") as fh:
                return self._execute(argv, timeout, what, stdin=fh, limit=limit)

        return self._with_retries(attempt, what)

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        """Run ``argv`` under the device's ``timeout -k 5 <timeout>``; crashes come back as
        results (see :meth:`CommandResult.describe`), timeouts raise :class:`CommandTimeout`."""
        what = f"ssh command {argv[0]!r}"
        start = time.monotonic()
        try:
            raw = self._ssh(remote_limited(argv, timeout), timeout + _CLIENT_GRACE_S, what,
                            limit=timeout)
        except CommandTimeout as exc:
            raise self.timeout_error(what, timeout, exc.partial,
                                     " (the ssh session stopped answering)") from None
        done = split_status(raw)
        if done is None:  # the remote shell itself never finished: report what ssh saw
            return raw
        if done.rc in (124, 128 + 9) and time.monotonic() - start >= timeout:
            raise self.timeout_error(what, timeout, done, " on the device")
        return done

    def push(self, local: str | os.PathLike[str], remote: str,
             sha256: str | None = None) -> bool:
        """Stream the file into ``<remote>.part``; with ``sha256``, the device checks the copy
        before it is renamed to ``remote`` (one connection for copy and check)."""
        src = Path(local)
        if not src.is_file():
            raise FileNotFoundError(f"cannot push {src}: no such file")
        parent = str(PurePosixPath(remote).parent)
        partial = shlex.quote(f"{remote}.part")
        check = ""
        if sha256 is not None:
            check = (f'__ep_sum="$(sha256sum < {partial})" && '
                     f'case "$__ep_sum" in {shlex.quote(sha256)}*) ;; '
                     f'*) rm -f -- {partial}; echo "arrived with sha256 $__ep_sum" >&2; '
                     f'exit 3 ;; esac && ')
        command = (f"mkdir -p -- {shlex.quote(parent)} && cat > {partial} && {check}"
                   f"mv -f -- {partial} {shlex.quote(remote)}")
        result = self._ssh(command, timeout=600, what=f"copy {src.name}", stdin_path=src)
        if result.rc != 0:
            raise self.error(f"copying {src.name} to {remote} failed: {_tail(result.output)}")
        return sha256 is not None

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
