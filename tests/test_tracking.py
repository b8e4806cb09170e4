"""Tests for edgeprune.reporting.tracking: concurrent log_run into one fresh sqlite database (as
parallel
Snakemake jobs do), what a logged run holds, and the MLFLOW_TRACKING_URI override."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from edgeprune.reporting.tracking import DAG_RUN_ENV, RunRecord, log_run, resolve_uri

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
