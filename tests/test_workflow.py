"""The real Snakemake DAG of the foundation and paper 1 on the tiny configuration: data, the three
base detectors, the pruning sweep, TFLite conversions, evaluation of every artifact, host
latency and application FPS, Tables 1 and 2, Figures 8 and 9, MLflow runs and benchmark files.
Also: config errors stop before any job runs, and adding a sparsity level plans only its jobs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
TINY = ROOT / "config" / "tiny.yaml"
TARGETS = ["results/base_detectors.csv", "results/table1.csv", "results/table2.csv",
           "results/figures/fig8_sparsity.png"]


def snakemake(workdir: Path, *args: str, configs: tuple[Path, ...] = (),
              check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` on the tiny config (plus ``configs``)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(SNAKEFILE), "-d", str(workdir),
           "--cores", "2", "--configfile", str(TINY), *map(str, configs)]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=1200)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """The ``Job stats`` table of a dry run: rule -> job count."""
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    jobs: dict[str, int] = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        jobs[parts[0]] = int(parts[1])
    jobs.pop("total", None)
    return jobs


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run of the paper-1 DAG on the tiny config (a few minutes on 2 cores)."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, *TARGETS)
    return workdir


@pytest.mark.integration
def test_base_detectors_and_dataset(tiny_run: Path) -> None:
    res = tiny_run / "results"
    devkit = res / "data" / "VOCdevkit" / "SYNTH"
    for split, n in (("train", 32), ("val", 8), ("test", 12)):
        ids = (devkit / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert len(ids) == n
        assert all((devkit / "JPEGImages" / f"{i}.jpg").is_file() for i in ids)
        assert all((devkit / "Annotations" / f"{i}.xml").is_file() for i in ids)
    base = pd.read_csv(res / "base_detectors.csv")
    assert sorted(base["arch"]) == ["mobilenet_v2_ssd", "ssd_mobilenet_v1", "ssd_squeezenet"]
    assert ((base["mAP_voc07"] >= 0) & (base["mAP_voc07"] <= 1)).all()
    assert (base["params"] > 0).all() and (base["size_mb"] > 0).all()


@pytest.mark.integration
def test_tables_have_every_row_and_column(tiny_run: Path) -> None:
    res = tiny_run / "results"
    t1 = pd.read_csv(res / "table1.csv")
    assert t1["sparsity"].tolist() == [0.0, 0.5]
    assert {"mAP", "size_mb", "gzip_mb", "params", "nonzero_params",
            "sparsity_reached"} <= set(t1.columns)
    assert abs(t1["sparsity_reached"].iloc[1] - 0.5) <= 0.01
    assert t1["nonzero_params"].iloc[1] < t1["nonzero_params"].iloc[0]
    assert t1["gzip_mb"].iloc[1] < t1["gzip_mb"].iloc[0]

    t2 = pd.read_csv(res / "table2.csv").set_index("model")
    rows = [f"model_{label}_{kind}" for label in ("nonprune", "prune50")
            for kind in ("base", "float32_tflite", "float16_tflite", "int8_tflite",
                         "sparse_tflite")]
    assert t2.index.tolist() == rows
    assert {"mAP", "size_mb", "gzip_mb", "fps_host-litert", "app_fps_host-litert"} <= set(
        t2.columns)
    tfl = t2[t2["format"] != "keras"]
    assert (tfl["fps_host-litert"] > 0).all() and (tfl["app_fps_host-litert"] > 0).all()
    size = t2["size_mb"]
    assert 0.4 < size["model_nonprune_float16_tflite"] / size["model_nonprune_float32_tflite"] < 0.6
    assert size["model_nonprune_int8_tflite"] < size["model_nonprune_float16_tflite"]
    # The sparse flatbuffer of the pruned model is smaller than its dense float32 file.
    assert size["model_prune50_sparse_tflite"] < size["model_prune50_float32_tflite"]
    for fig in ("fig8_sparsity", "fig9_size_fps"):
        for ext in ("png", "pdf"):
            assert (res / "figures" / f"{fig}.{ext}").stat().st_size > 1000


@pytest.mark.integration
def test_raw_logs_benchmarks_and_mlflow_runs(tiny_run: Path) -> None:
    res = tiny_run / "results"
    latency = sorted((res / "latency" / "host-litert" / "mobilenet_v2_ssd").glob("*.json"))
    assert len(latency) == 2 * 4
    assert all(p.with_suffix(".log").stat().st_size > 0 for p in latency)
    # Every job left a benchmark file; one per evaluated artifact, converted model, timing.
    assert len(list((res / "benchmarks" / "eval").rglob("*.tsv"))) == 3 + 1 + 8
    assert len(list((res / "benchmarks" / "convert").rglob("*.tsv"))) == 8
    with sqlite3.connect(res / "mlflow.db") as db:
        stages = dict(db.execute(
            "SELECT value, COUNT(*) FROM tags WHERE key = 'stage' GROUP BY value").fetchall())
        dag_runs = {v for (v,) in db.execute(
            "SELECT DISTINCT value FROM tags WHERE key = 'edgeprune.dag_run'")}
        n_runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    # No run lost: one per job that trains, prunes, converts, evaluates or times a model.
    assert stages["train"] == 3 and stages["prune"] == 1 and stages["convert"] == 8
    assert stages["evaluate"] == 12 and stages["latency"] == 8 and stages["app_fps"] == 8
    assert len(dag_runs) == 1
    assert n_runs >= sum(stages.values())


@pytest.mark.integration
def test_new_sparsity_level_plans_only_its_jobs(tiny_run: Path, tmp_path: Path) -> None:
    extra = write_yaml(tmp_path / "level.yaml", {"paper1": {"sparsities": [0, 0.5, 0.6]}})
    plan = snakemake(tiny_run, *TARGETS, "-n", configs=(extra,))
    jobs = planned_jobs(plan)
    # Explicit targets: no `all` job, only the new level's jobs and what depends on them.
    assert jobs == {"prune": 1, "evaluate": 1, "table1": 1, "figures_paper1": 1}, jobs
    assert "results/models/mobilenet_v2_ssd/prune60.keras" in plan.stdout


@pytest.mark.integration
def test_config_edit_reruns_only_the_jobs_it_affects(tiny_run: Path, tmp_path: Path) -> None:
    # A detector's width is a `params` rerun trigger of its training job: that model is
    # retrained and re-evaluated, the other two are left alone.
    extra = write_yaml(tmp_path / "width.yaml",
                       {"detectors": {"ssd_squeezenet": {"width_multiplier": 0.5}}})
    plan = snakemake(tiny_run, "results/base_detectors.csv", "-n", configs=(extra,))
    assert planned_jobs(plan) == {"train_base": 1, "evaluate": 1, "base_summary": 1}
    assert "results/models/ssd_squeezenet/base.keras" in plan.stdout


@pytest.mark.parametrize(("override", "key"), [
    ({"train": {"epochs": -1}}, "train.epochs"),
    ({"paper1": {"sparsities": [0, 1.0]}}, "paper1.sparsities.1"),
    ({"train": {"epochz": 3}}, "train"),
    ({"threads": "two"}, "threads"),
    ({"data": {"synthetic": {"splits": {"train": 0}}}}, "data.synthetic.splits.train"),
])
def test_bad_config_stops_before_any_job(tmp_path: Path, override: dict, key: str) -> None:
    bad = write_yaml(tmp_path / "bad.yaml", override)
    proc = snakemake(tmp_path, "results/table2.csv", "-n", configs=(bad,), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"config key '{key}'" in out
    assert "Traceback" not in out
    assert not (tmp_path / "results").exists()


def test_workflow_lint_is_clean() -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Lints for" not in proc.stdout + proc.stderr
