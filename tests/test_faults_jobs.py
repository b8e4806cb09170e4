"""Fault injection on the real workflow (issue 9 point 8 a, d, f), on the tiny config:

* (a) the whole ``snakemake`` process group SIGKILLed at random moments, rerun each time: every
  rerun completes, every JSON parses, no temp file is left, no MLflow run is RUNNING, no job has
  two FINISHED runs; the tracking store then holds the names, parents and lineage it should.
* (d) a results folder on a tiny tmpfs that fills up: a one-line error, earlier outputs intact.
* (f) the MLflow store made unwritable during a job: outputs kept, the run logged by the next
  invocation.

The 10-kill version with its figures is ``benchmarks/fault_injection.py``. (d) and (f) mount
file systems, so these tests run as root (as CI does).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_workflow import snakemake, snakemake_command, write_yaml

ARCH = "mobilenet_v2_ssd"
#: train -> prune -> convert: the lineage chain, in a few jobs.
CHAIN = [f"results/tflite/{ARCH}/prune50_float32.tflite"]
STATE = Path("results/mlflow_pending")
TEMP_MARK = ".tmp-"


def start(workdir: Path, *args: str, configs: tuple[Path, ...] = ()) -> subprocess.Popen:
    """Start the workflow in its own process group (so the whole group can be killed)."""
    cmd, env = snakemake_command(workdir, *args, configs=configs)
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def kill_and_rerun(workdir: Path, kills: int, seed: int, window: tuple[float, float],
                   force: str = "prune", configs: tuple[Path, ...] = (),
                   first: bool = True) -> list[dict[str, Any]]:
    """``kills`` cycles of: start the chain (forcing rule ``force`` except in a ``first``
    cycle), SIGKILL the process group after a random delay in ``window``, rerun to completion
    (``snakemake --unlock`` first: a killed snakemake leaves its working-directory lock).
    Returns, per cycle, the kill moment, whether the run had already ended, and the rerun's
    exit status and time."""
    rng = random.Random(seed)
    cycles = []
    for i in range(kills):
        extra = () if first and i == 0 else ("--forcerun", force)
        proc = start(workdir, *CHAIN, *extra, configs=configs)
        delay = rng.uniform(*window)
        try:
            proc.wait(timeout=delay)
            ended = True
        except subprocess.TimeoutExpired:
            kill_group(proc)
            ended = False
        t0 = time.monotonic()
        if not ended:  # a killed snakemake leaves its directory lock: the documented recovery
            snakemake(workdir, "--unlock", *CHAIN, configs=configs)
        rerun = snakemake(workdir, *CHAIN, configs=configs, check=False)
        cycles.append({"kill_at_s": round(delay, 1), "run_had_finished": ended,
                       "rerun_rc": rerun.returncode,
                       "rerun_s": round(time.monotonic() - t0, 1),
                       "rerun_tail": (rerun.stdout + rerun.stderr)[-2000:]})
    return cycles


def store_runs(workdir: Path) -> list[dict[str, Any]]:
    """Every run in the workdir's sqlite store with its tags."""
    with sqlite3.connect(workdir / "results" / "mlflow.db") as db:
        rows = db.execute("SELECT run_uuid, name, status, start_time, end_time FROM runs "
                          "WHERE lifecycle_stage = 'active'").fetchall()
        tags: dict[str, dict[str, str]] = {}
        for rid, key, value in db.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(rid, {})[key] = value
    return [{"id": r[0], "name": r[1], "status": r[2], "start": r[3], "end": r[4],
             "tags": tags.get(r[0], {})} for r in rows]


def temp_files(root: Path) -> list[Path]:
    """Files an interrupted write leaves: atomic_path's temporaries, partial copies."""
    return [p for p in root.rglob("*") if p.is_file() and (
        TEMP_MARK in p.name or p.suffix in (".part", ".tmp"))]


def check_consistent(workdir: Path) -> dict[str, Any]:
    """The invariants after a completed rerun; returns counts for the report."""
    res = workdir / "results"
    jsons = list(res.rglob("*.json"))
    for path in jsons:
        json.loads(path.read_text())  # raises on a truncated file
    temps = temp_files(res)
    assert temps == [], f"temp files left: {temps}"
    runs = store_runs(workdir)
    running = [r for r in runs if r["status"] == "RUNNING"]
    assert running == [], f"RUNNING runs left: {[r['name'] for r in running]}"
    finished = Counter(r["tags"].get("edgeprune.job_key") for r in runs
                       if r["status"] == "FINISHED" and r["tags"].get("edgeprune.role") == "job")
    twice = {k: n for k, n in finished.items() if n > 1}
    assert twice == {}, f"jobs with two FINISHED runs: {twice}"
    # No run left pending (open markers of runs that were never created may stay until the
    # next invocation with a job: "nothing to be done" runs no onstart).
    assert not list((res / "mlflow_pending").glob("*.json"))
    statuses = Counter(r["status"] for r in runs)
    return {"json_files": len(jsons), "runs": len(runs), **statuses}


@pytest.mark.integration
def test_sigkill_at_random_moments_then_rerun(tmp_path: Path) -> None:
    cycles = kill_and_rerun(tmp_path, kills=2, seed=9, window=(15.0, 90.0))
    for c in cycles:
        assert c["rerun_rc"] == 0, c["rerun_tail"]
    check_consistent(tmp_path)
    check_store(tmp_path)


def check_store(workdir: Path) -> None:
    """The store after the runs: names, parent per invocation, lineage, source, times, the
    vocabulary, the dataset input and the Keras models as MLflow models."""
    runs = store_runs(workdir)
    by_id = {r["id"]: r for r in runs}
    jobs = [r for r in runs if r["tags"].get("edgeprune.role") == "job"
            and r["status"] == "FINISHED"]
    latest = {}
    for r in sorted(jobs, key=lambda r: r["start"]):
        latest[r["tags"]["mlflow.source.name"]] = r
    assert set(latest) == {"train_base", "prune", "convert_tflite"}
    train, prune, convert = latest["train_base"], latest["prune"], latest["convert_tflite"]
    assert (train["name"], prune["name"], convert["name"]) == (
        f"{ARCH}/base/train", f"{ARCH}/prune50/prune", f"{ARCH}/prune50/tflite-float32")
    assert prune["tags"]["edgeprune.source_run"] == train["id"]
    assert convert["tags"]["edgeprune.source_run"] == prune["id"]
    for r in (train, prune, convert):
        parent = by_id[r["tags"]["mlflow.parentRunId"]]
        assert parent["tags"]["edgeprune.role"] == "invocation"
        assert parent["tags"]["edgeprune.dag_run"] == r["tags"]["edgeprune.dag_run"]
        assert len(r["tags"]["mlflow.source.git.commit"]) == 40
        assert r["end"] > r["start"]
    assert {p["status"] for p in runs if p["tags"].get("edgeprune.role") == "invocation"} <= {
        "FINISHED", "KILLED"}
    with sqlite3.connect(workdir / "results" / "mlflow.db") as db:
        params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?",
                                 (prune["id"],)).fetchall())
        metrics = {k for (k,) in db.execute("SELECT key FROM latest_metrics WHERE run_uuid = ?",
                                             (prune["id"],))}
        conv = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?",
                               (convert["id"],)).fetchall())
        datasets = db.execute("SELECT d.name, d.digest, d.dataset_profile FROM inputs i "
                              "JOIN datasets d ON d.dataset_uuid = i.source_id "
                              "WHERE i.destination_id = ?", (train["id"],)).fetchall()
        models = db.execute("SELECT source_run_id FROM logged_models").fetchall()
    assert params["sparsity_target"] == "0.5" and params["precision"] == "float32"
    assert {"sparsity_reached", "prune_seconds"} <= metrics
    assert "sparsity" not in metrics and "target_sparsity" not in metrics
    assert (conv["precision"], conv["format"]) == ("float32", "tflite")
    ((name, digest, profile),) = datasets
    assert name.startswith("synthetic") and len(digest) >= 8
    assert json.loads(profile)["splits"] == {"train": 32, "val": 8, "test": 12}
    assert (train["id"],) in models and (prune["id"],) in models


@pytest.fixture()
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """``results/`` of a fresh workdir on a 12 MiB tmpfs."""
    res = tmp_path / "results"
    res.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(res)], check=True)
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(res)], check=False)


@pytest.mark.integration
def test_full_results_disk_is_a_one_line_error_and_keeps_earlier_outputs(
        tiny_tmpfs: Path) -> None:
    workdir = tiny_tmpfs
    res = workdir / "results"
    quick = write_yaml(workdir / "quick.yaml", {"mlflow": {"retry_seconds": 2}})
    snakemake(workdir, "results/data/synthetic.json", configs=(quick,))
    before = {p: p.read_bytes() for p in (res / "data").rglob("*") if p.is_file()}
    # Fill the disk, leaving less than a model needs.
    free = os.statvfs(res).f_bavail * os.statvfs(res).f_frsize
    (res / "filler").write_bytes(b"\0" * (free - 64 * 1024))
    proc = snakemake(workdir, f"results/models/{ARCH}/base.keras", configs=(quick,),
                     check=False)
    assert proc.returncode != 0
    log = (res / "logs" / "train" / f"{ARCH}.log").read_text()
    errors = [line for line in log.splitlines() if "] error: " in line]
    assert len(errors) == 1 and "no space left on the device" in errors[0], log[-3000:]
    assert "Traceback" not in log
    (res / "filler").unlink()
    after = {p: p.read_bytes() for p in (res / "data").rglob("*") if p.is_file()}
    assert after == before  # earlier outputs intact
    assert not (res / "models" / ARCH / "base.keras").exists()
    assert temp_files(res) == []


@pytest.mark.integration
def test_unwritable_store_during_a_job_keeps_outputs_and_logs_next_time(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    cfg = write_yaml(tmp_path / "store.yaml", {"mlflow": {
        "db": str(store / "mlflow.db"), "artifacts": str(store / "art"), "retry_seconds": 3}})
    target = f"results/models/{ARCH}/base.keras"
    proc = start(tmp_path, target, configs=(cfg,))
    open_dir = tmp_path / STATE / "open"
    mounted = False
    try:
        # Once the training job's run exists (created at its start), the store turns read-only.
        deadline = time.monotonic() + 600
        while not mounted:
            assert proc.poll() is None and time.monotonic() < deadline
            markers = [json.loads(p.read_text()) for p in open_dir.glob("*.json")
                       if not p.name.startswith("invocation")] if open_dir.is_dir() else []
            if any(m.get("run_id") for m in markers):
                subprocess.run(["mount", "--bind", str(store), str(store)], check=True)
                mounted = True
                subprocess.run(["mount", "-o", "remount,bind,ro", str(store)], check=True)
            time.sleep(0.2)
        pending = []
        while not pending and proc.poll() is None:
            pending = list((tmp_path / STATE).glob("*.json"))
            time.sleep(0.2)
    finally:
        if mounted:  # lazily: the job may still hold the read-only store open
            subprocess.run(["umount", "-l", str(store)], check=True)
    assert proc.wait(timeout=600) == 0
    assert (tmp_path / target).is_file()  # the job's outputs are kept
    log = (tmp_path / "results" / "logs" / "train" / f"{ARCH}.log").read_text()
    (warning,) = [line for line in log.splitlines() if "not logged after" in line]
    assert "results/mlflow_pending/" in warning
    (pending_file,) = pending
    run_id = json.loads(pending_file.read_text())["run_id"]
    # The next invocation (here: one more job) logs the run into the run made at job start.
    snakemake(tmp_path, "results/data/synthetic.json", "--forcerun", "generate_data",
              configs=(cfg,))
    assert not pending_file.exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == f"{ARCH}/base/train"
    assert "train_seconds" in run.data.metrics
    exp = client.get_experiment_by_name("edgeprune")
    key = run.data.tags["edgeprune.job_key"]
    assert len(client.search_runs([exp.experiment_id],
                                  f"tags.`edgeprune.job_key` = '{key}'")) == 1
