"""Stage: tables (CSV) from the per-job JSON results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from edgeprune.fileio import atomic_path, read_json
from edgeprune.jobs import JobLog


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def base_summary(config: Mapping[str, Any], train_jsons: Sequence[str], eval_jsons: Sequence[str],
                 out_csv: str | Path, log: JobLog) -> pd.DataFrame:
    """One row per base detector: parameters, size, training time, mAP (VOC07 and all-point)."""
    rows = []
    for tj, ej in zip(train_jsons, eval_jsons, strict=True):
        t, e = read_json(tj), read_json(ej)
        m = t["metrics"]
        rows.append({
            "arch": t["arch"], "params": m["params"], "size_mb": m["size_mb"],
            "gzip_mb": m["gzip_mb"], "train_images": m["train_images"],
            "train_seconds": m["train_seconds"], "mAP_voc07": e["mAP_voc07"],
            "mAP_all": e["mAP_all"],
        })
    df = pd.DataFrame(rows)
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df


def _model_label(variant: str) -> str:
    """Paper 1 row prefix: base -> nonprune, prune50 -> prune50."""
    return "nonprune" if variant == "base" else variant


def table1(config: Mapping[str, Any], sparsities: Sequence[float], models: Sequence[str],
           metrics: Sequence[str], evals: Sequence[str], out_csv: str | Path,
           log: JobLog) -> pd.DataFrame:
    """Paper 1 Table 1: sparsity, mAP, size (raw and gzip), params and non-zero params."""
    from edgeprune.size import file_sizes

    rows = []
    for s, model, mj, ej in zip(sparsities, models, metrics, evals, strict=True):
        m, e = read_json(mj)["metrics"], read_json(ej)
        sizes = file_sizes(model)
        rows.append({
            "sparsity": s, "sparsity_reached": m.get("sparsity", 0.0) if s else 0.0,
            "mAP": e["mAP"], "mAP_voc07": e["mAP_voc07"], "mAP_all": e["mAP_all"],
            "size_mb": sizes["size_mb"], "gzip_mb": sizes["gzip_mb"],
            "params": m["params"], "nonzero_params": m["nonzero_params"],
        })
    df = pd.DataFrame(rows).sort_values("sparsity")
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df


def _latency_columns(latency: Sequence[str]) -> dict[tuple[str, str], dict[str, float]]:
    """(variant_dtype stem, target) -> {fps, median_ms} from latency JSONs."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for path in latency:
        d = read_json(path)
        stats = d["stats"]
        median = stats.get("median_ms") or stats.get("mean_ms")
        out[(Path(path).stem, d["target"])] = {
            "fps": 1000.0 / median if median else float("nan"), "median_ms": median}
    return out


def table2(config: Mapping[str, Any], variants: Sequence[str], dtypes: Sequence[str],
           keras_evals: Sequence[str], models: Sequence[str], tflite: Sequence[str],
           tflite_evals: Sequence[str], latency: Sequence[str], out_csv: str | Path,
           log: JobLog, app: Sequence[str] = ()) -> pd.DataFrame:
    """Paper 1 Table 2: one row per (variant, runtime) with mAP, size, and per target the
    inference-only FPS (``fps_<target>``) and the end-to-end FPS per video frame with decode,
    resize, box decoding and NMS (``app_fps_<target>``)."""
    from edgeprune.size import file_sizes

    lat = _latency_columns(latency)
    targets = sorted({t for _, t in lat})
    app_fps = {(Path(p).stem, d["target"]): d["fps"] for p in app for d in [read_json(p)]}
    app_targets = sorted({t for _, t in app_fps})
    tfl = {Path(p).stem: p for p in tflite}
    # results/eval/<arch>/<variant>/tflite-<dtype>.json -> "<variant>_<dtype>"
    tev = {f"{Path(p).parent.name}_{Path(p).stem.removeprefix('tflite-')}": p
           for p in tflite_evals}
    rows = []
    for i, v in enumerate(variants):
        sizes = file_sizes(models[i])
        rows.append({"model": f"model_{_model_label(v)}_base", "variant": v, "format": "keras",
                     "mAP": read_json(keras_evals[i])["mAP"], "size_mb": sizes["size_mb"],
                     "gzip_mb": sizes["gzip_mb"]})
        for d in dtypes:
            stem = f"{v}_{d}"
            sizes = file_sizes(tfl[stem])
            ev = read_json(tev[stem])
            row = {"model": f"model_{_model_label(v)}_{d}_tflite", "variant": v,
                   "format": f"tflite-{d}", "mAP": ev["mAP"], "size_mb": sizes["size_mb"],
                   "gzip_mb": sizes["gzip_mb"]}
            for t in targets:
                row[f"fps_{t}"] = lat.get((stem, t), {}).get("fps", float("nan"))
            for t in app_targets:
                row[f"app_fps_{t}"] = app_fps.get((stem, t), float("nan"))
            rows.append(row)
    df = pd.DataFrame(rows)
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df


def figures_paper1(config: Mapping[str, Any], table1_csv: str | Path, table2_csv: str | Path,
                   fig8: Sequence[str], fig9: Sequence[str], log: JobLog) -> None:
    """Figures 8 (mAP and size vs sparsity) and 9 (size vs FPS per sparsity level)."""
    from edgeprune.figures import fig8_sparsity, fig9_size_fps

    fig8_sparsity(pd.read_csv(table1_csv), fig8)
    fig9_size_fps(pd.read_csv(table2_csv), fig9)
    log(f"wrote {list(fig8) + list(fig9)}")
