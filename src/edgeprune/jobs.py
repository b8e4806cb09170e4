"""Run one workflow job: log to the job's log file (and stderr), turn user errors into one clear
line instead of a traceback, and exit non-zero so Snakemake removes the job's outputs."""

from __future__ import annotations

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
    log(f"done {name} in {time.perf_counter() - log.t0:.1f}s")
    log.close()
    return result


def run_tracked(smk: Any, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Adapter for ``workflow/scripts``: run stage ``fn`` for the Snakemake job ``smk``.

    Passes ``config`` and ``log``; if the stage returns a tracking RunRecord and MLflow is enabled,
    the run is logged (under the sqlite lock) before the job ends.
    """
    from edgeprune.reporting.tracking import RunRecord, log_run

    wc = dict(smk.wildcards.items()) if hasattr(smk.wildcards, "items") else {}
    name = smk.rule + "".join(f"[{k}={v}]" for k, v in wc.items())
    log_path = smk.log[0] if len(smk.log) else None

    def stage(log: JobLog, **kw: Any) -> Any:
        result = fn(config=smk.config, log=log, **kw)
        ml = smk.config.get("mlflow", {})
        if isinstance(result, RunRecord) and ml.get("enabled", True):
            if not ml.get("log_models", True):
                result.artifacts = [a for a in result.artifacts if a.suffix == ".json"]
            rid = log_run(result, ml.get("db", "results/mlflow.db"),
                          ml.get("artifacts", "results/mlartifacts"))
            log(f"MLflow run {result.run_name} -> {rid}")
        return result

    echo = capture_stderr(log_path) if log_path else sys.stderr
    return run_job(name, log_path, stage, echo=echo, **kwargs)
