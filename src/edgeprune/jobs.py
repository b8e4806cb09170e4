"""Run one workflow job: log to the job's log file (and stderr), turn user errors (and a full
disk) into one clear line instead of a traceback, and exit non-zero so Snakemake removes the
job's outputs. Tracked jobs are MLflow runs (:mod:`edgeprune.reporting.tracking`) whose failures
never fail the job."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from edgeprune.errors import EdgepruneError

Log = Callable[[str], None]


class JobLog:
    """Timestamped lines to a log file, echoed to stderr with the job's name."""

    def __init__(self, path: str | Path | None, name: str, echo: TextIO | None = sys.stderr):
        self.name = name
        self.echo = echo
        self.t0 = time.perf_counter()
        self.fh = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a", buffering=1)

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - self.t0:6.1f}s] {msg}"
        if self.fh:
            self.fh.write(line + "\n")
        if self.echo:
            print(f"{self.name}: {msg}", file=self.echo, flush=True)

    def progress(self, label: str, every: int = 10) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback that logs about ``every`` times per task."""

        def cb(done: int, total: int) -> None:
            step = max(1, total // every)
            if done == total or done % step == 0:
                self(f"{label}: {done}/{total}")

        return cb

    def close(self) -> None:
        if self.fh:
            self.fh.close()


def capture_stderr(log_path: str | Path) -> TextIO:
    """Send this process's file descriptor 2 (TensorFlow's native messages, warnings,
    unexpected tracebacks) to ``log_path``; return a stream on the original stderr, where the
    job's own progress lines still go."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    console = os.fdopen(os.dup(2), "w", buffering=1)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return console


def run_job(name: str, log_path: str | Path | None, fn: Callable[..., Any], /,
            echo: TextIO | None = sys.stderr, **kwargs: Any) -> Any:
    """Call ``fn(log=JobLog, **kwargs)``; on EdgepruneError log ``error: …`` and exit 1."""
    log = JobLog(log_path, name, echo=echo)
    log(f"start {name}")
    try:
        result = fn(log=log, **kwargs)
    except EdgepruneError as exc:
        log(f"error: {exc}")
        log.close()
        raise SystemExit(1) from None
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        log(f"error: {full}")
        log.close()
        raise SystemExit(1) from None
    log(f"done {name} in {time.perf_counter() - log.t0:.1f}s")
    log.close()
    return result


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def disk_full(exc: BaseException) -> str | None:
    """A one-line message when ``exc`` (or what caused it) is a full disk or quota, else None.

    Libraries wrap the OSError (Keras, h5py, TensorFlow's file writers), so the cause chain and
    the message are both checked."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            where = f" writing {seen.filename}" if seen.filename else ""
            return f"no space left on the device{where} ({os.strerror(seen.errno)}); free " \
                   "space and rerun: finished jobs' outputs are kept"
        if "No space left on device" in str(seen):
            return f"no space left on the device ({' '.join(str(seen).split())[:200]}); " \
                   "free space and rerun: finished jobs' outputs are kept"
        seen = seen.__cause__ or seen.__context__
    return None


def _tracked_job(smk: Any, name: str, log_path: str | None) -> Any:
    """The MLflow run of Snakemake job ``smk`` (None when tracking is disabled)."""
    from edgeprune.reporting.tracking import (
        DAG_RUN_ENV,
        PARENT_RUN_ENV,
        TAG_DAG_RUN,
        TAG_JOB_KEY,
        TAG_PARENT,
        TAG_ROLE,
        JobRun,
        Tracking,
        git_source,
        job_key,
        new_dag_run,
    )

    tracking = Tracking.from_config(smk.config)
    if tracking is None:
        return None
    wc = dict(smk.wildcards.items()) if hasattr(smk.wildcards, "items") else {}
    params = dict(smk.params.items()) if hasattr(smk.params, "items") else {}
    dag_run = os.environ.get(DAG_RUN_ENV) or new_dag_run()
    key = job_key(smk.rule, wc, params, dag_run)
    tags = {TAG_JOB_KEY: key, TAG_DAG_RUN: dag_run, TAG_ROLE: "job",
            "mlflow.source.name": smk.rule, "mlflow.source.type": "JOB",
            "edgeprune.rule": smk.rule, "edgeprune.wildcards": json.dumps(wc, sort_keys=True),
            **git_source(getattr(smk, "scriptdir", None) or Path(__file__).parent)}
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        tags[TAG_PARENT] = parent
    return JobRun(tracking, key=key, name=name, tags=tags, log_path=log_path)


def _returns_record(fn: Callable[..., Any]) -> bool:
    """Whether stage ``fn`` is declared to return a tracking RunRecord."""
    from edgeprune.reporting.tracking import RunRecord

    return getattr(fn, "__annotations__", {}).get("return") in ("RunRecord", RunRecord)


def run_tracked(smk: Any, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Adapter for ``workflow/scripts``: run stage ``fn`` for the Snakemake job ``smk``.

    Passes ``config`` and ``log``. A stage that returns a tracking RunRecord is an MLflow run
    (when ``mlflow.enabled``): created RUNNING when the job starts, filled in and ended when
    the stage returns, FAILED when it raises. MLflow trouble is a one-line warning, never a
    failed job: the run is then recorded as pending and logged by the next invocation.
    """
    from edgeprune.reporting.tracking import RunRecord

    wc = dict(smk.wildcards.items()) if hasattr(smk.wildcards, "items") else {}
    name = smk.rule + "".join(f"[{k}={v}]" for k, v in wc.items())
    log_path = smk.log[0] if len(smk.log) else None

    def stage(log: JobLog, **kw: Any) -> Any:
        job = _tracked_job(smk, name, log_path) if _returns_record(fn) else None
        if job is not None:
            job.start(log)
        try:
            result = fn(config=smk.config, log=log, **kw)
        except BaseException:
            if job is not None:
                job.fail(log)
            raise
        if job is not None and isinstance(result, RunRecord):
            rid = job.finish(result, log)
            if rid:
                log(f"MLflow run {result.run_name} -> {rid}")
        return result

    echo = capture_stderr(log_path) if log_path else sys.stderr
    return run_job(name, log_path, stage, echo=echo, **kwargs)
