"""Tests for edgeprune.reporting.pareto and ``python -m edgeprune.choose``: candidates from
paper 1's Table 2 and paper 2's whole-model timing, the front by point estimates, which
dominations are within noise, the choice under a latency budget, and the figure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeprune.errors import DataError
from edgeprune.reporting import pareto

TARGET = "host-litert"


def candidate(variant: str, ms: float, m: float, half_ms: float = 0.1,
              half_map: float = 0.01, size: float = 1.0) -> dict[str, object]:
    row: dict[str, object] = {c: math.nan for c in pareto.COLUMNS}
    row.update(target=TARGET, variant=variant, study="paper1", arch="a", precision="int8",
               method="magnitude", ms=ms, ms_ci95_lo=ms - half_ms, ms_ci95_hi=ms + half_ms,
               mAP=m, mAP_ci95_lo=m - half_map, mAP_ci95_hi=m + half_map, size_mb=size,
               size_source="file", files=f"results/{variant}.tflite")
    for mark in ("pareto", "dominated_by", "dominance"):
        row.pop(mark)
    return row


def marked(*rows: dict[str, object]) -> pd.DataFrame:
    return pareto.mark_front(pd.DataFrame(list(rows))).set_index("variant")


def test_front_by_point_estimates_and_noise_labels() -> None:
    table = marked(
        candidate("a/fast", 5.0, 0.30),
        candidate("a/accurate", 20.0, 0.50),
        candidate("a/middle", 10.0, 0.45),
        # slower AND less accurate than middle, intervals disjoint on both axes
        candidate("a/clearly_worse", 15.0, 0.35),
        # a hair slower and less accurate than middle: overlapping intervals on both axes
        candidate("a/noisy_worse", 10.05, 0.445),
        # ties on latency with middle, lower mAP, no mAP interval
        candidate("a/tie_no_ci", 10.0, 0.40, half_map=math.nan),
    )
    assert sorted(table.index[table["pareto"]]) == ["a/accurate", "a/fast", "a/middle"]
    assert table.loc["a/clearly_worse", "dominance"] == "clear"
    assert table.loc["a/clearly_worse", "dominated_by"] == "a/middle"
    assert table.loc["a/noisy_worse", "dominance"] == "within noise"
    assert table.loc["a/noisy_worse", "dominated_by"] == "a/middle"
    # middle's latency interval overlaps; the mAP interval is missing: cannot tell
    assert table.loc["a/tie_no_ci", "dominance"] == "no interval"
    assert (table.loc[table["pareto"], "dominance"] == "").all()
    assert list(pareto.mark_front(pd.DataFrame([candidate("b", 2.0, 0.1),
                                                candidate("c", 1.0, 0.2)]))["variant"]) == [
        "c", "b"]  # sorted by latency


def test_equal_points_do_not_dominate_each_other() -> None:
    table = marked(candidate("a/one", 5.0, 0.3), candidate("a/copy", 5.0, 0.3))
    assert table["pareto"].all()


def _table2() -> pd.DataFrame:
    rows = []
    for v, m, fps in (("base", 0.50, 100.0), ("prune50", 0.48, 125.0)):
        rows.append({"model": f"model_{v}_base", "variant": v, "format": "keras", "mAP": m,
                     "mAP_ci95_lo": m - 0.02, "mAP_ci95_hi": m + 0.02, "size_mb": 8.0,
                     "gzip_mb": 7.0})
        for d, speedup, size in (("float32", 1.0, 6.4), ("int8", 2.0, 1.9)):
            f = fps * speedup
            rows.append({"model": f"model_{v}_{d}_tflite", "variant": v, "format": f"tflite-{d}",
                         "mAP": m - (0.01 if d == "int8" else 0.0), "mAP_ci95_lo": m - 0.03,
                         "mAP_ci95_hi": m + 0.01, "size_mb": size, "gzip_mb": size / 2,
                         f"fps_{TARGET}": f, f"fps_{TARGET}_ci95_lo": f * 0.9,
                         f"fps_{TARGET}_ci95_hi": f * 1.1, f"ms_{TARGET}": 1000.0 / f,
                         f"app_fps_{TARGET}": f / 3})
    return pd.DataFrame(rows)


def _whole() -> pd.DataFrame:
    rows = [{"arch": "ssd_mobilenet_v1", "target": TARGET, "runtime": "litert-python",
             "method": "base", "finetuned": False, "step": 0, "removed": 0, "params": 2_000_000,
             "latency_median_ms": 9.0, "latency_ci95_lo_ms": 8.8, "latency_ci95_hi_ms": 9.2,
             "mAP": 0.40, "mAP_ci95_lo": 0.37, "mAP_ci95_hi": 0.43, "app_fps": 30.0}]
    for method, ms in (("filter", 8.5), ("cluster", 8.0)):
        for ft in (False, True):
            rows.append({**rows[0], "method": method, "finetuned": ft, "step": 1, "removed": 8,
                         "params": 1_800_000, "latency_median_ms": ms,
                         "latency_ci95_lo_ms": ms - 0.2, "latency_ci95_hi_ms": ms + 0.2,
                         "mAP": 0.38 + 0.01 * ft, "app_fps": math.nan})
    return pd.DataFrame(rows)


def test_candidates_from_both_papers() -> None:
    table = pareto.pareto_table(TARGET, _table2(), "mobilenet_v2_ssd",
                                [(_whole(), "tflite-float32")], "res")
    names = set(table["variant"])
    assert {"mobilenet_v2_ssd/base_float32", "mobilenet_v2_ssd/prune50_int8",
            "ssd_mobilenet_v1/base", "ssd_mobilenet_v1/cluster-finetuned-step1"} <= names
    assert len(table) == 4 + 5  # Keras rows are not timed on a target: left out
    row = table.set_index("variant").loc["mobilenet_v2_ssd/prune50_int8"]
    assert row["sparsity"] == 0.5 and row["precision"] == "int8" and row["size_mb"] == 1.9
    assert row["gzip_mb"] == 0.95
    assert row["ms"] == pytest.approx(4.0)
    # FPS interval [225, 275] -> latency interval [1000 / 275, 1000 / 225]
    assert (row["ms_ci95_lo"], row["ms_ci95_hi"]) == pytest.approx((1000 / 275, 1000 / 225))
    assert row["files"].split(";") == ["res/tflite/mobilenet_v2_ssd/prune50_int8.tflite",
                                       "res/eval/mobilenet_v2_ssd/prune50/tflite-int8.json"]
    step = table.set_index("variant").loc["ssd_mobilenet_v1/cluster-finetuned-step1"]
    assert step["size_mb"] == pytest.approx(1.8 * 4) and step["size_source"] == "params x 4 B"
    assert step["method"] == "cluster (finetuned)" and step["removed"] == 8
    assert "res/paper2/whole/ssd_mobilenet_v1/cluster.json" in step["files"]
    # the fastest model is always on the front, and the most accurate one too
    assert table.loc[table["ms"].idxmin(), "pareto"] and table.loc[table["mAP"].idxmax(),
                                                                   "pareto"]
    fp16 = pareto.paper2_candidates(_whole(), "res", "openvino-fp16")
    assert fp16["size_mb"].iloc[0] == pytest.approx(4.0)


def test_target_without_any_timing() -> None:
    with pytest.raises(DataError, match=r"target 'phone': no variant was timed on it"):
        pareto.pareto_table("phone", _table2(), "mobilenet_v2_ssd")


def test_choose_the_most_accurate_within_budget() -> None:
    table = pareto.pareto_table(TARGET, _table2(), "mobilenet_v2_ssd",
                                [(_whole(), "tflite-float32")])
    pick, others = pareto.choose(table, max_ms=10.0)
    assert pick["variant"] == "mobilenet_v2_ssd/base_float32" and pick["pareto"]
    pick, others = pareto.choose(table, max_ms=6.0)
    assert pick["variant"] == "mobilenet_v2_ssd/base_int8"
    # prune50_int8 is faster, and its mAP interval overlaps: offered as an alternative
    assert list(others["variant"]) == ["mobilenet_v2_ssd/prune50_int8"]
    with pytest.raises(DataError) as info:
        pareto.choose(table, max_ms=1.0)
    assert str(info.value).startswith(f"target '{TARGET}': no variant has median latency <= 1 "
                                      "ms (fastest: mobilenet_v2_ssd/prune50_int8 4 ms")
    with pytest.raises(DataError, match=r"and mAP >= 0\.9"):
        pareto.choose(table, max_ms=100.0, min_map=0.9)


def test_stage_cli_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table2 = tmp_path / "table2.csv"
    _table2().to_csv(table2, index=False)
    whole = tmp_path / "whole.csv"
    _whole().to_csv(whole, index=False)
    out = tmp_path / "results" / "pareto" / f"{TARGET}.csv"
    figure = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    lines: list[str] = []
    pareto.pareto_stage({}, TARGET, str(table2), "mobilenet_v2_ssd", [str(whole)],
                        "tflite-float32", out, figure, lines.append, results="results")
    assert figure[0].read_bytes()[:4] == b"\x89PNG" and figure[1].read_bytes()[:4] == b"%PDF"
    assert "on the front" in lines[0]
    written = pd.read_csv(out)
    assert list(written.columns) == list(pareto.COLUMNS)
    assert written["pareto"].dtype == np.bool_

    results = str(tmp_path / "results")
    assert pareto.main(["--target", TARGET, "--max-ms", "6", "--results", results]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{TARGET}: mobilenet_v2_ssd/base_int8  (mAP 0.490 [0.470, "
                                 "0.510], 5 ms [4.55, 5.56], 1.9 MB, 0.95 MB gzip)")
    assert printed[1].strip() == "results/tflite/mobilenet_v2_ssd/base_int8.tflite"
    assert printed[-1].strip().startswith("as accurate within noise: "
                                          "mobilenet_v2_ssd/prune50_int8")

    assert pareto.main(["--target", "nope", "--max-ms", "6", "--results", results]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: unknown target 'nope': no ")
    assert f"targets with a Pareto table: {TARGET}" in err
    assert pareto.main(["--target", TARGET, "--max-ms", "1", "--results", results]) == 2
    assert "no variant has median latency <= 1 ms" in capsys.readouterr().err
    assert pareto.main(["--target", TARGET, "--max-ms", "-3", "--results", results]) == 2
    assert "--max-ms must be a positive number" in capsys.readouterr().err


def test_figure_marks_the_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeprune.reporting import figures

    captured = {}
    monkeypatch.setattr(figures, "save", lambda fig, paths: captured.setdefault("fig", fig))
    table = pareto.pareto_table(TARGET, _table2(), "mobilenet_v2_ssd",
                                [(_whole(), "tflite-float32")])
    pareto.pareto_figure(table, TARGET, ["unused.png"])
    ax = captured["fig"].axes[0]
    front_line = [line for line in ax.get_lines() if line.get_label().startswith("Pareto front")]
    assert len(front_line) == 1
    front = table[table["pareto"]].sort_values("ms")
    np.testing.assert_allclose(front_line[0].get_xdata(), front["ms"])
    assert "95 %" in ax.get_xlabel() and "95 %" in ax.get_ylabel()
