"""Benchmark targets: where and how a model's latency is measured.

The ``targets:`` section of the config maps a target name to a spec. A spec says how to reach the
machine (``transport``: ``local``, ``adb`` or ``ssh``) and what times the model there
(``runtime``: ``litert-python``, ``benchmark_model``, ``openvino``, ``benchmark_app`` or, over
ssh, ``trtexec``, TensorRT's tool: ``binary`` is its command on the board, ``fp16: true`` builds
half-precision engines). Remote targets keep the ``keep`` most recently used models (besides the
current job's) in their work folder (default 32).
:func:`parse_targets` validates every spec into an immutable :class:`Target`; each error names the
offending key as ``targets.<name>.<key>`` and says what was expected.

Two targets always exist unless overridden: ``host-litert`` (this machine, LiteRT Python
interpreter) and ``host-openvino`` (this machine, OpenVINO on CPU). A config entry with one of
those names is merged over the built-in spec, so ``host-openvino: {enabled: false}`` turns it off.
A local target that sets no ``threads`` times with the config's top-level ``threads`` (2 when
absent): LiteRT's Python interpreter would otherwise run a single thread.

``seconds``, ``block_runs`` and ``blocks_per_group`` (with ``warmup``) drive the interleaved
comparison timing of :mod:`edgeprune.measurement.compare`; ``runs`` is the number of timed runs of
one
``benchmark_model``/``benchmark_app`` invocation and of single-model timing.
The JSON-schema counterpart of this module is the ``targets`` part of
``workflow/schemas/config.schema.yaml``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeprune.errors import ConfigError

__all__ = [
    "BUILTIN_TARGETS",
    "Delegates",
    "RUNTIMES",
    "TRANSPORTS",
    "Target",
    "enabled_targets",
    "get_target",
    "parse_targets",
]

TRANSPORTS = ("local", "adb", "ssh")
RUNTIMES = ("litert-python", "benchmark_model", "openvino", "benchmark_app", "trtexec")
OPENVINO_DEVICES = ("CPU", "GPU", "MYRIAD")

#: Which runtimes can be driven over each transport (Android has no Python or OpenVINO here).
RUNTIMES_BY_TRANSPORT = {
    "local": ("litert-python", "benchmark_model", "openvino", "benchmark_app"),
    "ssh": RUNTIMES,
    "adb": ("benchmark_model",),
}

ADB_DEFAULT_WORKDIR = "/data/local/tmp/edgeprune"
#: Relative to the login directory of the SSH user (remote commands start in ``$HOME``).
SSH_DEFAULT_WORKDIR = "edgeprune"
SSH_DEFAULT_PYTHON = "python3"
BENCHMARK_APP_DEFAULT = "benchmark_app"
TRTEXEC_DEFAULT = "trtexec"
#: Staged models a remote work folder keeps besides the current job's (``keep``).
KEEP_DEFAULT = 32

BUILTIN_TARGETS: dict[str, dict[str, Any]] = {
    "host-litert": {"transport": "local", "runtime": "litert-python"},
    "host-openvino": {"transport": "local", "runtime": "openvino", "device": "CPU"},
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]*$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SERIAL_RE = re.compile(r"^[A-Za-z0-9_.:][A-Za-z0-9_.:-]*$")

_COMMON_KEYS = {"enabled", "transport", "runtime", "threads", "timeout_s", "retries", "warmup",
                "runs", "seconds", "block_runs", "blocks_per_group"}
#: Top-level ``threads`` when the config has none (config/config.yaml's value).
DEFAULT_THREADS = 2
_SSH_KEYS = {"host", "user", "port", "key_file", "strict_host_key_checking", "known_hosts"}
_ALLOWED_KEYS = _COMMON_KEYS | _SSH_KEYS | {"serial", "binary", "device", "delegates", "workdir",
                                            "python", "fp16", "keep"}
_DELEGATE_KEYS = ("xnnpack", "gpu", "nnapi")


@dataclass(frozen=True)
class Delegates:
    """LiteRT delegate switches (``benchmark_model`` flags / Python interpreter resolver)."""

    xnnpack: bool = True
    gpu: bool = False
    nnapi: bool = False


@dataclass(frozen=True)
class Target:
    """One validated benchmark target. Transport- or runtime-specific fields are ``None`` when
    they do not apply (e.g. ``serial`` for an SSH target)."""

    name: str
    transport: str
    runtime: str
    enabled: bool = True
    serial: str | None = None
    host: str | None = None
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    strict_host_key_checking: bool | None = None
    known_hosts: str | None = None
    binary: str | None = None
    device: str | None = None
    threads: int | None = None
    delegates: Delegates | None = field(default=None)
    workdir: str | None = None
    python: str | None = None
    fp16: bool | None = None
    keep: int | None = None
    timeout_s: float = 600.0
    retries: int = 2
    warmup: int = 10
    runs: int = 50
    seconds: float = 60.0
    block_runs: int = 10
    blocks_per_group: int = 4

    @property
    def address(self) -> str:
        """Human-readable location used in error messages (serial, user@host:port, local)."""
        if self.transport == "adb":
            return f"adb serial {self.serial}"
        if self.transport == "ssh":
            login = f"{self.user}@{self.host}" if self.user else str(self.host)
            return f"ssh {login}:{self.port}"
        return "local host"

    def key(self, key: str) -> str:
        """Dotted config key of one of this target's settings, for messages."""
        return f"targets.{self.name}.{key}"


# --------------------------------------------------------------------------- value readers


class _Spec:
    """Typed, error-reporting access to one raw target spec."""

    def __init__(self, prefix: str, raw: Mapping[str, Any]) -> None:
        self.prefix = prefix  # e.g. "targets.pixel4" or "targets.pixel4.delegates"
        self.raw = raw

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}"

    def fail(self, key: str, expected: str) -> ConfigError:
        value = self.raw.get(key, "<missing>")
        return ConfigError(f"{self.key(key)}: expected {expected}, got {value!r}")

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def integer(self, key: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
        value = self.raw.get(key, default)
        if value is None:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise self.fail(key, f"an integer {bound}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.fail(key, "a number > 0")
        return float(value)

    def string(self, key: str, default: str | None = None,
               pattern: re.Pattern[str] | None = None, what: str = "a non-empty string") -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, what)
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, what)
        return value

    def optional_string(self, key: str, **kwargs: Any) -> str | None:
        return self.string(key, **kwargs) if self.has(key) else None

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if value not in choices:
            raise self.fail(key, "one of " + ", ".join(choices))
        return value

    def forbid(self, keys: set[str] | tuple[str, ...], reason: str) -> None:
        for key in sorted(keys):
            if key in self.raw:
                raise ConfigError(f"{self.key(key)}: not allowed here ({reason})")


# --------------------------------------------------------------------------- parsing


def _check_keys(spec: _Spec) -> None:
    unknown = sorted(set(spec.raw) - _ALLOWED_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_KEYS))
        raise ConfigError(f"{spec.key(unknown[0])}: unknown key; allowed keys are {allowed}")


def _transport_fields(spec: _Spec, transport: str) -> dict[str, Any]:
    if transport != "ssh":
        spec.forbid(_SSH_KEYS, f"only ssh targets take {', '.join(sorted(_SSH_KEYS))}")
    if transport != "adb":
        spec.forbid(("serial",), "only adb targets take a serial")
    if transport == "local":
        spec.forbid(("workdir", "keep"), "local targets run files in place")
        return {}
    keep = spec.integer("keep", KEEP_DEFAULT, 1)
    if transport == "adb":
        serial = spec.string("serial", pattern=_SERIAL_RE, what="an adb device serial")
        workdir = spec.string("workdir", ADB_DEFAULT_WORKDIR, what="an absolute device path")
        if not workdir.startswith("/"):
            raise spec.fail("workdir", "an absolute device path such as /data/local/tmp/edgeprune")
        return {"serial": serial, "workdir": workdir, "keep": keep}
    return {**_ssh_fields(spec), "keep": keep}


def _ssh_fields(spec: _Spec) -> dict[str, Any]:
    workdir = spec.string("workdir", SSH_DEFAULT_WORKDIR, what="a remote directory path")
    if workdir == "~" or workdir.startswith("~/"):
        workdir = workdir[2:] or "."  # remote commands start in $HOME, so drop the tilde
    elif workdir.startswith("~"):
        raise spec.fail("workdir", "an absolute path or one relative to the login directory")
    return {
        "host": spec.string("host", pattern=_HOST_RE, what="a host name or IP address"),
        "user": spec.optional_string("user", pattern=_USER_RE, what="a user name"),
        "port": spec.integer("port", 22, 1, 65535),
        "key_file": spec.optional_string("key_file"),
        "strict_host_key_checking": spec.boolean("strict_host_key_checking", True),
        "known_hosts": spec.optional_string("known_hosts"),
        "workdir": workdir,
    }


def _delegates(spec: _Spec, transport: str, runtime: str) -> Delegates | None:
    if runtime not in ("litert-python", "benchmark_model"):
        spec.forbid(("delegates",), "delegates apply to litert-python and benchmark_model")
        return None
    raw = spec.raw.get("delegates") or {}
    if not isinstance(raw, Mapping):
        raise spec.fail("delegates", "a mapping with keys xnnpack, gpu, nnapi")
    sub = _Spec(spec.key("delegates"), raw)
    unknown = sorted(set(raw) - set(_DELEGATE_KEYS))
    if unknown:
        raise ConfigError(f"{sub.key(unknown[0])}: unknown delegate; expected xnnpack, gpu, nnapi")
    delegates = Delegates(*(sub.boolean(k, d) for k, d in zip(_DELEGATE_KEYS, (True, False, False),
                                                              strict=True)))
    if delegates.gpu and delegates.nnapi:
        raise ConfigError(f"{spec.key('delegates')}: expected at most one of gpu, nnapi to be true")
    if runtime == "litert-python" and (delegates.gpu or delegates.nnapi):
        raise ConfigError(
            f"{spec.key('delegates')}: litert-python supports only xnnpack; "
            "use runtime benchmark_model for gpu/nnapi"
        )
    if delegates.nnapi and transport != "adb":
        raise ConfigError(f"{spec.key('delegates.nnapi')}: NNAPI exists only on adb targets")
    return delegates


def _runtime_fields(spec: _Spec, transport: str, runtime: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"delegates": _delegates(spec, transport, runtime)}
    if runtime == "benchmark_model":
        fields["binary"] = spec.string("binary", what="the path of a benchmark_model binary")
    elif runtime == "benchmark_app":
        fields["binary"] = spec.string("binary", BENCHMARK_APP_DEFAULT,
                                       what="a benchmark_app command or path")
    elif runtime == "trtexec":
        fields["binary"] = spec.string("binary", TRTEXEC_DEFAULT,
                                       what="the trtexec command or path on the target (e.g. "
                                            "/usr/src/tensorrt/bin/trtexec)")
    else:
        spec.forbid(("binary",), "binary applies to benchmark_model, benchmark_app and trtexec")
    if runtime == "trtexec":
        fields["fp16"] = spec.boolean("fp16", False)
    else:
        spec.forbid(("fp16",), "fp16 applies to trtexec")
    if runtime in ("openvino", "benchmark_app"):
        fields["device"] = spec.choice("device", OPENVINO_DEVICES, "CPU")
    else:
        spec.forbid(("device",), "device applies to openvino and benchmark_app")
    if runtime in ("litert-python", "openvino"):
        default_python = sys.executable if transport == "local" else SSH_DEFAULT_PYTHON
        fields["python"] = spec.string("python", default_python, what="a python executable")
    else:
        spec.forbid(("python",), "python applies to litert-python and openvino")
    return fields


def _parse_one(name: str, raw: Any, default_threads: int = DEFAULT_THREADS) -> Target:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"targets.{name}: target names must match {_NAME_RE.pattern} (used in file names)"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(f"targets.{name}: expected a mapping of target settings, got {raw!r}")
    spec = _Spec(f"targets.{name}", raw)
    _check_keys(spec)
    transport = spec.choice("transport", TRANSPORTS)
    runtime = spec.choice("runtime", RUNTIMES)
    if runtime not in RUNTIMES_BY_TRANSPORT[transport]:
        raise spec.fail(
            "runtime", f"one of {', '.join(RUNTIMES_BY_TRANSPORT[transport])} for {transport} "
            "targets"
        )
    return Target(
        name=name,
        transport=transport,
        runtime=runtime,
        enabled=spec.boolean("enabled", True),
        threads=spec.integer("threads", default_threads if transport == "local" else None, 1,
                             1024),
        timeout_s=spec.number("timeout_s", 600.0),
        retries=spec.integer("retries", 2, 0, 20),  # type: ignore[arg-type]
        warmup=spec.integer("warmup", 10, 0),  # type: ignore[arg-type]
        runs=spec.integer("runs", 50, 1),  # type: ignore[arg-type]
        seconds=spec.number("seconds", 60.0),
        block_runs=spec.integer("block_runs", 10, 1),  # type: ignore[arg-type]
        blocks_per_group=spec.integer("blocks_per_group", 4, 1),  # type: ignore[arg-type]
        **_transport_fields(spec, transport),
        **_runtime_fields(spec, transport, runtime),
    )


def parse_targets(cfg: Mapping[str, Any] | None) -> dict[str, Target]:
    """Validate ``cfg["targets"]`` (the whole config mapping is passed) into Target objects.

    Built-in targets are included and may be overridden key by key. Local targets without
    ``threads`` get the config's top-level ``threads`` (:data:`DEFAULT_THREADS` when absent).
    Raises ConfigError naming ``targets.<name>.<key>`` on the first invalid setting.
    """
    threads = (cfg or {}).get("threads", DEFAULT_THREADS)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads: expected an integer >= 1, got {threads!r}")
    section = (cfg or {}).get("targets")
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"targets: expected a mapping of target name to settings, got {section!r}"
        )
    merged: dict[str, Any] = {name: dict(spec) for name, spec in BUILTIN_TARGETS.items()}
    for name, spec in section.items():
        base = merged.get(name)
        merged[name] = {**base, **spec} if base is not None and isinstance(spec, Mapping) else spec
    return {name: _parse_one(name, spec, threads) for name, spec in merged.items()}


def enabled_targets(targets: Mapping[str, Target]) -> dict[str, Target]:
    """The subset of ``targets`` whose ``enabled`` flag is true, in config order."""
    return {name: t for name, t in targets.items() if t.enabled}


def get_target(targets: Mapping[str, Target], name: str) -> Target:
    """Look a target up by name; ConfigError lists the known names when it is absent."""
    try:
        return targets[name]
    except KeyError:
        raise ConfigError(
            f"targets.{name}: no such target; configured targets are {', '.join(sorted(targets))}"
        ) from None

