"""The paper-2 workflow end to end on the tiny configuration (real Snakemake DAG: data, base
model, sweep, cluster size, whole-model pruning on both host targets, tables, OpenVINO IR and
its accuracy), with the repository's Snakefile and a scratch working directory."""

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

OVERRIDES = {
    "paper2": {
        "archs": ["ssd_mobilenet_v1"],
        "targets": ["host-openvino", "host-litert"],
        "sweep": {"layers": {"ssd_mobilenet_v1": ["conv1"]}, "step": 7, "max_removed": None,
                  "isolated": {"enabled": True, "step": 7},
                  "timing": {"seconds": 0.2, "block_runs": 2, "blocks_per_group": 2,
                             "warmup": 1, "min_groups": 3}},
        "period": {"permutations": 50},
        "cluster": {"size": 4},
        "whole": {"layers": {"ssd_mobilenet_v1": ["conv[1-2]"]}, "measure_every": 4,
                  "steps": 1, "min_filters": 4,
                  "timing": {"seconds": 0.2, "block_runs": 2, "blocks_per_group": 2,
                             "warmup": 1, "min_groups": 3},
                  "finetune": {"enabled": True, "updates": 1}},
        "app_fps": {"frames": 2, "warmup": 0, "passes": 2},
    },
}


def _workflow(tmp: Path) -> Path:
    """The repository's Snakefile, with the tiny paper-2 overrides written beside the run."""
    (tmp / "paper2_tiny.yaml").write_text(yaml.safe_dump(OVERRIDES))
    return ROOT / "Snakefile"


def _snakemake(snakefile: Path, workdir: Path, *args: str,
               extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(snakefile), "-d", str(workdir),
           "--cores", "2",
           "--configfile", str(ROOT / "config/tiny.yaml"), str(workdir / "paper2_tiny.yaml"),
           *extra]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.mark.integration
def test_paper2_workflow_on_tiny_config(tmp_path: Path) -> None:
    snakefile = _workflow(tmp_path)
    # The full target plans the OpenVINO IR rule for the shared evaluator (checked without
    # running it: tests/test_openvino_rt.py runs conversion, runner and accuracy).
    plan = _snakemake(snakefile, tmp_path, "paper2", "-n").stdout
    for rule in ("openvino_ir", "evaluate", "p2_openvino_accuracy", "p2_sweep_time",
                 "p2_whole_time", "p2_report"):
        assert f"rule {rule}:" in plan, rule
    assert "results/openvino/ssd_mobilenet_v1/base_fp16.xml" in plan
    # Both backends in one invocation (issue 10): Keras under results/paper2/, torch (the same
    # trained base, ported: no second training) under results/paper2/torch/, and the same plan
    # side by side in results/paper2/backends.csv.
    (tmp_path / "both.yaml").write_text(yaml.safe_dump({"paper2": {"backend": ["keras",
                                                                                "torch"]}}))
    _snakemake(snakefile, tmp_path, "results/paper2/summary.md",
               "results/paper2/figures/fig5_sweep_latency_ssd_mobilenet_v1.png",
               "results/paper2/torch/summary.md",
               "results/paper2/torch/figures/fig5_sweep_latency_ssd_mobilenet_v1.png",
               "results/paper2/backends.csv", extra=(str(tmp_path / "both.yaml"),))
    res = tmp_path / "results"
    p2 = res / "paper2"

    for target in ("host-openvino", "host-litert"):
        sweep = pd.read_csv(p2 / "sweeps/ssd_mobilenet_v1/conv1" / f"{target}.csv")
        for scope in ("network", "layer"):         # the whole network and the layer alone
            sub = sweep[sweep["scope"] == scope]
            assert sub["filters_left"].tolist() == [16, 9, 2]
            assert sub["macs"].is_monotonic_decreasing
            assert (sub["latency_ci95_lo_ms"] <= sub["latency_median_ms"]).all()
            assert (sub["latency_median_ms"] <= sub["latency_ci95_hi_ms"]).all()
            blocks = [json.loads(b) for b in sub["latency_block_medians_ms"]]
            assert all(len(b) >= 3 and len(b[0]) == 2 for b in blocks)   # groups x blocks
            assert sub["diff_pct"].iloc[0] == 0.0
        layer = sweep[sweep["scope"] == "layer"]
        assert layer["mAP"].isna().all()
        assert (layer["macs"] < sweep[sweep["scope"] == "network"]["macs"].to_numpy()).all()
        raw = p2 / "sweeps/ssd_mobilenet_v1/conv1" / f"raw_{target}"
        for scope in ("network", "layer"):
            doc = json.loads((raw / f"{scope}.json").read_text())
            assert len(doc["models"]) == 3 and doc["settings"]["seed"] == 0
            assert doc["raw"]["groups"][0]["block_orders"]     # interleaving order recorded
    # The thinned models were temporary.
    assert not (p2 / "sweeps/ssd_mobilenet_v1/conv1/models").exists()

    sizes = json.loads((p2 / "cluster_size/ssd_mobilenet_v1.json").read_text())
    assert sizes["sizes"] == {"conv1": 4, "conv2": 4}           # the config override
    assert sizes["phases"] == {"conv1": None, "conv2": None}   # no alignment without auto
    evidence = sizes["sweeps"]["conv1"]["host-openvino"]
    assert evidence["P"] >= 1 and evidence["lat_source"] == "layer"
    for kind in ("latency", "layer_latency", "accuracy"):
        ev = evidence[kind]
        assert ev["verdict"] in ("period", "none", "inconclusive")
        assert {"p_value", "min_p_value", "min_detectable_pct", "step_pct", "phase"} <= set(ev)
    assert evidence["latency"]["noise"] == "replicates"

    t1 = pd.read_csv(p2 / "table1.csv").set_index("layer")
    assert t1.loc["total", "cluster_pruned"] == t1.loc["total", "filter_pruned"] == 4
    assert all(n % 4 == 0 for n in t1.drop("total")["cluster_pruned"])
    t2 = pd.read_csv(p2 / "table2.csv").set_index("row")
    assert {"host-openvino", "host-litert", "host-openvino_ci95_lo",
            "host-litert_ci95_hi"} <= set(t2.columns)
    assert t2.loc["without pruning", "host-openvino"] > 0
    gain = t2.loc["gain of cluster over filter pruning (%)"]
    assert gain["host-openvino_ci95_lo"] <= gain["host-openvino"] <= \
        gain["host-openvino_ci95_hi"]
    t3 = pd.read_csv(p2 / "table3.csv").set_index("row")
    assert t3.loc["cluster pruning", "host-litert"] > 0
    assert t3.loc["gain from filter pruning (%)", "host-litert_ci95_lo"] <= \
        t3.loc["gain from filter pruning (%)", "host-litert_ci95_hi"]
    whole = pd.read_csv(p2 / "whole/ssd_mobilenet_v1/host-openvino.csv")
    assert set(whole["method"]) == {"base", "filter", "cluster"}
    assert set(whole["finetuned"]) == {False, True}
    assert whole["latency_block_medians_ms"].notna().all()
    # Every mAP carries its bootstrap interval over the evaluation images.
    assert (whole["mAP_ci95_lo"] <= whole["mAP"]).all()
    assert (whole["mAP"] <= whole["mAP_ci95_hi"]).all()
    assert (p2 / "whole/ssd_mobilenet_v1/raw_host-openvino/whole.json").is_file()
    summary = (p2 / "summary.md").read_text()
    assert "Table II" in summary and "latency period" in summary
    assert "host-openvino (openvino):" in summary and "smallest reachable" in summary
    assert "within noise" in summary or "faster by" in summary or "slower by" in summary
    for name in ("fig5_sweep_latency", "fig10_latency", "fig12_map", "period_evidence"):
        assert (p2 / "figures" / f"{name}_ssd_mobilenet_v1.png").stat().st_size > 1000

    with sqlite3.connect(res / "mlflow.db") as db:
        runs = {v for (v,) in db.execute("SELECT value FROM tags WHERE key = 'mlflow.runName'")}
    assert {"ssd_mobilenet_v1/paper2/sweep-conv1/host-litert", "paper2/report",
            "ssd_mobilenet_v1/paper2/whole-cluster/build"} <= runs
    # Every rule kept a log and a benchmark file.
    assert (res / "benchmarks/paper2/report.tsv").is_file()
    assert (res / "logs/paper2/whole/ssd_mobilenet_v1/cluster_build.log").is_file()

    # The torch backend: same sweeps, cluster sizes, tables and figures.
    pt = p2 / "torch"
    keras_points = json.loads((p2 / "sweeps/ssd_mobilenet_v1/conv1/points.json").read_text())
    torch_points = json.loads((pt / "sweeps/ssd_mobilenet_v1/conv1/points.json").read_text())
    # θ_MW through Torch-Pruning ranks the ported weights exactly as Keras does, and both
    # surgeries give the same cost and (within 1e-3) the same mAP at every sweep point.
    for k, t in zip(keras_points["rows"], torch_points["rows"], strict=True):
        assert (t["filters_left"], t["removed"], t["params"], t["macs"]) == \
            (k["filters_left"], k["removed"], k["params"], k["macs"])
        assert abs(t["mAP_torch"] - k["mAP_keras"]) < 1e-3
    sweep = pd.read_csv(pt / "sweeps/ssd_mobilenet_v1/conv1/host-openvino.csv")
    assert set(sweep["backend"]) == {"torch"}
    assert sweep[sweep["scope"] == "layer"]["filters_left"].tolist() == [16, 9, 2]
    t1_torch = pd.read_csv(pt / "table1.csv").set_index("layer")
    assert t1_torch.loc["total", "cluster_pruned"] == 4
    whole_torch = pd.read_csv(pt / "whole/ssd_mobilenet_v1/host-openvino.csv")
    assert set(whole_torch["backend"]) == {"torch"}
    assert set(whole_torch["finetuned"]) == {False, True}
    base_k = whole[whole["method"] == "base"]["mAP"].iloc[0]
    base_t = whole_torch[whole_torch["method"] == "base"]["mAP"].iloc[0]
    assert abs(base_k - base_t) < 1e-3                  # the ported base detects the same
    assert "Table II" in (pt / "summary.md").read_text()
    with sqlite3.connect(res / "mlflow.db") as db:
        backends = {v for (v,) in db.execute(
            "SELECT value FROM params WHERE key = 'backend'")}
    assert backends == {"keras", "torch", "keras,torch"}

    # Side by side: every step of both methods (one-shot and fine-tuned) on both targets, both
    # latencies from one interleaved comparison, mAP paired on the same images, words that
    # follow the intervals.
    both = pd.read_csv(p2 / "backends.csv")
    assert set(both["target"]) == {"host-openvino", "host-litert"}
    assert set(both["method"]) == {"base", "filter", "cluster"}
    assert len(both) == 2 * len(whole) == 2 * len(whole_torch)
    assert both["same_widths"].all() and (both["params_keras"] == both["params_torch"]).all()
    for side in ("keras", "torch"):
        assert (both[f"latency_{side}_ci95_lo_ms"] <= both[f"latency_{side}_ms"]).all()
        assert (both[f"latency_{side}_ms"] <= both[f"latency_{side}_ci95_hi_ms"]).all()
    assert (both["latency_diff_ci95_lo_pct"] <= both["latency_diff_ci95_hi_pct"]).all()
    for r in both.itertuples():
        within = r.latency_diff_ci95_lo_pct <= 0 <= r.latency_diff_ci95_hi_pct
        assert r.latency_words.startswith("within noise") == within
    one_shot = both[~both["finetuned"].astype(bool)]
    # The same plan on the same ported weights: one-shot models detect alike in both frameworks.
    assert (one_shot["mAP_diff"].abs() < 1e-3).all()
    raw_both = json.loads((p2 / "backends/ssd_mobilenet_v1/raw_host-openvino/backends.json")
                          .read_text())
    assert len(raw_both["models"]) == 2 * len(whole)
