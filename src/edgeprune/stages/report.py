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
    """One row per base detector: parameters, size, training time, mAP (VOC07 and all-point),
    each mAP with its 95 % bootstrap interval from the eval JSON (``<metric>_ci95_lo/_hi``)."""
    rows = []
    for tj, ej in zip(train_jsons, eval_jsons, strict=True):
        t, e = read_json(tj), read_json(ej)
        m = t["metrics"]
        row = {
            "arch": t["arch"], "params": m["params"], "size_mb": m["size_mb"],
            "gzip_mb": m["gzip_mb"], "train_images": m["train_images"],
            "train_seconds": m["train_seconds"],
        }
        for key in ("mAP_voc07", "mAP_all"):
            lo, hi = (float("nan") if v is None else v for v in e[f"{key}_ci95"])
            row.update({key: e[key], f"{key}_ci95_lo": lo, f"{key}_ci95_hi": hi})
        rows.append(row)
    df = pd.DataFrame(rows)
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df


def _model_label(variant: str) -> str:
    """Paper 1 row prefix: base -> nonprune, control -> nonprune_ft, prune50 -> prune50."""
    from edgeprune.stages.paper1 import CONTROL

    return {"base": "nonprune", CONTROL: "nonprune_ft"}.get(variant, variant)


def _paired_columns(prefix: str, diff: Any) -> dict[str, Any]:
    """``<prefix>``, its 95 % interval and significance from a paired mAP difference."""
    if diff is None:
        return {prefix: float("nan"), f"{prefix}_ci95_lo": float("nan"),
                f"{prefix}_ci95_hi": float("nan"), f"{prefix}_significant": pd.NA}
    return {prefix: diff.diff, f"{prefix}_ci95_lo": diff.ci95[0],
            f"{prefix}_ci95_hi": diff.ci95[1], f"{prefix}_significant": bool(diff.significant)}


def table1(config: Mapping[str, Any], variants: Sequence[str], sparsities: Sequence[float],
           models: Sequence[str], metrics: Sequence[str], evals: Sequence[str],
           detections: Sequence[str], out_csv: str | Path, log: JobLog) -> pd.DataFrame:
    """Paper 1 Table 1: sparsity, mAP with its 95 % interval, the paired mAP change against the
    base (``d_base``) and against the fine-tuned unpruned control (``d_control``, when the
    control is a row) each with its 95 % interval and a ``significant`` flag, size (raw and
    gzip), params and non-zero params.

    Intervals come from one paired bootstrap over test images (the same resamples for both
    models of a pair; ``evaluation.bootstrap`` resamples, seeded with ``seed``).
    """
    from edgeprune.compression.size import file_sizes
    from edgeprune.stages.evaluate import map_pairer
    from edgeprune.stages.paper1 import CONTROL

    pair = map_pairer(config)
    det_dirs = dict(zip(variants, detections, strict=True))

    def paired(a: str, b: str) -> Any:
        return pair(det_dirs[a], det_dirs[b]) if a in det_dirs and a != b else None

    rows = []
    for v, s, model, mj, ej in zip(variants, sparsities, models, metrics, evals, strict=True):
        m, e = read_json(mj)["metrics"], read_json(ej)
        sizes = file_sizes(model)
        cols = _map_columns(e)
        rows.append({
            "model": _model_label(v), "variant": v, "sparsity": s,
            "sparsity_reached": m.get("sparsity", 0.0) if v != "base" else 0.0, **cols,
            **_paired_columns("d_base", paired("base", v)),
            **_paired_columns("d_control", paired(CONTROL, v)),
            "mAP_voc07": e["mAP_voc07"], "mAP_all": e["mAP_all"],
            "size_mb": sizes["size_mb"], "gzip_mb": sizes["gzip_mb"],
            "params": m["params"], "nonzero_params": m["nonzero_params"],
        })
        log(f"{_model_label(v)}: mAP {e['mAP']:.4f} "
            f"[{cols['mAP_ci95_lo']:.4f}, {cols['mAP_ci95_hi']:.4f}]")
    df = pd.DataFrame(rows)
    rank = df["variant"].map({"base": 0, CONTROL: 1}).fillna(2)
    df = df.assign(_rank=rank).sort_values(["sparsity", "_rank"]).drop(columns="_rank")
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df


#: Table 2's per-target columns as (name, suffix): column ``<name>_<target><suffix>`` holds the
#: cell key ``<name><suffix>`` of :func:`_latency_columns` / :func:`_app_columns`.
_LATENCY_COLUMNS = (("fps", ""), ("fps", "_ci95_lo"), ("fps", "_ci95_hi"), ("ms", ""),
                    ("vs_float32_pct", ""), ("vs_float32_pct", "_ci95_lo"),
                    ("vs_float32_pct", "_ci95_hi"), ("vs_float32_pct", "_significant"))
_APP_COLUMNS = (("app_fps", ""), ("app_fps", "_ci95_lo"), ("app_fps", "_ci95_hi"))


def _latency_columns(latency: Sequence[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(variant_dtype stem, target) -> fps with its 95 % interval, median ms, and the paired
    difference (%) to the variant's float32 model with its interval and significance, from the
    interleaved comparison JSONs (one per target, :func:`edgeprune.stages.devices.latency_compare`).
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in latency:
        d = read_json(path)
        for label, model in zip(d["labels"], d["models"], strict=True):
            cell: dict[str, Any] = {"fps": model["fps"], "fps_ci95_lo": model["fps_ci95"][0],
                                    "fps_ci95_hi": model["fps_ci95"][1], "ms": model["median_ms"]}
            diff = d["vs_float32"].get(label)
            if diff is not None:
                cell.update(vs_float32_pct=diff["diff_pct"],
                            vs_float32_pct_ci95_lo=diff["ci95_pct"][0],
                            vs_float32_pct_ci95_hi=diff["ci95_pct"][1],
                            vs_float32_pct_significant=diff["significant"])
            out[(label, d["target"])] = cell
    return out


def _map_columns(eval_json: Mapping[str, Any]) -> dict[str, float]:
    """mAP of an eval JSON with its 95 % bootstrap interval."""
    lo, hi = eval_json["mAP_ci95"]
    return {"mAP": eval_json["mAP"], "mAP_ci95_lo": lo, "mAP_ci95_hi": hi}


def _detections_dir(eval_json_path: str | Path) -> Path:
    """The comp4 detections the evaluation job wrote beside its JSON (same job's output)."""
    path = Path(eval_json_path)
    return path.with_name(f"{path.stem}_detections")


def _app_columns(app: Sequence[str], seed: int) -> dict[tuple[str, str], dict[str, float]]:
    """(variant_dtype stem, target) -> application FPS and its 95 % interval.

    The interval is a bootstrap over the run's per-frame end-to-end times (decode, resize,
    inference, box decoding and NMS; :func:`edgeprune.measurement.compare.mean_rate_ci95`): it
    covers the
    frame-to-frame variation within that run, not drift between runs or instance effects.
    """
    from edgeprune.measurement.compare import mean_rate_ci95

    out: dict[tuple[str, str], dict[str, float]] = {}
    for path in app:
        d = read_json(path)
        lo, hi = mean_rate_ci95(d["samples_ms"]["frame"], d["fps"], seed=seed)
        out[(Path(path).stem, d["target"])] = {"app_fps": d["fps"], "app_fps_ci95_lo": lo,
                                               "app_fps_ci95_hi": hi}
    return out


def table2(config: Mapping[str, Any], variants: Sequence[str], dtypes: Sequence[str],
           keras_evals: Sequence[str], models: Sequence[str], tflite: Sequence[str],
           tflite_evals: Sequence[str], latency: Sequence[str], out_csv: str | Path,
           log: JobLog, app: Sequence[str] = ()) -> pd.DataFrame:
    """Paper 1 Table 2: one row per (variant, runtime) with mAP, size, and per target:

    * ``fps_<t>`` (inference only) with ``fps_<t>_ci95_lo/_hi`` and the median ``ms_<t>``, all
      models of a target timed together, interleaved;
    * ``mAP`` with ``mAP_ci95_lo/_hi``; on converted rows ``d_mAP_vs_keras`` (+ ``_ci95_lo/_hi``,
      ``_significant``): what conversion cost, a paired bootstrap over test images against the
      variant's Keras model;
    * ``vs_float32_pct_<t>`` (+ ``_ci95_lo/_hi``, ``_significant``): the paired latency
      difference (%) to the variant's float32 model (empty on the float32 rows);
    * ``app_fps_<t>`` (+ ``_ci95_lo/_hi``): end-to-end FPS per video frame with decode, resize,
      box decoding and NMS (interval: see :func:`_app_columns`).
    """
    from edgeprune.compression.size import file_sizes
    from edgeprune.stages.evaluate import map_pairer

    pair = map_pairer(config)
    lat = _latency_columns(latency)
    targets = sorted({t for _, t in lat})
    app_cols = _app_columns(app, int(config.get("seed", 0)))
    app_targets = sorted({t for _, t in app_cols})
    tfl = {Path(p).stem: p for p in tflite}
    # results/eval/<arch>/<variant>/tflite-<dtype>.json -> "<variant>_<dtype>"
    tev = {f"{Path(p).parent.name}_{Path(p).stem.removeprefix('tflite-')}": p
           for p in tflite_evals}
    rows = []
    for i, v in enumerate(variants):
        sizes = file_sizes(models[i])
        rows.append({"model": f"model_{_model_label(v)}_base", "variant": v, "format": "keras",
                     **_map_columns(read_json(keras_evals[i])), "size_mb": sizes["size_mb"],
                     "gzip_mb": sizes["gzip_mb"]})
        for d in dtypes:
            stem = f"{v}_{d}"
            sizes = file_sizes(tfl[stem])
            diff = pair(_detections_dir(keras_evals[i]), _detections_dir(tev[stem]))
            row = {"model": f"model_{_model_label(v)}_{d}_tflite", "variant": v,
                   "format": f"tflite-{d}", **_map_columns(read_json(tev[stem])),
                   **_paired_columns("d_mAP_vs_keras", diff),
                   "size_mb": sizes["size_mb"], "gzip_mb": sizes["gzip_mb"]}
            for t in targets:
                cell = lat.get((stem, t), {})
                for name, suffix in _LATENCY_COLUMNS:
                    row[f"{name}_{t}{suffix}"] = cell.get(name + suffix, float("nan"))
            for t in app_targets:
                cell = app_cols.get((stem, t), {})
                for name, suffix in _APP_COLUMNS:
                    row[f"{name}_{t}{suffix}"] = cell.get(name + suffix, float("nan"))
            rows.append(row)
    df = pd.DataFrame(rows)
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df


def figures_paper1(config: Mapping[str, Any], table1_csv: str | Path, table2_csv: str | Path,
                   fig8: Sequence[str], fig9: Sequence[str], log: JobLog) -> None:
    """Figures 8 (mAP and size vs sparsity) and 9 (size vs FPS per sparsity level)."""
    from edgeprune.reporting.figures import fig8_sparsity, fig9_size_fps

    fig8_sparsity(pd.read_csv(table1_csv), fig8)
    fig9_size_fps(pd.read_csv(table2_csv), fig9)
    log(f"wrote {list(fig8) + list(fig9)}")
