"""Tests for edgeprune.reporting.tracking: concurrent log_run into one fresh sqlite database (as
parallel
Snakemake jobs do), what a logged run holds, and the MLFLOW_TRACKING_URI override."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_transport import free_port

from edgeprune.jobs import run_job
from edgeprune.reporting.tracking import (
    DAG_RUN_ENV,
    PARENT_RUN_ENV,
    TAG_DAG_RUN,
    TAG_JOB_KEY,
    DatasetInfo,
    JobRun,
    RunRecord,
    StoreTimeout,
    Tracking,
    _file_lock,
    end_invocation,
    keras_model,
    log_payload,
    log_run,
    resolve_uri,
    start_invocation,
    sync,
)

N_PROCESSES = 6
EXPERIMENT = "edgeprune-test"

# Each child logs one record; all of them are started before any is waited for.
_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from edgeprune.reporting.tracking import RunRecord, log_run

    i, db, artifacts, artifact_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    record = RunRecord(
        experiment="__EXPERIMENT__",
        run_name=f"job{i}",
        params={"index": i, "arch": "ssd_squeezenet", "prune": {"scope": "global", "level": i}},
        metrics={"map": 0.1 * i, "size_mb": 1.5 + i},
        history={"loss": [3.0 - i * 0.1, 2.0, 1.0]},
        tags={"stage": "test", "job": str(i)},
        artifacts=[Path(artifact_file)],
    )
    print(json.dumps({"index": i, "run_id": log_run(record, db, artifacts)}))
""").replace("__EXPERIMENT__", EXPERIMENT)


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str = EXPERIMENT) -> list[Any]:
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} missing in {uri}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _no_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(DAG_RUN_ENV, raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)  # start_invocation sets it


def test_parallel_processes_each_log_one_run(tmp_path: Path) -> None:
    db = tmp_path / "mlruns" / "mlflow.db"
    artifacts = tmp_path / "artifacts"
    artifact_file = tmp_path / "model.json"
    artifact_file.write_text('{"ok": true}')
    env = _child_env(**{DAG_RUN_ENV: "dag-42"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(i), str(db), str(artifacts), str(artifact_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i in range(N_PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    run_ids = {r["run_id"] for r in results}
    assert len(run_ids) == N_PROCESSES

    uri = f"sqlite:///{db}"
    runs = _runs(uri)
    assert len(runs) == N_PROCESSES
    assert {r.info.run_id for r in runs} == run_ids
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {f"job{i}" for i in range(N_PROCESSES)}
    client = _client(uri)
    for i in range(N_PROCESSES):
        run = by_name[f"job{i}"]
        assert run.info.status == "FINISHED"
        assert run.data.params == {"index": str(i), "arch": "ssd_squeezenet",
                                   "prune.scope": "global", "prune.level": str(i)}
        assert run.data.metrics["map"] == pytest.approx(0.1 * i)
        assert run.data.metrics["size_mb"] == pytest.approx(1.5 + i)
        assert run.data.metrics["loss"] == pytest.approx(1.0)  # latest step of the history
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (0, pytest.approx(3.0 - i * 0.1)), (1, 2.0), (2, 1.0)]
        tags = run.data.tags
        assert tags["stage"] == "test" and tags["job"] == str(i)
        assert tags["mlflow.runName"] == f"job{i}"
        assert tags["edgeprune.dag_run"] == "dag-42"
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.json"]

    # One experiment, created once, with artifacts under the given root.
    with sqlite3.connect(db) as con:
        names = [row[0] for row in con.execute("SELECT name FROM experiments")]
        n_runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert names.count(EXPERIMENT) == 1
    assert n_runs == N_PROCESSES
    logged = list((artifacts / EXPERIMENT).glob("*/artifacts/model.json"))
    assert len(logged) == N_PROCESSES


def test_resolve_uri_defaults_to_sqlite_at_absolute_path(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_uri("results/mlflow.db") == f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"


def test_tracking_uri_env_overrides_default_db_and_reuses_experiment(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    default_db = tmp_path / "default.db"
    other_db = tmp_path / "elsewhere" / "other.db"
    other_db.parent.mkdir()
    uri = f"sqlite:///{other_db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert resolve_uri(default_db) == uri
    record = RunRecord(experiment="override", run_name="one",
                       params={"a": 1}, metrics={"m": 2.5}, tags={"t": "x"})
    run_id = log_run(record, default_db, tmp_path / "artifacts")
    assert not default_db.exists()
    runs = _runs(uri, "override")
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].data.params == {"a": "1"}
    assert runs[0].data.metrics == {"m": 2.5}
    assert runs[0].data.tags["t"] == "x"
    assert "edgeprune.dag_run" not in runs[0].data.tags
    # The sqlite lock file sits beside the database that was actually used.
    assert (other_db.parent / "other.db.lock").exists()
    # A second run reuses the experiment; over-long parameter values are truncated.
    second = log_run(RunRecord(experiment="override", run_name="two",
                               params={"long": "x" * 7000}), default_db, tmp_path / "artifacts")
    runs = {r.info.run_id: r for r in _runs(uri, "override")}
    assert set(runs) == {run_id, second}
    long = runs[second].data.params["long"]
    assert len(long) == 6000 and long.endswith("...")
    assert len(_client(uri).search_experiments()) == 2  # "Default" and "override"


# ----------------------------------------------------------------------------- job runs


def _tracking(tmp_path: Path, **kw: Any) -> Tracking:
    return Tracking(uri=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}",
                    artifact_root=tmp_path / "art", experiment=EXPERIMENT,
                    state_dir=tmp_path / "pending", **{"retry_seconds": 5.0, **kw})


def _job(tracking: Tracking, key: str, dag_run: str = "dag-1", log_path: Path | None = None,
         **tags: str) -> JobRun:
    return JobRun(tracking, key=key, name=f"rule[{key}]", log_path=str(log_path or ""),
                  tags={TAG_JOB_KEY: key, TAG_DAG_RUN: dag_run, "edgeprune.role": "job",
                        "mlflow.source.name": "rule", **tags})


def _runs_with_key(uri: str, key: str) -> list[Any]:
    client = _client(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], f"tags.`{TAG_JOB_KEY}` = '{key}'")


class Lines(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)


def test_job_run_times_lineage_dataset_and_parent(tmp_path: Path) -> None:
    tracking = _tracking(tmp_path)
    model = tmp_path / "base.keras"
    model.write_bytes(b"weights-1")
    parent = start_invocation(tracking, "dag-1", ["results/table2.csv"],
                              {"mlflow.source.git.commit": "abc"})
    assert parent is not None and os.environ[PARENT_RUN_ENV] == parent
    log = Lines()
    train = _job(tracking, "train-key")
    train.start(log)
    assert train.run_id is not None and train.marker.is_file()
    assert _client(tracking.uri).get_run(train.run_id).info.status == "RUNNING"
    time.sleep(0.3)  # the job "works"
    dataset = DatasetInfo("synthetic:SYNTH/train", "d1g35t", "results/data/VOCdevkit",
                          {"train": 32, "val": 8, "test": 12})
    rid = train.finish(RunRecord(experiment=EXPERIMENT, run_name="arch/base/train",
                                 params={"precision": "float32"}, metrics={"train_seconds": 0.3},
                                 model=model, dataset=dataset, artifacts=[model]), log)
    assert rid == train.run_id and not train.marker.exists() and log == []
    prune = _job(tracking, "prune-key")
    prune.start(log)
    pruned = tmp_path / "prune50.keras"
    pruned.write_bytes(b"weights-2")
    prune_id = prune.finish(RunRecord(experiment=EXPERIMENT, run_name="arch/prune50/prune",
                                      source_model=model, model=pruned), log)
    end_invocation(tracking, "dag-1", "FINISHED")

    client = _client(tracking.uri)
    run = client.get_run(rid)
    assert run.info.status == "FINISHED" and run.info.run_name == "arch/base/train"
    # The run spans the job: created when it started, ended when it finished.
    assert run.info.end_time - run.info.start_time >= 300
    assert run.info.start_time == train.start_ms
    assert run.data.tags["mlflow.source.name"] == "rule"
    assert run.data.tags["mlflow.parentRunId"] == parent
    (inp,) = run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest) == ("synthetic:SYNTH/train", "d1g35t")
    assert json.loads(inp.dataset.profile)["splits"] == {"train": 32, "val": 8, "test": 12}
    assert [t.value for t in inp.tags if t.key == "mlflow.data.context"] == ["train"]
    # Lineage: the prune run points at the run that wrote the model it read.
    assert client.get_run(prune_id).data.tags["edgeprune.source_run"] == rid
    assert client.get_run(parent).info.status == "FINISHED"
    assert client.get_run(parent).data.tags["edgeprune.role"] == "invocation"
    assert not list(tracking.state_dir.rglob("*.json"))


def test_store_failure_keeps_job_and_logs_pending_run_once(tmp_path: Path) -> None:
    tracking = _tracking(tmp_path, retry_seconds=1.0)
    log = Lines()
    job = _job(tracking, "k-pending")
    job.start(log)
    created = job.run_id
    assert created is not None
    db = tmp_path / "store" / "mlflow.db"
    # Another process holds the store's lock for longer than the job's retry budget.
    with open(db.with_name("mlflow.db.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        t0 = time.monotonic()
        rid = job.finish(RunRecord(experiment=EXPERIMENT, run_name="arch/base/train",
                                   params={"a": 1}, metrics={"train_seconds": 2.0},
                                   history={"loss": [2.0, 1.0]}), log)
        waited = time.monotonic() - t0
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert rid is None
    assert waited < 30  # bounded: the lock wait does not hang the job
    (warning,) = log
    assert warning.startswith("warning: MLflow run arch/base/train not logged")
    assert "\n" not in warning and str(job.pending) in warning
    assert json.loads(job.pending.read_text())["run_id"] == created
    # The next invocation logs it into the run created at the job's start, once.
    assert sync(tracking, current_dag_run="dag-2") == {"logged": 1, "killed": 0, "failed": 0}
    assert sync(tracking, current_dag_run="dag-3") == {"logged": 0, "killed": 0, "failed": 0}
    (run,) = _runs_with_key(tracking.uri, "k-pending")
    assert run.info.run_id == created and run.info.status == "FINISHED"
    assert run.data.metrics == {"train_seconds": 2.0, "loss": 1.0}
    assert not job.pending.exists() and not job.marker.exists()
    # Replaying the same payload again (a retry whose reply was lost) adds nothing.
    payload = job.payload(RunRecord(experiment=EXPERIMENT, run_name="arch/base/train"))
    assert log_payload(tracking, payload, 5.0) == created
    assert len(_runs_with_key(tracking.uri, "k-pending")) == 1


def test_killed_job_run_is_ended_killed_by_next_invocation(tmp_path: Path) -> None:
    tracking = _tracking(tmp_path)
    job_log = tmp_path / "job.log"
    job_log.write_text("working\n")
    job = _job(tracking, "k-killed", dag_run="dag-old", log_path=job_log)
    job.start(Lines())  # ... and the job is SIGKILLed: no finish, no fail
    os.utime(job_log, (time.time() + 5, time.time() + 5))
    # The invocation that made it does not end it (its job might still run) ...
    assert sync(tracking, current_dag_run="dag-old")["killed"] == 0
    # ... the next one does, with the job log's last write as the end time.
    assert sync(tracking, current_dag_run="dag-new")["killed"] == 1
    (run,) = _runs_with_key(tracking.uri, "k-killed")
    assert run.info.status == "KILLED"
    assert run.info.end_time == int(job_log.stat().st_mtime * 1000)
    assert not job.marker.exists()
    # A rerun of the job in the new invocation is a new run, and the killed one stays KILLED.
    rerun = _job(tracking, "k-killed-2", dag_run="dag-new")
    rerun.start(Lines())
    rerun.finish(RunRecord(experiment=EXPERIMENT, run_name="r"), Lines())
    assert _runs_with_key(tracking.uri, "k-killed")[0].info.status == "KILLED"


def test_failed_job_run_is_failed_and_start_retry_reuses_run(tmp_path: Path) -> None:
    tracking = _tracking(tmp_path)
    job = _job(tracking, "k-fail")
    job.start(Lines())
    job.fail(Lines())
    (run,) = _runs_with_key(tracking.uri, "k-fail")
    assert run.info.status == "FAILED" and not job.marker.exists()
    # Snakemake retries the job in the same invocation: same key, same run, no second one.
    again = _job(tracking, "k-fail")
    again.start(Lines())
    assert again.run_id == job.run_id
    again.finish(RunRecord(experiment=EXPERIMENT, run_name="done"), Lines())
    (run,) = _runs_with_key(tracking.uri, "k-fail")
    assert run.info.status == "FINISHED"


def test_lock_wait_has_a_timeout(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with _file_lock(lock, 5.0):
        with pytest.raises(StoreTimeout, match="MLflow store lock"):
            with _file_lock(lock, 0.5):
                pass


def test_keras_model_is_logged_as_mlflow_model_with_signature(tmp_path: Path) -> None:
    import mlflow

    from edgeprune.tfenv import setup

    _, keras = setup(1, 0)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    model = keras.Model(inp, [keras.layers.Reshape((-1, 2), name="loc")(x),
                              keras.layers.Reshape((-1, 4), name="probs")(x)])
    path = tmp_path / "m.keras"
    model.save(path)
    spec = tmp_path / "m.spec.json"
    spec.write_text("{}")
    tracking = _tracking(tmp_path)
    job = _job(tracking, "k-model")
    job.start(Lines())
    rid = job.finish(RunRecord(experiment=EXPERIMENT, run_name="m", model=path,
                               artifacts=[path, spec],
                               keras_model=keras_model(model, path, [spec])), Lines())
    client = _client(tracking.uri)
    run = client.get_run(rid)
    model_id = run.data.tags["edgeprune.mlflow_model"]
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == rid
    # The Keras file travels in the model; the spec is a plain artifact as well.
    assert [a.path for a in client.list_artifacts(rid)] == ["m.spec.json"]
    mlflow.set_tracking_uri(tracking.uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
    sig = loaded.metadata.get_input_schema().inputs[0]
    assert sig.shape == (-1, 8, 8, 3)
    assert [o.name for o in loaded.metadata.get_output_schema().inputs] == ["loc", "probs"]
    images = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    out = loaded.predict(images)
    assert out["loc"].shape == (2, 128, 2)
    np.testing.assert_allclose(out["probs"], model.predict(images, verbose=0)[1], rtol=1e-6)


def test_run_job_turns_a_full_disk_into_one_line(tmp_path: Path) -> None:
    def stage(log: Any) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "m.keras"))
        except OSError as exc:
            raise RuntimeError("save failed") from exc  # as libraries wrap it

    log_path = tmp_path / "job.log"
    with pytest.raises(SystemExit) as info:
        run_job("train", log_path, stage, echo=None)
    assert info.value.code == 1
    (line,) = [x for x in log_path.read_text().splitlines() if "error:" in x]
    assert f"no space left on the device writing {tmp_path / 'm.keras'}" in line


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with an sqlite backend."""
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115
        env=_child_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "mlflow server did not start in 180 s"
        time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_runs_go_to_a_tracking_server(mlflow_server: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"mlflow": {"tracking_uri": mlflow_server, "experiment": EXPERIMENT,
                         "db": str(tmp_path / "unused.db")}}
    tracking = Tracking.from_config(config)
    assert tracking is not None and tracking.uri == mlflow_server
    tracking.state_dir = tmp_path / "pending"
    parent = start_invocation(tracking, "dag-srv", ["t"], {})
    artifact = tmp_path / "metrics.json"
    artifact.write_text('{"mAP": 0.5}')
    job = _job(tracking, "k-server", dag_run="dag-srv")
    job.start(Lines())
    rid = job.finish(RunRecord(experiment=EXPERIMENT, run_name="arch/base/eval-keras",
                               metrics={"mAP": 0.5}, artifacts=[artifact]), Lines())
    end_invocation(tracking, "dag-srv", "FINISHED")
    assert not (tmp_path / "unused.db").exists()
    client = _client(mlflow_server)
    run = client.get_run(rid)
    assert run.info.status == "FINISHED" and run.data.metrics == {"mAP": 0.5}
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert [a.path for a in client.list_artifacts(rid)] == ["metrics.json"]
    assert client.get_run(parent).info.status == "FINISHED"
