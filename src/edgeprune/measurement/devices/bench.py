"""Measure a model's latency on one configured target.

:func:`run_benchmark` picks the transport (local, adb, ssh) and the timing tool (``runtime``):

* ``benchmark_model`` -- LiteRT's C++ benchmark binary; the local binary is pushed once (skipped
  when the device copy has the same SHA-256), the model is pushed, and the tool's text output is
  parsed. It reports aggregates only, so ``p90_ms`` is ``None`` and ``median_ms``/``fps`` are
  ``None`` for builds that print no percentiles.
* ``benchmark_app`` -- OpenVINO's benchmark tool, installed on the target (``binary`` is the
  command there); ``.xml`` and ``.bin`` are pushed. It prints median/average/min/max but no std,
  and needs a model with static input shapes (export the IR with batch 1). It runs with the
  LATENCY hint, or, when ``threads`` is set on CPU, with the equivalent one stream + synchronous
  requests (the tool refuses ``-nthreads`` alongside a hint); on CPU also with
  ``-infer_precision f32``, as ``remote_runner.py`` (a CPU with bf16 support would otherwise
  run the f32 model in bf16). The precision the tool reports is kept as ``inference_precision``.
* ``litert-python`` / ``openvino`` -- ``remote_runner.py`` (shipped beside this module) is pushed
  and run with the target's Python; it returns every per-run sample, so all statistics exist.
* ``trtexec`` -- TensorRT's tool on an SSH target (a Jetson): the ONNX model is copied, its engine
  is built on the device once per model and precision (``fp16: true`` adds ``--fp16``) and kept
  as ``engines/<model checksum>-<fp16|fp32>.plan``, then each timing loads it
  (``--loadEngine --iterations=<runs> --duration=0``, trtexec's own 200 ms warm-up, whose query
  count is recorded). The result is the ``GPU Compute Time`` summary (min, max, mean, median,
  90th percentile where printed); ``Latency`` (with transfers) is kept in ``tool``.

On a remote target, models live under their checksum, ``models/<sha256[:16]>.<suffix>`` (an IR's
``.xml`` and ``.bin`` share a stem made from both checksums), so two models can never be confused
on the device. Every job holds the device's lock (:meth:`Transport.lock`) from staging to the
last timing, and first cleans the work folder (:func:`device_session`): ``.part`` files of
interrupted copies older than 10 minutes go, and of the staged models only the current job's
and the ``keep`` most recently used others stay (with their engines).

The tool's stdout and stderr are kept verbatim in ``raw_log`` (written atomically, also when the
tool fails, crashes or times out) so that a result can always be traced back to what the device
printed. A crash is reported with its exit status or signal and last lines, an unreadable
output as a one-line :class:`BenchmarkOutputError` naming the target and the field.

Interleaved comparisons of several models (:mod:`edgeprune.measurement.compare`) come through
:func:`compare_with_runner` (``remote_runner.py --compare``: every model timed in one process,
fresh instances per group) and :func:`interleave_tool` (``benchmark_model``/``benchmark_app``:
one invocation per model and group, in a seeded random order).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from edgeprune.errors import ConfigError, TargetError
from edgeprune.fileio import write_text
from edgeprune.measurement.devices.parsers import (
    BenchmarkOutputError,
    last_json_line,
    parse_benchmark_app,
    parse_benchmark_model,
    parse_trtexec,
)
from edgeprune.measurement.devices.transport import (
    CommandResult,
    CommandTimeout,
    Transport,
    local_sha256,
    transport_for,
)
from edgeprune.measurement.latency import LatencyStats, summarize
from edgeprune.measurement.targets import Target

__all__ = ["PART_MAX_AGE_MIN", "REMOTE_RUNNER", "app_precision", "compare_identity",
           "compare_with_runner", "device_session", "interleave_tool", "read_tool_output",
           "run_benchmark", "staged_name"]

REMOTE_RUNNER = Path(__file__).with_name("remote_runner.py")
#: ``.part`` files (interrupted copies) older than this many minutes are removed.
PART_MAX_AGE_MIN = 10
_MODEL_RE = re.compile(r"^(?P<stem>[0-9a-f]{16})\.(?:tflite|onnx|xml|bin)$")
_ENGINE_RE = re.compile(r"^(?P<stem>[0-9a-f]{16})-(?:fp16|fp32)\.plan$")


@dataclass
class _Context:
    target: Target
    transport: Transport
    model: Path
    warmup: int
    runs: int
    pushed: list[str] = field(default_factory=list)
    #: (local path, remote path) already staged this session; shared by the contexts of one
    #: comparison so that each file is checked and copied once.
    staged: set[tuple[str, str]] = field(default_factory=set)
    #: Output of preparatory commands (a trtexec engine build) that goes before the tool's.
    notes: list[str] = field(default_factory=list)
    #: Engines known to exist on the device this session (trtexec).
    engines: set[str] = field(default_factory=set)


@dataclass
class _Execution:
    argv: list[str]
    result: CommandResult
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Measurement:
    stats: LatencyStats
    runtime: str
    runtime_version: str | None
    tool: dict[str, Any] | None = None
    samples_ms: list[float] | None = None
    warmup: int | None = None


#: Runtimes that run OpenVINO, whose identity records ``inference_precision``.
_OPENVINO_RUNTIMES = ("openvino", "benchmark_app")


# --------------------------------------------------------------------------- file staging


def _remote_path(ctx: _Context, *parts: str) -> str:
    assert ctx.target.workdir is not None
    return str(PurePosixPath(ctx.target.workdir, *parts))


def _stage(ctx: _Context, local: Path, *remote_parts: str) -> str:
    """Make ``local`` available on the target; return the path to use there.

    Local targets use files in place. Remote copies are skipped when the target already holds a
    file with the same SHA-256, and verified after copying.
    """
    if ctx.target.transport == "local":
        return str(local)
    remote = _remote_path(ctx, *remote_parts)
    if (str(local), remote) in ctx.staged:
        return remote
    ctx.staged.add((str(local), remote))
    digest = local_sha256(local)
    if digest is None:
        raise FileNotFoundError(f"cannot stage {local}: no such file")
    if ctx.transport.sha256(remote) == digest:
        return remote
    if not ctx.transport.push(local, remote, digest):  # ssh checks the copy on the device
        after = ctx.transport.sha256(remote)
        if after is not None and after != digest:
            raise ctx.transport.error(f"{remote} has sha256 {after} after copying, expected "
                                      f"{digest}")
    ctx.pushed.append(remote)
    return remote


def staged_name(model: Path) -> str:
    """The model's file name on a device: ``<sha256[:16]><suffix>``; an OpenVINO IR's stem is
    the checksum of both its files' checksums (its ``.bin`` is staged beside it)."""
    digest = local_sha256(model)
    if digest is None:
        raise FileNotFoundError(f"cannot stage {model}: no such file")
    if model.suffix == ".xml":
        weights = local_sha256(model.with_suffix(".bin"))
        if weights is None:
            raise FileNotFoundError(f"OpenVINO IR {model} has no weights file "
                                    f"{model.with_suffix('.bin')}")
        digest = hashlib.sha256(f"{digest} {weights}".encode()).hexdigest()
    return f"{digest[:16]}{model.suffix}"


def _stage_model(ctx: _Context) -> str:
    """Stage the model (and an OpenVINO IR's ``.bin`` weights) as ``<workdir>/models/`` +
    :func:`staged_name`."""
    if ctx.target.transport == "local":
        return str(ctx.model)
    name = staged_name(ctx.model)
    if ctx.model.suffix == ".xml":
        _stage(ctx, ctx.model.with_suffix(".bin"), "models", PurePosixPath(name).stem + ".bin")
    return _stage(ctx, ctx.model, "models", name)


def _local_binary(target: Target) -> Path:
    assert target.binary is not None
    path = Path(target.binary).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"{target.key('binary')}: {path} does not exist; expected a benchmark_model binary "
            "built for the target (e.g. android_arm64 for a phone)"
        )
    return path


def _app_command(target: Target) -> str:
    """benchmark_app to call; on this machine also look beside the running Python (venv bin)."""
    assert target.binary is not None
    if target.transport != "local" or "/" in target.binary or shutil.which(target.binary):
        return target.binary
    beside = Path(sys.executable).parent / target.binary
    if beside.is_file():
        return str(beside)
    raise ConfigError(f"{target.key('binary')}: {target.binary!r} not found on PATH")


# --------------------------------------------------------------------------- device session


def _clean_workdir(transport: Transport, workdir: str, keep: int, current: set[str]) -> list[str]:
    """Remove old ``.part`` files and staged models beyond the ``keep`` most recently used.

    ``current`` holds the stems of this job's models: they are touched (so that "recently used"
    means used, not copied) and never removed. Returns the removed paths (relative to
    ``workdir``).
    """
    touch = [f"models/{stem}{suffix}" for stem in sorted(current)
             for suffix in (".tflite", ".onnx", ".xml", ".bin")]
    script = (
        'cd -- "$1" 2>/dev/null || exit 0; shift; '
        f'find . -maxdepth 2 -name "*.part" -type f -mmin +{PART_MAX_AGE_MIN} '
        '-exec rm -f -- {} + 2>/dev/null; '
        'touch -c -- "$@" 2>/dev/null; '
        'for d in models engines; do [ -d "$d" ] && ls -1t -- "$d" | sed "s|^|$d/|"; done; true'
    )
    listing = transport.run(["sh", "-c", script, "sh", workdir, *touch], timeout=120)
    if listing.rc != 0:
        raise transport.error(f"cannot list the work folder {workdir} ({listing.describe()}): "
                              f"{listing.last_lines()}")
    recent: list[str] = []
    files: list[tuple[str, str]] = []
    for line in listing.stdout.splitlines():
        folder, _, name = line.strip().partition("/")
        if folder == "models" and (match := _MODEL_RE.match(name)):
            stem = match["stem"]
            files.append((stem, line.strip()))
            if stem not in recent and stem not in current:
                recent.append(stem)
        elif folder == "engines" and (match := _ENGINE_RE.match(name)):
            files.append((match["stem"], line.strip()))
    keep_stems = current | set(recent[:keep])
    doomed = [path for stem, path in files if stem not in keep_stems]
    if doomed:
        removed = transport.run(["rm", "-f", "--", *(str(PurePosixPath(workdir, p))
                                                     for p in doomed)], timeout=120)
        if removed.rc != 0:
            raise transport.error(f"cannot remove old models from {workdir}: "
                                  f"{removed.last_lines()}")
    return doomed


@contextlib.contextmanager
def device_session(target: Target, models: Sequence[Path],
                   transport: Transport | None = None) -> Iterator[tuple[Transport, float]]:
    """Hold ``target``'s device lock for the body and, on a remote target, clean its work
    folder first (keeping ``models`` and the ``keep`` most recently used others). Yields
    ``(transport, seconds waited for the lock)``."""
    transport = transport or transport_for(target)
    with transport.lock(target.workdir) as waited:
        if target.transport != "local" and target.workdir is not None:
            current = {PurePosixPath(staged_name(m)).stem for m in models}
            _clean_workdir(transport, target.workdir, target.keep or 1, current)
        yield transport, waited


def _crash(ctx: _Context, result: CommandResult, raw_log: str | Path,
           what: str | None = None) -> TargetError:
    """A tool that ended with a failure status or a signal: status, last lines, raw log."""
    return ctx.transport.error(
        f"{what or ctx.target.runtime} {result.describe()}; last lines: {result.last_lines()}; "
        f"output kept in {raw_log}")


def _timed_out(exc: CommandTimeout, raw_log: str | Path) -> TargetError:
    return TargetError(f"{exc}; partial output kept in {raw_log}")


def _unreadable(ctx: _Context, exc: BenchmarkOutputError, raw_log: str | Path
                ) -> BenchmarkOutputError:
    return BenchmarkOutputError(
        f"target '{ctx.target.name}' ({ctx.transport.address}): {ctx.target.runtime} output "
        f"unreadable, field '{exc.field or 'result'}': {exc}; raw output kept in {raw_log}",
        field=exc.field)


# --------------------------------------------------------------------------- runtimes


def _need(mapping: dict[str, Any], key: str, tool: str) -> Any:
    """``mapping[key]``, or a BenchmarkOutputError naming the field."""
    if key not in mapping or mapping[key] is None:
        raise BenchmarkOutputError(f"{tool} lacks the field '{key}'", field=key)
    return mapping[key]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _exec_benchmark_model(ctx: _Context) -> _Execution:
    target = ctx.target
    binary = _local_binary(target)
    first = (target.transport != "local"
             and (str(binary), _remote_path(ctx, "benchmark_model")) not in ctx.staged)
    remote_binary = _stage(ctx, binary, "benchmark_model")
    if first:
        chmod = ctx.transport.run(["chmod", "755", remote_binary], timeout=60)
        if chmod.rc != 0:
            raise ctx.transport.error(f"chmod {remote_binary} failed: {chmod.output.strip()}")
    delegates = target.delegates
    assert delegates is not None
    argv = [
        remote_binary,
        f"--graph={_stage_model(ctx)}",
        f"--warmup_runs={ctx.warmup}",
        f"--num_runs={ctx.runs}",
        f"--use_xnnpack={_flag(delegates.xnnpack)}",
        f"--use_gpu={_flag(delegates.gpu)}",
        f"--use_nnapi={_flag(delegates.nnapi)}",
    ]
    if target.threads is not None:
        argv.append(f"--num_threads={target.threads}")
    result = ctx.transport.run(argv, timeout=target.timeout_s)
    return _Execution(argv, result, {"binary_sha256": local_sha256(binary)})


def _measure_benchmark_model(ctx: _Context, text: str) -> _Measurement:
    parsed = parse_benchmark_model(text)
    phase = parsed["inference"]
    if not phase:
        raise BenchmarkOutputError(
            "benchmark_model printed no statistics line (count=...) for the timed runs",
            field="count=")
    tool = "benchmark_model's statistics line"
    if "avg" not in phase:  # "count=N curr=X(all same)": every run took the same time
        same = _need(phase, "curr", tool)
        phase = {**phase, "avg": same, "min": same, "max": same, "median": same, "std": 0.0}
    us = 1000.0
    stats = LatencyStats.from_summary(
        n=_need(phase, "count", tool),
        mean_ms=_need(phase, "avg", tool) / us,
        min_ms=_need(phase, "min", tool) / us,
        max_ms=_need(phase, "max", tool) / us,
        median_ms=phase["median"] / us if "median" in phase else None,
        std_ms=_need(phase, "std", tool) / us,
    )
    return _Measurement(stats, "benchmark_model", None, tool=parsed)


def _exec_benchmark_app(ctx: _Context) -> _Execution:
    target = ctx.target
    argv = [_app_command(target), "-m", _stage_model(ctx), "-d", str(target.device),
            "-niter", str(ctx.runs)]
    if target.threads is not None and target.device == "CPU":
        # benchmark_app refuses -nthreads together with a performance hint; one stream and
        # synchronous requests is what the LATENCY hint amounts to on CPU.
        argv += ["-hint", "none", "-nstreams", "1", "-api", "sync",
                 "-nthreads", str(target.threads)]
    else:
        argv += ["-hint", "latency"]
    if target.device == "CPU":
        argv += ["-infer_precision", "f32"]  # the model's precision, not the CPU's bf16 default
    return _Execution(argv, ctx.transport.run(argv, timeout=target.timeout_s))


#: benchmark_app's line with the compiled model's precision: ``INFERENCE_PRECISION_HINT: f32``
#: (C++ tool) or ``INFERENCE_PRECISION_HINT: <Type: 'float32'>`` (Python tool).
_APP_PRECISION = re.compile(
    r"INFERENCE_PRECISION_HINT:[ \t]*(?:<Type:[ \t]*'(\w+)'>|(\w+))[ \t]*$", re.MULTILINE)
_TYPE_NAMES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def app_precision(text: str) -> str | None:
    """The inference precision benchmark_app reports for the compiled model (OpenVINO's short
    names: ``f32``, ``bf16``, ``f16``), or None where its output has no such line."""
    found = _APP_PRECISION.search(text)
    if found is None:
        return None
    name = found.group(1) or found.group(2)
    return _TYPE_NAMES.get(name, name)


def _measure_benchmark_app(ctx: _Context, text: str) -> _Measurement:
    parsed = {**parse_benchmark_app(text), "inference_precision": app_precision(text)}
    missing = [k for k in ("median_ms", "average_ms", "min_ms", "max_ms") if parsed[k] is None]
    if missing:
        raise BenchmarkOutputError(f"benchmark_app output lacks {', '.join(missing)}",
                                   field=missing[0])
    stats = LatencyStats.from_summary(
        n=parsed["count"] or ctx.runs,
        mean_ms=parsed["average_ms"],
        min_ms=parsed["min_ms"],
        max_ms=parsed["max_ms"],
        median_ms=parsed["median_ms"],
    )
    # benchmark_app runs exactly one untimed first inference before measuring.
    return _Measurement(stats, "openvino benchmark_app", parsed["build"], tool=parsed, warmup=1)


def _runner_head(ctx: _Context) -> list[str]:
    """``<python> <staged remote_runner.py> --runtime <litert|openvino>`` for the target."""
    target = ctx.target
    assert target.python is not None
    script = _stage(ctx, REMOTE_RUNNER, "remote_runner.py")
    runtime = "litert" if target.runtime == "litert-python" else "openvino"
    return [target.python, script, "--runtime", runtime]


def _runner_flags(target: Target) -> list[str]:
    """remote_runner.py options the target sets: threads, XNNPACK off, OpenVINO device."""
    flags: list[str] = []
    if target.threads is not None:
        flags += ["--threads", str(target.threads)]
    if target.delegates is not None and not target.delegates.xnnpack:
        flags.append("--no-xnnpack")
    if target.device is not None:
        flags += ["--device", target.device]
    return flags


def _exec_runner(ctx: _Context) -> _Execution:
    target = ctx.target
    argv = [*_runner_head(ctx), "--model", _stage_model(ctx),
            "--warmup", str(ctx.warmup), "--runs", str(ctx.runs), *_runner_flags(target)]
    return _Execution(argv, ctx.transport.run(argv, timeout=target.timeout_s))


def _runner_payload(text: str) -> dict[str, Any]:
    payload = last_json_line(text, "samples_ms")
    if payload is None:
        raise BenchmarkOutputError("remote_runner.py printed no JSON result line",
                                   field="JSON result line")
    return payload


def _measure_runner(ctx: _Context, text: str) -> _Measurement:
    payload = _runner_payload(text)
    try:
        samples = [float(x) for x in payload["samples_ms"]]
        stats = summarize(samples)
    except (TypeError, ValueError) as exc:
        raise BenchmarkOutputError(f"remote_runner.py samples_ms unusable: {exc}",
                                   field="samples_ms") from None
    tool = {k: v for k, v in payload.items() if k != "samples_ms"}
    return _Measurement(stats, str(payload.get("runtime")),
                        payload.get("runtime_version"), tool=tool, samples_ms=samples)


def _trtexec_engine(ctx: _Context, onnx: str) -> tuple[str, _Execution | None]:
    """The device path of the model's engine, built now if the device has none; the build's
    execution comes back when it failed (the caller reports it like a tool failure)."""
    target = ctx.target
    assert target.binary is not None
    precision = "fp16" if target.fp16 else "fp32"
    engine = _remote_path(ctx, "engines", f"{PurePosixPath(onnx).stem}-{precision}.plan")
    if engine in ctx.engines:
        return engine, None
    if ctx.transport.run(["test", "-s", engine], timeout=60).rc != 0:
        partial = f"{engine}.part"
        made = ctx.transport.run(["mkdir", "-p", str(PurePosixPath(engine).parent)], timeout=60)
        if made.rc != 0:
            raise ctx.transport.error(f"cannot create the engine folder: {made.last_lines()}")
        argv = [target.binary, f"--onnx={onnx}", f"--saveEngine={partial}", "--iterations=1",
                "--duration=0", "--warmUp=0", *(["--fp16"] if target.fp16 else [])]
        built = ctx.transport.run(argv, timeout=target.timeout_s)
        ctx.notes.append(f"==> engine build: {shlex.join(argv)}\n{built.output}")
        if built.rc != 0:
            return engine, _Execution(argv, built, {"phase": "engine build"})
        moved = ctx.transport.run(["mv", "-f", "--", partial, engine], timeout=60)
        if moved.rc != 0:
            raise ctx.transport.error(f"cannot keep the engine {engine}: {moved.last_lines()}")
        ctx.pushed.append(engine)
    ctx.engines.add(engine)
    return engine, None


def _exec_trtexec(ctx: _Context) -> _Execution:
    target = ctx.target
    assert target.binary is not None
    engine, failed = _trtexec_engine(ctx, _stage_model(ctx))
    if failed is not None:
        return failed
    argv = [target.binary, f"--loadEngine={engine}", f"--iterations={ctx.runs}",
            "--duration=0"]
    return _Execution(argv, ctx.transport.run(argv, timeout=target.timeout_s),
                      {"engine": engine, "precision": "fp16" if target.fp16 else "fp32"})


def _measure_trtexec(ctx: _Context, text: str) -> _Measurement:
    parsed = parse_trtexec(text)
    gpu = parsed["gpu_compute"]
    stats = LatencyStats.from_summary(
        n=parsed["queries"], mean_ms=gpu["mean"], min_ms=gpu["min"], max_ms=gpu["max"],
        median_ms=gpu["median"], p90_ms=gpu["percentiles"].get("90"))
    return _Measurement(stats, "tensorrt trtexec", parsed["version"], tool=parsed,
                        warmup=parsed["warmup_queries"])


_RUNTIMES: dict[str, tuple[Callable[[_Context], _Execution],
                           Callable[[_Context, str], _Measurement]]] = {
    "benchmark_model": (_exec_benchmark_model, _measure_benchmark_model),
    "benchmark_app": (_exec_benchmark_app, _measure_benchmark_app),
    "litert-python": (_exec_runner, _measure_runner),
    "openvino": (_exec_runner, _measure_runner),
    "trtexec": (_exec_trtexec, _measure_trtexec),
}


def read_tool_output(runtime: str, text: str, runs: int = 1) -> dict[str, Any]:
    """Read one invocation's output of ``runtime``'s tool the way a timing does (e.g. a raw log
    again, offline): ``stats`` (LatencyStats fields), ``runtime``, ``runtime_version``,
    ``warmup`` and ``tool``. ``runs`` stands in for a count the tool does not print.

    Raises:
        BenchmarkOutputError: a field is missing or unreadable (named in ``field``).
    """
    ctx = _Context(Target(name="offline", transport="local", runtime=runtime),
                   None, Path(), 0, runs)  # type: ignore[arg-type]
    measurement = _RUNTIMES[runtime][1](ctx, text)
    return {"stats": measurement.stats.to_dict(), "runtime": measurement.runtime,
            "runtime_version": measurement.runtime_version, "warmup": measurement.warmup,
            "tool": measurement.tool}


def _run_tool(ctx: _Context, raw_log: str | Path, log: list[str], header: str = ""
              ) -> tuple[_Execution, _Measurement]:
    """Run the target's tool once and read its output; every outcome (success, failure status,
    signal, timeout, unreadable output) leaves the output in ``raw_log`` (``log`` holds what
    earlier invocations of this job printed; ``header`` may hold ``{command}``). On success the
    output is only appended to ``log``: the caller writes it."""
    execute, measure = _RUNTIMES[ctx.target.runtime]
    ctx.notes.clear()
    try:
        execution = execute(ctx)
    except CommandTimeout as exc:
        write_text(raw_log, "".join(log) + "".join(ctx.notes)
                   + header.format(command="(timed out)") + exc.partial.output)
        raise _timed_out(exc, raw_log) from None
    out = execution.result.stdout + execution.result.stderr
    log.append("".join(ctx.notes) + header.format(command=shlex.join(execution.argv)) + out)
    if execution.result.rc != 0:
        write_text(raw_log, "".join(log))
        what = ctx.target.runtime + (f" ({execution.extra['phase']})"
                                     if "phase" in execution.extra else "")
        raise _crash(ctx, execution.result, raw_log, what)
    try:
        return execution, measure(ctx, execution.result.stdout + "\n" + execution.result.stderr)
    except BenchmarkOutputError as exc:
        write_text(raw_log, "".join(log))
        raise _unreadable(ctx, exc, raw_log) from None


# --------------------------------------------------------------------------- entry point


def _check_request(target: Target, model_path: Path, warmup: int, runs: int) -> None:
    if not target.enabled:
        raise TargetError(
            f"target '{target.name}' is disabled in config (targets.{target.name}.enabled: false)"
        )
    if not model_path.is_file():
        raise FileNotFoundError(f"model to benchmark on target '{target.name}' not found: "
                                f"{model_path}")
    if warmup < 0 or runs < 1:
        raise ValueError(f"warmup must be >= 0 and runs >= 1, got warmup={warmup} runs={runs}")


def _identity(ctx: _Context, measurement: _Measurement) -> dict[str, Any]:
    target = ctx.target
    identity: dict[str, Any] = dict(ctx.transport.identity())
    identity.update(
        runtime=measurement.runtime,
        runtime_version=measurement.runtime_version,
        threads=target.threads,
        delegates=asdict(target.delegates) if target.delegates else None,
        openvino_device=target.device,
    )
    if target.runtime in _OPENVINO_RUNTIMES:
        identity["inference_precision"] = (measurement.tool or {}).get("inference_precision")
    return identity


def run_benchmark(
    target: Target,
    model_path: str | Path,
    raw_log: str | Path,
    warmup: int | None = None,
    runs: int | None = None,
) -> dict[str, Any]:
    """Benchmark ``model_path`` on ``target``; keep the tool's output in ``raw_log``.

    ``warmup``/``runs`` default to the target's config. Returns a JSON-ready dict: ``target``,
    ``transport``, ``runtime``, ``model``, ``identity`` (device model, OS, kernel, runtime and
    version, threads, delegate flags), ``settings``, ``stats`` (LatencyStats fields, ms),
    ``samples_ms`` (when the runtime gives them), ``tool`` (parsed tool output), ``command``,
    ``pushed`` (files copied this time) and ``raw_log``.

    The job holds the device's lock throughout (:func:`device_session`).

    Raises:
        TargetError: the target is disabled or unreachable, a command timed out, or the tool
            failed or crashed (the message names the target, the status or signal and the raw
            log).
        BenchmarkOutputError: the tool's output lacks a field (named, with the raw log).
        ConfigError: a configured binary does not exist.
    """
    model = Path(model_path)
    warmup = target.warmup if warmup is None else warmup
    runs = target.runs if runs is None else runs
    _check_request(target, model, warmup, runs)
    with device_session(target, [model]) as (transport, waited):
        ctx = _Context(target, transport, model, warmup, runs)
        log: list[str] = []
        execution, measurement = _run_tool(ctx, raw_log, log)
        write_text(raw_log, "".join(log))
        identity = _identity(ctx, measurement)
    identity["lock_wait_s"] = waited
    return {
        "target": target.name,
        "transport": target.transport,
        "runtime": target.runtime,
        "model": str(model),
        "model_sha256": local_sha256(model),
        "identity": identity,
        "settings": {"warmup": measurement.warmup if measurement.warmup is not None else warmup,
                     "runs": runs, "threads": target.threads},
        "stats": measurement.stats.to_dict(),
        "samples_ms": measurement.samples_ms,
        "tool": measurement.tool,
        "command": shlex.join(execution.argv),
        "pushed": ctx.pushed,
        "raw_log": str(raw_log),
        **execution.extra,
    }



# --------------------------------------------------------------------------- comparisons


def compare_identity(identity: dict[str, Any], target: Target, runtime: str | None,
                     runtime_version: str | None, threads_used: int | None,
                     inference_precision: str | None = None) -> dict[str, Any]:
    """A comparison's identity: the machine's, plus runtime and version, the threads asked for
    (``threads``) and actually used (``threads_used``; the runtime's report where it gives one),
    delegates and OpenVINO device; on an OpenVINO target also the precision the compiled model
    computes in (``inference_precision``, the runtime's report; None where it gives none)."""
    out = {**identity, "runtime": runtime, "runtime_version": runtime_version,
           "threads": target.threads, "threads_used": threads_used,
           "delegates": asdict(target.delegates) if target.delegates else None,
           "openvino_device": target.device}
    if target.runtime in _OPENVINO_RUNTIMES:
        out["inference_precision"] = inference_precision
    if target.runtime == "trtexec":
        out["precision"] = "fp16" if target.fp16 else "fp32"
    return out


def _check_compare(target: Target, models: Sequence[Path]) -> None:
    for model in models:
        _check_request(target, model, 0, 1)


def compare_with_runner(target: Target, models: Sequence[str | Path], raw_log: str | Path, *,
                        warmup: int, seconds: float, block_runs: int, blocks_per_group: int,
                        min_groups: int, max_groups: int, seed: int,
                        transport: Transport | None = None
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``remote_runner.py --compare`` on a litert-python/openvino target (staged like
    :func:`run_benchmark`); keep its output in ``raw_log``.

    Returns ``(raw, identity)``: the runner's
    :func:`~edgeprune.measurement.devices.remote_runner.interleave`
    output and :func:`compare_identity`. The command may run ``seconds`` beyond the target's
    ``timeout_s``. The caller holds the device (:func:`device_session`; ``transport`` is its).
    """
    paths = [Path(m) for m in models]
    _check_compare(target, paths)
    assert target.python is not None
    ctx = _Context(target, transport or transport_for(target), paths[0], warmup, 1)
    argv = [*_runner_head(ctx), "--compare"]
    for path in paths:
        argv += ["--model", _stage_model(replace(ctx, model=path))]
    argv += ["--warmup", str(warmup), "--seconds", str(seconds), "--block-runs", str(block_runs),
             "--blocks-per-group", str(blocks_per_group), "--min-groups", str(min_groups),
             "--max-groups", str(max_groups), "--seed", str(seed), *_runner_flags(target)]
    header = f"$ {shlex.join(argv)}\n"
    try:
        result = ctx.transport.run(argv, timeout=target.timeout_s + seconds)
    except CommandTimeout as exc:
        write_text(raw_log, header + exc.partial.output)
        raise _timed_out(exc, raw_log) from None
    write_text(raw_log, f"{header}{result.stdout}{result.stderr}")
    if result.rc != 0:
        raise _crash(ctx, result, raw_log, "remote_runner.py --compare")
    payload = last_json_line(result.stdout, "interleave")
    if payload is None or not isinstance(payload["interleave"], dict):
        raise _unreadable(ctx, BenchmarkOutputError(
            "remote_runner.py printed no comparison result line", field="interleave"), raw_log)
    identity = compare_identity(dict(ctx.transport.identity()), target, payload.get("runtime"),
                                payload.get("runtime_version"), payload.get("threads_used"),
                                payload.get("inference_precision"))
    identity.update(command=shlex.join(argv), pushed=ctx.pushed, python=payload.get("python"))
    return payload["interleave"], identity


def interleave_tool(target: Target, models: Sequence[str | Path], raw_log: str | Path, *,
                    warmup: int, runs: int, seconds: float, min_groups: int, max_groups: int,
                    seed: int, clock: Callable[[], float] = time.monotonic,
                    progress: Callable[[int, float], None] | None = None,
                    transport: Transport | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Interleave ``benchmark_model``/``benchmark_app`` invocations of several models.

    Each group runs every model once (one invocation of ``warmup`` + ``runs`` runs, a fresh
    process and so a fresh instance) in a seeded random order; the tool's median (its average
    where a build prints no median) is the group's single block median. Groups repeat until
    ``seconds`` of ``clock`` (s) passed and ``min_groups`` ran, or ``max_groups`` ran. Every
    invocation's output goes to ``raw_log``. Returns ``(raw, identity)`` in the format of
    :func:`~edgeprune.measurement.devices.remote_runner.interleave`.
    """
    paths = [Path(m) for m in models]
    _check_compare(target, paths)
    base = _Context(target, transport or transport_for(target), paths[0], warmup, runs)
    contexts = [replace(base, model=path) for path in paths]
    rng = random.Random(seed)
    log: list[str] = []
    groups: list[dict[str, Any]] = []
    statistics: set[str] = set()
    measurement: _Measurement | None = None
    start = clock()
    elapsed = 0.0
    while len(groups) < max_groups and (len(groups) < min_groups or elapsed < seconds):
        order = list(range(len(paths)))
        rng.shuffle(order)
        medians = [0.0] * len(paths)
        for i in order:
            header = f"==> group {len(groups)} model {i}: {{command}}\n"
            _, measurement = _run_tool(contexts[i], raw_log, log, header)
            stats = measurement.stats
            statistics.add("median" if stats.median_ms is not None else "mean")
            medians[i] = stats.median_ms if stats.median_ms is not None else stats.mean_ms
        groups.append({"instance_order": order, "block_orders": [order],
                       "block_medians_ms": [medians]})
        elapsed = clock() - start
        if progress is not None:
            progress(len(groups), elapsed)
    write_text(raw_log, "".join(log))
    assert measurement is not None
    raw = {"seed": seed, "block_runs": runs, "blocks_per_group": 1,
           "warmup": measurement.warmup if measurement.warmup is not None else warmup,
           "seconds": seconds, "min_groups": min_groups, "max_groups": max_groups,
           "elapsed_s": elapsed, "block_statistic": "/".join(sorted(statistics)),
           "groups": groups}
    identity = compare_identity(dict(base.transport.identity()), target, measurement.runtime,
                                measurement.runtime_version, target.threads,
                                (measurement.tool or {}).get("inference_precision"))
    identity.update(pushed=base.pushed)
    return raw, identity
