"""MLflow tracking that never costs a finished job its outputs.

One ``snakemake`` invocation is a *parent* run (tag ``edgeprune.role = invocation``, created by
``onstart``); every job is a *child* run (``mlflow.parentRunId``) created when the job starts, so
its start and end times are the job's own, and ended when the job has written its outputs. All
runs of one invocation share the tag ``edgeprune.dag_run``; each job run carries the key
``edgeprune.job_key`` (rule, wildcards, the job's params, dag run), looked up before a run is
created, so a retried or replayed log never creates a second run.

Faults never fail a job:

* Store access is bounded: the sqlite file lock is waited for at most ``mlflow.retry_seconds``,
  HTTP stores get a bounded retry count and timeout, and failed attempts are retried with
  exponential backoff within the same budget.
* When the budget is spent, the run is written to ``results/mlflow_pending/<job_key>.json`` with
  a one-line warning; the next invocation's ``onstart`` (or ``python -m
  edgeprune.reporting.tracking sync``) logs it.
* A run whose job is killed keeps a marker in ``results/mlflow_pending/open/``; the next
  invocation ends such runs as KILLED (end time: the job log's last write).

Vocabulary (README "MLflow"): ``precision`` (float32 / float16 / int8 / sparse), ``format``
(keras / tflite / openvino), ``sparsity_target`` (param) and ``sparsity_reached`` (metric),
``fps_inference`` and ``fps_app``, and ``<stage>_seconds`` metrics (``train_seconds``,
``prune_seconds``, ``convert_seconds``, ``evaluate_seconds``, ``app_seconds``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgeprune.fileio import TEMP_MARK, read_json, write_json

DAG_RUN_ENV = "EDGEPRUNE_DAG_RUN"
PARENT_RUN_ENV = "EDGEPRUNE_PARENT_RUN"
#: Where pending runs (``<job_key>.json``) and open-run markers (``open/``) live, relative to
#: the workflow's working directory.
STATE_DIR = Path("results/mlflow_pending")
DEFAULT_RETRY_SECONDS = 60.0

TAG_DAG_RUN = "edgeprune.dag_run"
TAG_JOB_KEY = "edgeprune.job_key"
TAG_ROLE = "edgeprune.role"
TAG_MODEL_SHA = "edgeprune.model_sha256"
TAG_SOURCE_SHA = "edgeprune.source_sha256"
TAG_SOURCE_RUN = "edgeprune.source_run"
TAG_MLFLOW_MODEL = "edgeprune.mlflow_model"
TAG_PARENT = "mlflow.parentRunId"

T = TypeVar("T")


@dataclass
class DatasetInfo:
    """The dataset a run read, for ``log_input``: name, content digest, split sizes."""

    name: str
    digest: str
    source: str
    splits: dict[str, int]
    context: str = "train"


@dataclass
class KerasModel:
    """A Keras model file to log as an MLflow model (pyfunc) with a tensor signature."""

    path: Path
    files: list[Path]
    inputs: list[tuple[str, list[int]]]
    outputs: list[tuple[str, list[int]]]


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
    #: the model file this job wrote (lineage: later runs point back here by its checksum)
    model: Path | None = None
    #: the model file this job read (tag ``edgeprune.source_run``: the run that wrote it)
    source_model: Path | None = None
    dataset: DatasetInfo | None = None
    keras_model: KerasModel | None = None


def keras_model(model: Any, path: str | Path, files: Sequence[str | Path] = ()) -> KerasModel:
    """Describe an in-memory Keras ``model`` saved at ``path`` for :class:`RunRecord`: the
    signature comes from its input and output shapes (no inference run)."""

    def specs(tensors: Any) -> list[tuple[str, list[int]]]:
        return [(str(t.name).split(":")[0].split("/")[0],
                 [-1 if d is None else int(d) for d in t.shape]) for t in tensors]

    return KerasModel(Path(path), [Path(f) for f in files], specs(model.inputs),
                      specs(model.outputs))


@dataclass
class Tracking:
    """Where runs go and how long a job may wait for the store."""

    uri: str
    artifact_root: Path
    experiment: str
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    log_models: bool = True
    state_dir: Path = STATE_DIR

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Tracking | None:
        """The ``mlflow`` config section; None when tracking is disabled."""
        ml = config.get("mlflow") or {}
        if not ml.get("enabled", True):
            return None
        return cls(uri=resolve_uri(ml.get("db", "results/mlflow.db"), ml.get("tracking_uri")),
                   artifact_root=Path(ml.get("artifacts", "results/mlartifacts")),
                   experiment=str(ml.get("experiment", "edgeprune")),
                   retry_seconds=float(ml.get("retry_seconds", DEFAULT_RETRY_SECONDS)),
                   log_models=bool(ml.get("log_models", True)))


def resolve_uri(default_db: str | os.PathLike[str], configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``configured`` (``mlflow.tracking_uri``), else an
    sqlite database at ``default_db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        return uri
    return f"sqlite:///{Path(default_db).resolve()}"


def new_dag_run() -> str:
    """A fresh invocation id: time stamp plus random suffix."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def job_key(rule: str, wildcards: Mapping[str, Any], params: Any, dag_run: str) -> str:
    """The idempotency key of one job of one invocation."""
    blob = json.dumps([rule, dict(wildcards), params, dag_run], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_sha(path: str | Path) -> str | None:
    """Checksum of a model: a file, or an OpenVINO ``.xml`` together with its ``.bin``."""
    p = Path(path)
    if not p.is_file():
        return None
    if p.suffix == ".xml" and p.with_suffix(".bin").is_file():
        return hashlib.sha256((sha256_file(p) + sha256_file(p.with_suffix(".bin"))).encode()
                              ).hexdigest()
    return sha256_file(p)


def git_source(where: str | Path) -> dict[str, str]:
    """``mlflow.source.git.commit`` (and ``edgeprune.git_dirty``) of the checkout at ``where``."""
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"mlflow.source.git.commit": commit.stdout.strip(),
            "edgeprune.git_dirty": str(bool(dirty.stdout.strip())).lower()}


# ----------------------------------------------------------------------------- store access


class StoreTimeout(TimeoutError):
    """The tracking store's lock was not free within the retry budget."""


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreTimeout(f"waited {timeout:.0f} s for the MLflow store lock "
                                       f"{path}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _store(tracking: Tracking, timeout: float) -> Iterator[Any]:
    """An MlflowClient, holding the sqlite lock (bounded wait) for file-backed stores."""
    from mlflow.tracking import MlflowClient

    if tracking.uri.startswith(("http://", "https://")):
        # Bounded waits for a tracking server that is down: a few attempts, not minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(5, int(timeout))))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    db = _sqlite_path(tracking.uri)
    if db is None:
        yield MlflowClient(tracking_uri=tracking.uri)
        return
    with _file_lock(db.with_name(db.name + ".lock"), timeout):
        _ensure_sqlite_db(db)
        yield MlflowClient(tracking_uri=tracking.uri)


def _ensure_sqlite_db(db: Path) -> None:
    """Create a missing (or empty) sqlite store under a temporary name and rename it into
    place: MLflow builds its schema in many statements, and a store killed half-way through
    could not be opened again ("table ... already exists"). Called under the store lock."""
    if db.is_file() and db.stat().st_size > 0:
        return
    from mlflow.tracking import MlflowClient

    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}{TEMP_MARK}init")
    for stale in (tmp, tmp.with_name(tmp.name + "-journal")):
        stale.unlink(missing_ok=True)
    MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()  # builds the schema
    db.with_name(db.name + "-journal").unlink(missing_ok=True)  # of an empty file: nothing
    os.replace(tmp, db)


def _retry(fn: Callable[[float], T], budget: float) -> T:
    """``fn(remaining_seconds)``, retried with exponential backoff until ``budget`` is spent."""
    deadline = time.monotonic() + budget
    delay = 0.5
    while True:
        try:
            return fn(max(1.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - any store failure is retried, then made pending
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _experiment_id(client: Any, tracking: Tracking, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if _sqlite_path(tracking.uri) is not None:
        location = (tracking.artifact_root / name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _find_run(client: Any, exp_id: str, key: str, value: str) -> Any | None:
    runs = client.search_runs([exp_id], filter_string=f"tags.`{key}` = '{value}'",
                              max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def _add_parent(client: Any, exp_id: str, tags: dict[str, str]) -> None:
    """Point a job's ``tags`` at its invocation's parent run when the job was not told its id
    (``EDGEPRUNE_PARENT_RUN``): found by the shared ``edgeprune.dag_run``."""
    if TAG_PARENT in tags or tags.get(TAG_ROLE) != "job" or not tags.get(TAG_DAG_RUN):
        return
    runs = client.search_runs([exp_id], filter_string=(
        f"tags.`{TAG_ROLE}` = 'invocation' and tags.`{TAG_DAG_RUN}` = '{tags[TAG_DAG_RUN]}'"),
        max_results=1)
    if runs:
        tags[TAG_PARENT] = runs[0].info.run_id


def _get_run(client: Any, rid: str | None) -> Any | None:
    """The run ``rid``, or None when it is not in this store."""
    if not rid:
        return None
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(rid)
    except MlflowException:
        return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


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


# ----------------------------------------------------------------------------- one job's run


@dataclass
class JobRun:
    """The MLflow run of one workflow job: created at :meth:`start`, ended at :meth:`finish`."""

    tracking: Tracking
    key: str
    name: str
    tags: dict[str, str]
    log_path: str | None = None
    run_id: str | None = None
    start_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def marker(self) -> Path:
        return self.tracking.state_dir / "open" / f"{self.key}.json"

    @property
    def pending(self) -> Path:
        return self.tracking.state_dir / f"{self.key}.json"

    def _write_marker(self) -> None:
        write_json(self.marker, {"key": self.key, "run_id": self.run_id, "uri": self.tracking.uri,
                                 "experiment": self.tracking.experiment,
                                 "dag_run": self.tags.get(TAG_DAG_RUN),
                                 "log": self.log_path, "start_ms": self.start_ms})

    def start(self, log: Callable[[str], None]) -> None:
        """Create (or, for a retried job, reopen) the run as RUNNING; never raises."""
        try:
            self._write_marker()  # before the run exists: a kill right after still leaves a trace
            self.run_id = _retry(self._open, min(self.tracking.retry_seconds, 30.0))
            self._write_marker()
        except Exception as exc:  # noqa: BLE001 - the run is created at the end instead
            log(f"warning: MLflow run not created at job start ({_one_line(exc)}); "
                "it will be created when the job ends")

    def _open(self, timeout: float) -> str:
        with _store(self.tracking, timeout) as client:
            exp_id = _experiment_id(client, self.tracking, self.tracking.experiment)
            found = _find_run(client, exp_id, TAG_JOB_KEY, self.key)
            if found is not None:
                if found.info.status != "FINISHED":
                    client.update_run(found.info.run_id, status="RUNNING")
                return found.info.run_id
            _add_parent(client, exp_id, self.tags)
            run = client.create_run(exp_id, start_time=self.start_ms, run_name=self.name,
                                    tags={**self.tags, "mlflow.runName": self.name})
            return run.info.run_id

    def fail(self, log: Callable[[str], None]) -> None:
        """The job raised: end its run FAILED (short wait; else the next invocation ends it)."""
        if self.run_id is None:
            return
        try:
            _retry(lambda t: _terminate(self.tracking, self.run_id or "", "FAILED",
                                        int(time.time() * 1000), t),
                   min(self.tracking.retry_seconds, 10.0))
            self.marker.unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - the job's own error is what matters
            log(f"warning: MLflow run {self.run_id} not marked FAILED ({_one_line(exc)})")

    def finish(self, record: RunRecord, log: Callable[[str], None]) -> str | None:
        """Log ``record`` into the run and end it FINISHED; on failure record it as pending
        (one-line warning) and return None. Never raises."""
        payload = self.payload(record)
        try:
            rid = _retry(lambda t: log_payload(self.tracking, payload, t),
                         self.tracking.retry_seconds)
        except Exception as exc:  # noqa: BLE001 - the outputs stay; the run is logged later
            try:
                write_json(self.pending, payload)
                where = f"recorded in {self.pending}"
            except OSError as err:
                where = f"and could not be recorded ({_one_line(err)})"
            log(f"warning: MLflow run {record.run_name} not logged after "
                f"{self.tracking.retry_seconds:g} s ({_one_line(exc)}); {where}, the next "
                "snakemake invocation logs it")
            return None
        self.marker.unlink(missing_ok=True)
        return rid

    def payload(self, record: RunRecord) -> dict[str, Any]:
        """Everything :func:`log_payload` needs, as JSON (the pending file's content)."""
        tags = {**self.tags, **{k: str(v) for k, v in record.tags.items()}}
        sha = model_sha(record.model) if record.model else None
        if sha:
            tags[TAG_MODEL_SHA] = sha
        source_sha = model_sha(record.source_model) if record.source_model else None
        if source_sha:
            tags[TAG_SOURCE_SHA] = source_sha
        keras = record.keras_model if self.tracking.log_models else None
        artifacts = [str(a) for a in record.artifacts
                     if self.tracking.log_models or Path(a).suffix == ".json"]
        if keras is not None:  # the Keras file travels inside the MLflow model, not twice
            artifacts = [a for a in artifacts if Path(a) != keras.path]
        return {
            "version": 1, "key": self.key, "run_id": self.run_id, "uri": self.tracking.uri,
            "artifact_root": str(self.tracking.artifact_root.resolve()),
            "experiment": record.experiment, "run_name": record.run_name,
            "start_ms": self.start_ms, "end_ms": int(time.time() * 1000),
            "tags": tags, "params": _flat_params(record.params),
            "metrics": {k: float(v) for k, v in record.metrics.items()},
            "history": {k: [float(x) for x in v] for k, v in record.history.items()},
            "artifacts": artifacts,
            "dataset": asdict(record.dataset) if record.dataset else None,
            "keras_model": asdict(keras) if keras else None,
        }


def log_payload(tracking: Tracking, payload: Mapping[str, Any], timeout: float) -> str:
    """Log one payload idempotently: the run is found by its job key (or the id it was
    created with), filled in, and ended FINISHED with the job's end time."""
    from mlflow.entities import Metric, Param

    with _store(tracking, timeout) as client:
        exp_id = _experiment_id(client, tracking, payload["experiment"])
        run = _get_run(client, payload.get("run_id"))
        if run is None:
            run = _find_run(client, exp_id, TAG_JOB_KEY, payload["key"])
        if run is not None and run.info.status == "FINISHED" \
                and run.data.tags.get("edgeprune.logged") == "true":
            return run.info.run_id
        tags = dict(payload["tags"])
        if run is None or TAG_PARENT not in run.data.tags:
            _add_parent(client, exp_id, tags)
        if run is None:
            run = client.create_run(exp_id, start_time=payload["start_ms"],
                                    run_name=payload["run_name"], tags=tags)
        rid = run.info.run_id
        client.update_run(rid, name=payload["run_name"])
        source_sha = tags.get(TAG_SOURCE_SHA)
        if source_sha:
            source = _find_run(client, exp_id, TAG_MODEL_SHA, source_sha)
            if source is not None and source.info.run_id != rid:
                tags[TAG_SOURCE_RUN] = source.info.run_id
        ts = payload["end_ms"]
        metrics = [Metric(k, v, ts, 0) for k, v in payload["metrics"].items()]
        for k, values in payload["history"].items():
            metrics += [Metric(k, v, ts, i) for i, v in enumerate(values)]
        params = [Param(k, v) for k, v in payload["params"].items()]
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, max(len(metrics), len(params), len(run_tags), 1), 100):
            client.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100],
                             tags=run_tags[i:i + 100])
        if payload.get("dataset"):
            _log_dataset(client, rid, payload["dataset"])
        for path in map(Path, payload["artifacts"]):
            if path.is_dir():
                client.log_artifacts(rid, str(path), artifact_path=path.name)
            elif path.exists():
                client.log_artifact(rid, str(path))
        if payload.get("keras_model") and TAG_MLFLOW_MODEL not in run.data.tags:
            model_id = _log_keras(tracking, rid, payload["keras_model"])
            client.set_tag(rid, TAG_MLFLOW_MODEL, model_id)
        client.set_tag(rid, "edgeprune.logged", "true")
        client.set_terminated(rid, "FINISHED", end_time=payload["end_ms"])
        return rid


def _log_dataset(client: Any, rid: str, ds: Mapping[str, Any]) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    entity = Dataset(name=ds["name"], digest=ds["digest"], source_type="local",
                     source=json.dumps({"uri": ds["source"]}),
                     profile=json.dumps({"splits": ds["splits"]}, sort_keys=True))
    client.log_inputs(rid, [DatasetInput(entity, [InputTag("mlflow.data.context",
                                                           ds["context"])])])


def _log_keras(tracking: Tracking, rid: str, km: Mapping[str, Any]) -> str:
    """Log a Keras file as an MLflow pyfunc model of run ``rid``; returns its model id."""
    import mlflow
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    def schema(specs: Sequence[Sequence[Any]]) -> Schema:
        return Schema([TensorSpec(np.dtype(np.float32), tuple(shape), name)
                       for name, shape in specs])

    signature = ModelSignature(inputs=schema(km["inputs"]), outputs=schema(km["outputs"]))
    artifacts = {"keras_model": str(km["path"])}
    artifacts.update({Path(f).name: str(f) for f in km["files"]})
    mlflow.set_tracking_uri(tracking.uri)
    code = Path(__file__).with_name("keras_pyfunc.py")
    with mlflow.start_run(run_id=rid), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "add type hints", "no input example": by design
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code),
                                       artifacts=artifacts, signature=signature,
                                       pip_requirements=_requirements())
    return info.model_id


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("tensorflow", "tf_keras", "numpy"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


# ----------------------------------------------------------------------------- invocations


def start_invocation(tracking: Tracking, dag_run: str, targets: Sequence[str],
                     source: Mapping[str, str]) -> str | None:
    """``onstart``: finish what earlier invocations left (pending runs, killed runs), then
    create this invocation's parent run and export its id to the jobs (``EDGEPRUNE_PARENT_RUN``).
    Never raises: failures are one-line warnings and the jobs log without a parent."""
    sync(tracking, current_dag_run=dag_run)
    job = JobRun(tracking, key=f"invocation-{dag_run}", name=f"snakemake {dag_run}",
                 tags={TAG_DAG_RUN: dag_run, TAG_ROLE: "invocation",
                       "mlflow.source.name": "snakemake", "mlflow.source.type": "PROJECT",
                       TAG_JOB_KEY: f"invocation-{dag_run}",
                       "edgeprune.targets": " ".join(targets)[:5000], **source})
    job.start(lambda msg: print(f"edgeprune: {msg}", file=sys.stderr))
    if job.run_id:
        os.environ[PARENT_RUN_ENV] = job.run_id
    return job.run_id


def end_invocation(tracking: Tracking, dag_run: str, status: str) -> None:
    """``onsuccess`` / ``onerror``: end the parent run (FINISHED or FAILED)."""
    marker = tracking.state_dir / "open" / f"invocation-{dag_run}.json"
    if not marker.is_file():
        return
    rid = read_json(marker).get("run_id")
    try:
        if rid:
            _retry(lambda t: _terminate(tracking, rid, status, int(time.time() * 1000), t),
                   min(tracking.retry_seconds, 30.0))
        marker.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - the next invocation ends it as KILLED
        print(f"edgeprune: warning: parent MLflow run {rid} not ended ({_one_line(exc)})",
              file=sys.stderr)


def _terminate(tracking: Tracking, rid: str, status: str, end_ms: int, timeout: float) -> None:
    with _store(tracking, timeout) as client:
        if client.get_run(rid).info.status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(rid, status, end_time=end_ms)


def sync(tracking: Tracking, current_dag_run: str | None = None) -> dict[str, int]:
    """Log pending runs and end as KILLED the runs of jobs that died (their open markers),
    except those of ``current_dag_run``. Returns counts; never raises."""
    state = tracking.state_dir
    counts = {"logged": 0, "killed": 0, "failed": 0}
    if not state.is_dir():
        return counts
    for path in sorted(state.glob("*.json")):
        try:
            payload = read_json(path)
            rid = _retry(lambda t, p=payload: log_payload(_for(tracking, p), p, t),
                         tracking.retry_seconds)
            path.unlink(missing_ok=True)
            (state / "open" / path.name).unlink(missing_ok=True)
            counts["logged"] += 1
            print(f"edgeprune: pending MLflow run {payload['run_name']} logged ({rid})",
                  file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - kept for the next invocation
            counts["failed"] += 1
            print(f"edgeprune: warning: pending MLflow run {path} not logged "
                  f"({_one_line(exc)}); kept for the next invocation", file=sys.stderr)
    for path in sorted((state / "open").glob("*.json")) if (state / "open").is_dir() else []:
        try:
            marker = read_json(path)
            if current_dag_run and marker.get("dag_run") == current_dag_run:
                continue
            if (state / path.name).is_file():
                continue  # its pending record (kept above) still holds the run
            end_ms = int(path.stat().st_mtime * 1000)
            log_file = marker.get("log")
            if log_file and Path(log_file).is_file():
                end_ms = max(end_ms, int(Path(log_file).stat().st_mtime * 1000))
            _retry(lambda t, m=marker, e=end_ms: _kill(_for(tracking, m), m, e, t),
                   tracking.retry_seconds)
            path.unlink(missing_ok=True)
            counts["killed"] += 1
        except Exception as exc:  # noqa: BLE001 - kept for the next invocation
            counts["failed"] += 1
            print(f"edgeprune: warning: killed MLflow run {path} not ended "
                  f"({_one_line(exc)})", file=sys.stderr)
    if current_dag_run:
        try:
            counts["killed"] += _retry(lambda t: _end_orphans(tracking, current_dag_run, t),
                                       tracking.retry_seconds)
        except Exception as exc:  # noqa: BLE001 - tried again by the next invocation
            counts["failed"] += 1
            print(f"edgeprune: warning: runs of killed invocations not ended "
                  f"({_one_line(exc)})", file=sys.stderr)
    return counts


def _end_orphans(tracking: Tracking, current_dag_run: str, timeout: float) -> int:
    """End as KILLED the RUNNING runs of earlier invocations in this working directory's own
    sqlite store: Snakemake's directory lock lets one invocation at a time work here, so any
    run of another invocation still RUNNING belongs to one that was killed (including runs
    whose open marker a kill left unwritten). Stores elsewhere (a server, a shared file) may
    hold live runs of other working directories and are left to the markers."""
    db = _sqlite_path(tracking.uri)
    if db is None or not db.is_file() or Path.cwd().resolve() not in db.resolve().parents:
        return 0
    ended = 0
    with _store(tracking, timeout) as client:
        exp = client.get_experiment_by_name(tracking.experiment)
        if exp is None:
            return 0
        for run in client.search_runs([exp.experiment_id],
                                      filter_string="attributes.status = 'RUNNING'",
                                      max_results=1000):
            if run.data.tags.get(TAG_DAG_RUN) in (None, current_dag_run):
                continue
            client.set_tag(run.info.run_id, "edgeprune.ended_by",
                           "next invocation (invocation killed)")
            client.set_terminated(run.info.run_id, "KILLED")
            ended += 1
    return ended


def _for(tracking: Tracking, record: Mapping[str, Any]) -> Tracking:
    """``tracking`` pointed at the store the record was meant for."""
    from dataclasses import replace

    uri = record.get("uri") or tracking.uri
    root = Path(record["artifact_root"]) if record.get("artifact_root") else tracking.artifact_root
    return replace(tracking, uri=uri, artifact_root=root)


def _kill(tracking: Tracking, marker: Mapping[str, Any], end_ms: int, timeout: float) -> None:
    with _store(tracking, timeout) as client:
        run = None
        if marker.get("run_id"):
            run = client.get_run(marker["run_id"])
        else:
            exp = client.get_experiment_by_name(marker.get("experiment") or tracking.experiment)
            if exp is not None:
                run = _find_run(client, exp.experiment_id, TAG_JOB_KEY, marker["key"])
        if run is not None and run.info.status in ("RUNNING", "SCHEDULED"):
            client.set_tag(run.info.run_id, "edgeprune.ended_by", "next invocation (job killed)")
            client.set_terminated(run.info.run_id, "KILLED", end_time=end_ms)


def log_run(record: RunRecord, default_db: str | os.PathLike[str],
            artifact_root: str | os.PathLike[str], retry_seconds: float = 300.0) -> str:
    """Log ``record`` as one finished run outside a workflow job (tests, notebooks); raises
    when ``retry_seconds`` of retries (lock wait included) do not get it logged. The run is
    tagged with ``EDGEPRUNE_DAG_RUN`` when that is set."""
    tracking = Tracking(uri=resolve_uri(default_db), artifact_root=Path(artifact_root),
                        experiment=record.experiment, retry_seconds=retry_seconds)
    tags = {}
    dag_run = os.environ.get(DAG_RUN_ENV)
    if dag_run:
        tags[TAG_DAG_RUN] = dag_run
    job = JobRun(tracking, key=uuid.uuid4().hex[:24], name=record.run_name, tags=tags,
                 start_ms=int(time.time() * 1000))
    payload = job.payload(record)
    payload["tags"][TAG_JOB_KEY] = job.key
    return _retry(lambda t: log_payload(tracking, payload, t), tracking.retry_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgeprune.reporting.tracking sync --configfile …``: log pending runs now."""
    import yaml

    ap = argparse.ArgumentParser(prog="python -m edgeprune.reporting.tracking")
    ap.add_argument("command", choices=["sync"])
    ap.add_argument("--configfile", action="append", default=[],
                    help="config file(s) as given to snakemake (default: config/config.yaml)")
    args = ap.parse_args(argv)
    config: dict[str, Any] = {}
    for path in args.configfile or ["config/config.yaml"]:
        ml = (yaml.safe_load(Path(path).read_text()) or {}).get("mlflow") or {}
        config.setdefault("mlflow", {}).update(ml)
    tracking = Tracking.from_config(config)
    if tracking is None:
        print("mlflow.enabled is false: nothing to do")
        return 0
    counts = sync(tracking)
    print(f"{counts['logged']} pending runs logged, {counts['killed']} killed runs ended, "
          f"{counts['failed']} left for later")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
