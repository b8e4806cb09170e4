"""The real Snakemake DAG of the foundation and paper 1 on the tiny configuration: data, the three
base detectors, the pruning sweep, TFLite conversions, evaluation of every artifact, host
latency and application FPS, Tables 1 and 2, Figures 8 and 9, MLflow runs and benchmark files.
Also: config errors stop before any job runs, and adding a sparsity level plans only its jobs."""

from __future__ import annotations

import json
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


def snakemake_command(workdir: Path, *args: str, configs: tuple[Path, ...] = ()
                      ) -> tuple[list[str], dict[str, str]]:
    """Command line and environment that run the repository's workflow in ``workdir`` on the
    tiny config (plus ``configs``)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(SNAKEFILE), "-d", str(workdir),
           "--cores", "2", "--configfile", str(TINY), *map(str, configs)]
    return cmd, env


def snakemake(workdir: Path, *args: str, configs: tuple[Path, ...] = (),
              check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` on the tiny config (plus ``configs``)."""
    cmd, env = snakemake_command(workdir, *args, configs=configs)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
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
    t1 = pd.read_csv(res / "table1.csv").set_index("model")
    # The control (base fine-tuned like the pruned level, no pruning) sits beside the base.
    assert t1.index.tolist() == ["nonprune", "nonprune_ft", "prune50"]
    assert t1["sparsity"].tolist() == [0.0, 0.0, 0.5]
    assert {"mAP", "mAP_ci95_lo", "mAP_ci95_hi", "d_base", "d_base_ci95_lo", "d_base_ci95_hi",
            "d_base_significant", "d_control", "d_control_ci95_lo", "d_control_ci95_hi",
            "d_control_significant", "size_mb", "gzip_mb", "params", "nonzero_params",
            "sparsity_reached"} <= set(t1.columns)
    assert (t1["mAP_ci95_lo"] <= t1["mAP"]).all() and (t1["mAP"] <= t1["mAP_ci95_hi"]).all()
    pruned = t1.loc["prune50"]
    assert abs(pruned["sparsity_reached"] - 0.5) <= 0.01
    assert pruned["nonzero_params"] < t1.loc["nonprune", "nonzero_params"]
    assert pruned["gzip_mb"] < t1.loc["nonprune", "gzip_mb"]
    assert t1.loc["nonprune_ft", "sparsity_reached"] <= 0.01
    # Paired differences: the pruned row against base and control; the base has none.
    for ref in ("base", "control"):
        d = pruned[f"d_{ref}"]
        assert pruned[f"d_{ref}_ci95_lo"] <= d <= pruned[f"d_{ref}_ci95_hi"]
        assert str(pruned[f"d_{ref}_significant"]) in ("True", "False")
    assert pd.isna(t1.loc["nonprune", "d_base"])
    assert pd.isna(t1.loc["nonprune_ft", "d_control"])
    # (the CSV keeps 6 significant digits: each mAP is rounded by up to 5e-7)
    assert t1.loc["nonprune_ft", "d_base"] == pytest.approx(
        t1.loc["nonprune_ft", "mAP"] - t1.loc["nonprune", "mAP"], abs=1e-6)

    t2 = pd.read_csv(res / "table2.csv").set_index("model")
    rows = [f"model_{label}_{kind}" for label in ("nonprune", "prune50")
            for kind in ("base", "float32_tflite", "float16_tflite", "int8_tflite",
                         "sparse_tflite")]
    assert t2.index.tolist() == rows
    assert {"mAP", "size_mb", "gzip_mb", "fps_host-litert", "app_fps_host-litert",
            "fps_host-litert_ci95_lo", "vs_float32_pct_host-litert_significant",
            "app_fps_host-litert_ci95_hi"} <= set(
        t2.columns)
    tfl = t2[t2["format"] != "keras"]
    assert (tfl["fps_host-litert"] > 0).all() and (tfl["app_fps_host-litert"] > 0).all()
    # Every mAP carries its interval; converted rows their paired change against Keras.
    assert (t2["mAP_ci95_lo"] <= t2["mAP"]).all() and (t2["mAP"] <= t2["mAP_ci95_hi"]).all()
    assert tfl["d_mAP_vs_keras"].notna().all()
    assert ((tfl["d_mAP_vs_keras_ci95_lo"] <= tfl["d_mAP_vs_keras"])
            & (tfl["d_mAP_vs_keras"] <= tfl["d_mAP_vs_keras_ci95_hi"])).all()
    # float32 TFLite computes what Keras computes: its mAP change is (almost) exactly zero.
    assert abs(t2.loc["model_nonprune_float32_tflite", "d_mAP_vs_keras"]) < 0.02
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
    # Table 2's 2 x 4 models timed together, interleaved: one comparison JSON + raw log.
    latency = sorted((res / "latency" / "host-litert" / "mobilenet_v2_ssd").glob("*.json"))
    assert [p.name for p in latency] == ["table2.json"]
    assert len(json.loads(latency[0].read_text())["models"]) == 2 * 4
    assert all(p.with_suffix(".log").stat().st_size > 0 for p in latency)
    # Every job left a benchmark file; one per evaluated artifact, converted model, timing.
    assert len(list((res / "benchmarks" / "eval").rglob("*.tsv"))) == 3 + 2 + 8
    assert len(list((res / "benchmarks" / "convert").rglob("*.tsv"))) == 8
    with sqlite3.connect(res / "mlflow.db") as db:
        stages = dict(db.execute(
            "SELECT value, COUNT(*) FROM tags WHERE key = 'stage' GROUP BY value").fetchall())
        dag_runs = {v for (v,) in db.execute(
            "SELECT DISTINCT value FROM tags WHERE key = 'edgeprune.dag_run'")}
        n_runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    # No run lost: one per job that trains, prunes, converts, evaluates or times a model.
    assert stages["train"] == 3 and stages["prune"] == 2 and stages["convert"] == 8
    assert stages["evaluate"] == 13 and stages["latency"] == 1 and stages["app_fps"] == 8
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
    ({"paper2": {"backend": ["keras", "jax"]}}, "paper2.backend"),
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


PAPER1 = ROOT / "config" / "paper1.yaml"


def _write_vocdevkit(root: Path) -> None:
    """A VOCdevkit-shaped folder: VOC2007 (trainval, test) and VOC2012 (trainval), two tiny
    annotated JPEGs per split, laid out as the loader (edgeprune.data.voc.load_split) reads it."""
    from PIL import Image

    splits = {"VOC2007": {"trainval": ["000005", "000007"], "test": ["000001", "000004"]},
              "VOC2012": {"trainval": ["2008_000008", "2008_000015"]}}
    for year, sets in splits.items():
        base = root / year
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for split, ids in sets.items():
            (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
            for i, image_id in enumerate(ids):
                Image.new("RGB", (48, 32), (40 * i, 90, 160)).save(
                    base / "JPEGImages" / f"{image_id}.jpg")
                (base / "Annotations" / f"{image_id}.xml").write_text(
                    f"<annotation><folder>{year}</folder><filename>{image_id}.jpg</filename>"
                    "<size><width>48</width><height>32</height><depth>3</depth></size>"
                    "<object><name>dog</name><truncated>0</truncated><difficult>0</difficult>"
                    "<bndbox><xmin>5</xmin><ymin>4</ymin><xmax>30</xmax><ymax>28</ymax></bndbox>"
                    "</object></annotation>")


def test_paper1_config_builds_its_dag_on_a_local_vocdevkit(tmp_path: Path) -> None:
    """config/paper1.yaml (VOC 07+12, 300x300, width 1.0, 20 fine-tune epochs, the paper's
    levels) passes the schema and plans Table 2 against a VOCdevkit whose path the user sets."""
    from edgeprune.data.voc import load_sets

    settings = yaml.safe_load(PAPER1.read_text())
    assert settings["data"]["source"] == "voc"
    assert settings["detectors"]["mobilenet_v2_ssd"]["input_size"] == [300, 300]
    assert settings["detectors"]["mobilenet_v2_ssd"]["width_multiplier"] == 1.0
    assert settings["paper1"]["prune"]["finetune_epochs"] == 20
    assert settings["paper1"]["sparsities"] == [0, 0.35, 0.5, 0.65, 0.72, 0.8]
    assert settings["paper1"]["quantize"] == [0, 0.5, 0.72]
    devkit = tmp_path / "VOCdevkit"
    _write_vocdevkit(devkit)
    # The folder is one the loader accepts, with the sets the config names.
    assert len(load_sets(devkit, settings["data"]["train_sets"])) == 4
    assert len(load_sets(devkit, settings["data"]["test_sets"])) == 2
    root = write_yaml(tmp_path / "root.yaml", {"data": {"root": str(devkit)}})
    workdir = tmp_path / "work"
    workdir.mkdir()
    plan = snakemake(workdir, "results/table2.csv", "-n", configs=(PAPER1, root))
    jobs = planned_jobs(plan)
    assert jobs["train_base"] == 1  # only mobilenet_v2_ssd
    assert jobs["prune"] == 2  # prune50 and prune72 (0 is the base itself)
    assert jobs["convert_tflite"] == 3 * 4  # three levels x float32/float16/int8/sparse
    assert "generate_data" not in jobs  # a local VOCdevkit: nothing generated
    assert "results/models/mobilenet_v2_ssd/prune72.keras" in plan.stdout
    assert "results/tflite/mobilenet_v2_ssd/prune50_int8.tflite" in plan.stdout
    assert not (workdir / "results").exists()
    # A root that does not exist stops the plan with the key named.
    missing = write_yaml(tmp_path / "missing.yaml", {"data": {"root": str(tmp_path / "nope")}})
    proc = snakemake(workdir, "results/table2.csv", "-n", configs=(PAPER1, missing), check=False)
    assert proc.returncode != 0
    assert "config key 'data.root'" in proc.stdout + proc.stderr
