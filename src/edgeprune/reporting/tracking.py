"""MLflow tracking that survives ``snakemake --cores 8``.

Each job collects its params, metric histories and artifacts while it works and logs them in one
short burst at the end. With the default sqlite backend that burst holds an exclusive file lock
beside the database, so parallel jobs never race on schema creation, experiment creation or
writes ("database is locked"); lock-free remote servers (``MLFLOW_TRACKING_URI=http://…``) are
used as they are. Runs of one Snakemake invocation share the tag ``edgeprune.dag_run``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAG_RUN_ENV = "EDGEPRUNE_DAG_RUN"


@dataclass
class RunRecord:
    """What one job reports to MLflow."""

    experiment: str
    run_name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, Sequence[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)


def resolve_uri(default_db: str | os.PathLike[str]) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an sqlite database at ``default_db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(default_db).resolve()}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat_params(v, f"{key}."))
        else:
            s = str(v)
            out[key] = s if len(s) <= 6000 else s[:5997] + "..."
    return out


def _log(uri: str, record: RunRecord, artifact_root: Path) -> str:
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(record.experiment)
    if exp is None:
        location = None
        if _sqlite_path(uri) is not None:
            location = (artifact_root / record.experiment).resolve().as_uri()
        exp_id = client.create_experiment(record.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    tags = {**record.tags, "mlflow.runName": record.run_name}
    dag_run = os.environ.get(DAG_RUN_ENV)
    if dag_run:
        tags["edgeprune.dag_run"] = dag_run
    run = client.create_run(exp_id, run_name=record.run_name, tags=tags)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in record.metrics.items()]
    for k, values in record.history.items():
        metrics += [Metric(k, float(v), now, i) for i, v in enumerate(values)]
    params = [Param(k, v) for k, v in _flat_params(record.params).items()]
    for i in range(0, max(len(metrics), len(params), 1), 100):
        client.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100])
    for path in record.artifacts:
        if Path(path).is_dir():
            client.log_artifacts(rid, str(path), artifact_path=Path(path).name)
        elif Path(path).exists():
            client.log_artifact(rid, str(path))
    client.set_terminated(rid, "FINISHED")
    del mlflow
    return rid


def log_run(record: RunRecord, default_db: str | os.PathLike[str],
            artifact_root: str | os.PathLike[str], retries: int = 5) -> str:
    """Log ``record`` as one finished MLflow run; returns the run id.

    sqlite backends are written under an exclusive lock (``<db>.lock``); transient failures are
    retried with exponential backoff.
    """
    uri = resolve_uri(default_db)
    db = _sqlite_path(uri)
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            if db is None:
                return _log(uri, record, Path(artifact_root))
            with _file_lock(db.with_name(db.name + ".lock")):
                return _log(uri, record, Path(artifact_root))
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for one lock race
            if attempt == retries or "locked" not in str(exc).lower():
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
