"""Stages of paper 2 (cluster pruning vs filter pruning), one function per Snakemake rule.

Each job of a sweep or a pruning series builds its thinned models in one process; the model
files are written by a *build* job (no target held, runs in parallel with others) and timed by
a *time* job that holds the target's Snakemake resource, so timings never overlap on a target.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgeprune import config as C
from edgeprune.cluster.convert import RUNTIME_FORMAT, write_artifacts
from edgeprune.cluster.cost import model_cost
from edgeprune.cluster.measure import (
    LATENCY_FIELDS,
    load_test_set,
    map_for,
    model_maps,
    time_models,
)
from edgeprune.cluster.period import cluster_size, detect_period
from edgeprune.cluster.report import (
    PAPER_TABLE2,
    PAPER_TABLE3,
    paper_table,
    pick_step,
    plot_evidence,
    plot_sweeps,
    plot_whole,
    series_name,
    speed_table,
    table1,
)
from edgeprune.cluster.settings import Paper2Settings, paper2_settings
from edgeprune.cluster.sweep import sweep_layer
from edgeprune.cluster.whole import WholePlan, layer_sizes, plan_points, run_series
from edgeprune.dataset import load_sets
from edgeprune.errors import ConfigError, DataError
from edgeprune.fileio import read_json, write_json, write_text
from edgeprune.jobs import JobLog
from edgeprune.model_io import anchors_from_spec, load_keras, load_spec
from edgeprune.stages.report import write_csv
from edgeprune.tfenv import setup
from edgeprune.tracking import RunRecord


def _experiment(config: Mapping[str, Any]) -> str:
    return config.get("mlflow", {}).get("experiment", "edgeprune")


def _formats(s: Paper2Settings) -> tuple[str, ...]:
    return tuple(sorted({RUNTIME_FORMAT[t.runtime] for t in s.targets.values()}))


def _target_format(s: Paper2Settings, target: str) -> str:
    if target not in s.targets:
        raise ConfigError(f"config key 'paper2.targets': {target!r} is not listed")
    return RUNTIME_FORMAT[s.targets[target].runtime]


def _load_base(config: Mapping[str, Any], model_path: str | Path, spec_path: str | Path,
               threads: int) -> tuple[Any, Any, Any, np.ndarray]:
    _, keras = setup(threads, int(config.get("seed", 0)))
    spec, raw = load_spec(spec_path)
    return load_keras(model_path, keras), spec, keras, anchors_from_spec(raw)


# --------------------------------------------------------------------------- sweeps


def sweep_build(config: Mapping[str, Any], arch: str, layer: str, model_path: str | Path,
                spec_path: str | Path, out_dir: str | Path, points_json: str | Path,
                threads: int, log: JobLog) -> RunRecord:
    """Thin ``layer`` of the base model point by point; write each point's model files and a
    JSON with removed filters, parameters, MACs, conversion time and mAP (``paper2.accuracy``)."""
    s = paper2_settings(config)
    if layer not in s.sweep.layers.get(arch, []):
        raise ConfigError(f"config key 'paper2.sweep.layers.{arch}': {layer!r} is not listed")
    model, spec, keras, anchors = _load_base(config, model_path, spec_path, threads)
    test = load_test_set(config, spec.input_size, anchors, s.eval_images)
    formats = _formats(s)
    log(f"{arch}/{layer}: sweep step {s.sweep.step} down to {s.sweep.min_filters} filters, "
        f"formats {formats}, {len(test.annotations)} test images")
    t0 = time.perf_counter()
    rows = sweep_layer(model, spec, layer, s.sweep.step, s.sweep.min_filters, formats,
                       Path(out_dir), test, threads, log, s.accuracy, keras)
    seconds = time.perf_counter() - t0
    write_json(points_json, {"arch": arch, "layer": layer, "formats": list(formats),
                             "step": s.sweep.step, "rows": rows})
    map_keys = [k for k in rows[0] if k.startswith("mAP_")]
    history = {k: [r[k] for r in rows] for k in map_keys}
    convert = {f"convert_s_mean_{f}": float(np.mean([r[f"convert_s_{f}"] for r in rows]))
               for f in formats}
    return RunRecord(
        experiment=_experiment(config), run_name=f"{arch}/paper2/sweep-{layer}/build",
        params={"stage": "paper2_sweep_build", "arch": arch, "layer": layer,
                "method": "single-layer", "step": s.sweep.step,
                "min_filters": s.sweep.min_filters, "formats": ",".join(formats),
                "accuracy": s.accuracy},
        metrics={"points": len(rows), "width": rows[0]["filters_left"], "seconds": seconds,
                 "params": rows[0]["params"], "macs": rows[0]["macs"], **convert,
                 **{k: rows[0][k] for k in map_keys}},
        history={**history, "filters_left": [r["filters_left"] for r in rows],
                 "macs": [r["macs"] for r in rows]},
        tags={"stage": "paper2", "arch": arch, "layer": layer},
        artifacts=[Path(points_json)],
    )


def sweep_time(config: Mapping[str, Any], arch: str, layer: str, target: str,
               points_json: str | Path, model_dir: str | Path, out_csv: str | Path,
               raw_dir: str | Path, log: JobLog) -> RunRecord:
    """Time every sweep point on ``target``; one CSV row per point (latency, mAP, cost)."""
    s = paper2_settings(config)
    fmt = _target_format(s, target)
    tgt = s.targets[target]
    points = read_json(points_json)["rows"]
    files = [Path(model_dir) / p[f"file_{fmt}"] for p in points]
    timings = time_models(tgt, files, Path(raw_dir), s.sweep.warmup, s.sweep.runs,
                          s.sweep.passes, int(config.get("seed", 0)), log)
    rows = []
    for p, stats in zip(points, timings, strict=True):
        left = int(p["filters_left"])
        rows.append({"arch": arch, "layer": layer, "target": target, "runtime": tgt.runtime,
                     "filters_left": left, "pruned": p["pruned"], "params": p["params"],
                     "macs": p["macs"], **{f"latency_{k}": stats[k] for k in LATENCY_FIELDS},
                     "latency_pass_medians_ms": json.dumps(stats["pass_medians_ms"]),
                     "mAP": map_for(p, fmt), "convert_s": p[f"convert_s_{fmt}"]})
        log(f"{layer} {left} filters left: {stats['median_ms']:.3f} ms median on {target}")
    df = pd.DataFrame(rows)
    write_csv(df, out_csv)
    return RunRecord(
        experiment=_experiment(config), run_name=f"{arch}/paper2/sweep-{layer}/{target}",
        params={"stage": "paper2_sweep_time", "arch": arch, "layer": layer,
                "method": "single-layer", "target": target, "runtime": tgt.runtime,
                "warmup": s.sweep.warmup, "runs": s.sweep.runs, "passes": s.sweep.passes},
        metrics={"latency_median_ms_full": float(df["latency_median_ms"].iloc[0]),
                 "latency_median_ms_min": float(df["latency_median_ms"].min()),
                 "mAP_full": float(df["mAP"].iloc[0]), "params": float(df["params"].iloc[0]),
                 "macs": float(df["macs"].iloc[0]), "points": len(df)},
        history={"latency_median_ms": df["latency_median_ms"].tolist(),
                 "mAP": df["mAP"].tolist(), "filters_left": df["filters_left"].tolist()},
        tags={"stage": "paper2", "arch": arch, "layer": layer, "target": target},
        artifacts=[Path(out_csv)],
    )


def sweep_figures(config: Mapping[str, Any], arch: str, csvs: Sequence[str],
                  latency_figs: Sequence[str], accuracy_figs: Sequence[str],
                  log: JobLog) -> None:
    """Figures 5 (latency) and 8 (mAP) against filters left, every swept layer and target."""
    df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
    plot_sweeps(df, arch, "latency_median_ms", "latency (ms, median)", latency_figs)
    plot_sweeps(df, arch, "mAP", "mAP (no fine-tuning)", accuracy_figs)
    log(f"figures: {', '.join(map(str, [*latency_figs, *accuracy_figs]))}")


# --------------------------------------------------------------------------- cluster size


def _period_entry(df: pd.DataFrame, s: Paper2Settings) -> dict[str, Any]:
    left = df["filters_left"].to_numpy()
    lat = detect_period(left, df["latency_median_ms"].to_numpy(), "minima", s.period)
    acc = detect_period(left, df["mAP"].to_numpy(), "maxima", s.period)
    return {"p_lat": lat.period, "p_acc": acc.period, "P": cluster_size(acc.period, lat.period),
            "latency": lat.to_dict(), "accuracy": acc.to_dict()}


def cluster_sizes(config: Mapping[str, Any], arch: str, csvs: Sequence[str],
                  out_json: str | Path, figures: Sequence[str], log: JobLog) -> RunRecord:
    """Periods of latency minima and accuracy maxima per swept layer and target, the cluster
    size P = LCM(p_acc, p_lat), and the size used for each whole-model layer."""
    s = paper2_settings(config)
    sweeps: dict[str, dict[str, Any]] = {}
    for path in csvs:
        df = pd.read_csv(path).sort_values("filters_left")
        layer, target = str(df["layer"].iloc[0]), str(df["target"].iloc[0])
        entry = _period_entry(df, s)
        sweeps.setdefault(layer, {})[target] = entry
        log(f"{layer} on {target}: p_lat={entry['p_lat']} ({entry['latency']['reason']}); "
            f"p_acc={entry['p_acc']} ({entry['accuracy']['reason']}); P={entry['P']}")
    found = {layer: per_t[s.size_from]["P"] for layer, per_t in sweeps.items()
             if s.size_from in per_t}
    default = math.lcm(*found.values()) if found else 1
    sizes = layer_sizes(s.whole.layers[arch], found, default, s.size)
    out = {"arch": arch, "size_from": s.size_from, "override": s.size, "default": default,
           "sweeps": sweeps, "sizes": sizes}
    write_json(out_json, out)
    plot_evidence(out, figures)
    log(f"cluster sizes ({'override' if s.size != 'auto' else s.size_from}): {sizes}")
    metrics = {f"P_{layer}_{t}": e["P"] for layer, per_t in sweeps.items()
               for t, e in per_t.items()}
    metrics.update({f"p_lat_{layer}_{t}": e["p_lat"] for layer, per_t in sweeps.items()
                    for t, e in per_t.items()})
    return RunRecord(
        experiment=_experiment(config), run_name=f"{arch}/paper2/cluster-size",
        params={"stage": "paper2_cluster_size", "arch": arch, "size_from": s.size_from,
                "override": str(s.size), "P": json.dumps(sizes),
                "period": {k: v for k, v in s.period.__dict__.items()}},
        metrics={**metrics, "P_default": default},
        tags={"stage": "paper2", "arch": arch},
        artifacts=[Path(out_json)],
    )


# --------------------------------------------------------------------------- whole model


def _finetuner(config: Mapping[str, Any], s: Paper2Settings, arch: str, spec: Any,
               anchors: np.ndarray, log: JobLog) -> Any:
    """A ``finetune(model, spec)`` callable running ``paper2.whole.finetune.updates`` optimiser
    steps at ``lr_factor`` x the base learning rate (constant, no warm-up). Only the training
    images those updates visit are loaded: ``updates`` batches, spread over as few epochs as
    the training split allows."""
    from edgeprune.dataset import to_detection_data
    from edgeprune.train import TrainConfig, recalibrate, steps_per_epoch, train

    anns = load_sets(C.devkit_root(config), config["data"]["train_sets"])
    base = C.train_config(config, arch)
    ft = s.whole.finetune
    batch = min(base.batch_size, len(anns))
    epochs = math.ceil(ft.updates / steps_per_epoch(len(anns), batch))
    per_epoch = math.ceil(ft.updates / epochs)
    rng = np.random.default_rng(base.seed)
    chosen = np.sort(rng.permutation(len(anns))[:per_epoch * batch])
    log(f"fine-tuning data: {len(chosen)} of {len(anns)} training images, {epochs} epoch(s) "
        f"of {per_epoch} updates")
    subset = to_detection_data([anns[i] for i in chosen], C.classes(config), spec.input_size,
                               keep_difficult=bool(config["data"].get("keep_difficult", False)))
    cfg = TrainConfig(**{**base.__dict__, "epochs": epochs, "batch_size": batch,
                         "learning_rate": base.learning_rate * ft.lr_factor,
                         "warmup_epochs": 0.0, "min_lr_fraction": 1.0})

    def finetune(model: Any, _spec: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        hist = train(model, subset, anchors, cfg, log=lambda m: None)
        recalibrate(model, subset, cfg, log=lambda m: None)
        return {"finetune_updates": epochs * steps_per_epoch(len(subset), batch),
                "finetune_lr": cfg.learning_rate, "finetune_loss": hist["loss"][-1],
                "finetune_s": time.perf_counter() - t0}

    return finetune


def whole_build(config: Mapping[str, Any], arch: str, method: str, model_path: str | Path,
                spec_path: str | Path, sizes_json: str | Path, out_dir: str | Path,
                out_json: str | Path, threads: int, log: JobLog) -> RunRecord:
    """Prune the configured layers with ``method`` (filter | cluster): the one-shot series and,
    if enabled, the fine-tuned iterative series; write each step's model files and a JSON
    with widths, cost and mAP."""
    s = paper2_settings(config)
    model, spec, keras, anchors = _load_base(config, model_path, spec_path, threads)
    sizes = read_json(sizes_json)["sizes"]
    plan = WholePlan(layers=s.whole.layers[arch], sizes={k: int(sizes[k]) for k in
                                                         s.whole.layers[arch]},
                     min_left=s.whole.min_filters, every=s.whole.measure_every,
                     steps=s.whole.steps)
    points = plan_points(model, spec, plan)
    log(f"{arch}/{method}: layers {plan.layers}, cluster sizes {plan.sizes}; measuring at "
        f"{[c for _, c in points]} filters removed")
    test = load_test_set(config, spec.input_size, anchors, s.eval_images)
    formats = _formats(s)
    out = Path(out_dir)

    def measure_as(series: str) -> Any:
        def measure(m: Any, sp: Any, step: int) -> dict[str, Any]:
            arts = write_artifacts(m, out / f"{series}_{step:02d}", formats)
            row: dict[str, Any] = {**model_cost(m)}
            for fmt, art in arts.items():
                row[f"file_{fmt}"] = art.path.name
            maps = model_maps(m, arts, s.accuracy, test, threads)
            row.update(maps)
            log(f"{series} step {step}: {row['params']:,} params, " + ", ".join(
                f"{k}={v:.4f}" for k, v in maps.items()))
            return row
        return measure

    base_row = {"method": "base", "finetuned": False, "step": 0, "removed": 0,
                "widths": {k: int(v) for k, v in plan_widths(spec, plan).items()},
                **measure_as("base")(model, spec, 0)}
    series = {"oneshot": run_series(model, spec, plan, method, points, measure_as("oneshot"),
                                    None, keras)}
    if s.whole.finetune.enabled:
        tune = _finetuner(config, s, arch, spec, anchors, log)
        fresh = load_keras(model_path, keras)
        series["finetuned"] = run_series(fresh, spec, plan, method, points,
                                         measure_as("finetuned"), tune, keras)
    write_json(out_json, {"arch": arch, "method": method, "sizes": plan.sizes,
                          "layers": plan.layers, "points": points, "formats": list(formats),
                          "base": base_row, "series": series})
    key = next(k for k in base_row if k.startswith("mAP_"))
    metrics = {"removed_final": series["oneshot"][-1]["removed"], f"{key}_base": base_row[key]}
    history = {}
    for name, rows in series.items():
        metrics[f"{key}_{name}_final"] = rows[-1][key]
        history[f"{key}_{name}"] = [r[key] for r in rows]
        history[f"params_{name}"] = [r["params"] for r in rows]
        history[f"macs_{name}"] = [r["macs"] for r in rows]
    ft = s.whole.finetune
    return RunRecord(
        experiment=_experiment(config), run_name=f"{arch}/paper2/whole-{method}/build",
        params={"stage": "paper2_whole_build", "arch": arch, "method": method,
                "P": json.dumps(plan.sizes), "layers": ",".join(plan.layers),
                "measure_every": plan.every, "steps": plan.steps, "min_filters": plan.min_left,
                "finetune_updates": ft.updates if ft.enabled else 0,
                "finetune_lr_factor": ft.lr_factor},
        metrics={**metrics, "params_base": base_row["params"], "macs_base": base_row["macs"]},
        history=history,
        tags={"stage": "paper2", "arch": arch, "method": method},
        artifacts=[Path(out_json)],
    )


def plan_widths(spec: Any, plan: WholePlan) -> dict[str, int]:
    """Filters per pruned layer of the unpruned model."""
    from edgeprune.models import resolve_widths

    widths = resolve_widths(spec)
    return {k: widths[k] for k in plan.layers}


def _whole_rows(builds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Base row (once) and every series row of every build JSON, with its model directory key."""
    rows = [dict(builds[0]["base"], method="base", series="base", build=0)]
    for b, build in enumerate(builds):
        for name, series in build["series"].items():
            rows += [dict(r, series=name, build=b) for r in series]
    return rows


def whole_time(config: Mapping[str, Any], arch: str, target: str, build_jsons: Sequence[str],
               model_dirs: Sequence[str], spec_path: str | Path, video: str | Path,
               out_csv: str | Path, raw_dir: str | Path, log: JobLog) -> RunRecord:
    """Time every whole-model step on ``target`` (one timing per distinct set of widths) and
    the application frame rate, over ``video``, of the models that enter Tables II and III."""
    s = paper2_settings(config)
    fmt = _target_format(s, target)
    tgt = s.targets[target]
    builds = [read_json(p) for p in build_jsons]
    rows = _whole_rows(builds)
    distinct: dict[str, Path] = {}
    for r in rows:
        key = json.dumps(r["widths"], sort_keys=True)
        distinct.setdefault(key, Path(model_dirs[r["build"]]) / r[f"file_{fmt}"])
    stats = time_models(tgt, list(distinct.values()), Path(raw_dir), s.whole.warmup,
                        s.whole.runs, s.whole.passes, int(config.get("seed", 0)), log)
    timed = dict(zip(distinct, stats, strict=True))
    for r in rows:
        r["latency"] = timed[json.dumps(r["widths"], sort_keys=True)]
        log(f"{r['method']}/{r['series']} step {r['step']} ({r['removed']} removed): "
            f"{r['latency']['median_ms']:.3f} ms")
    app = _app_fps(config, s, tgt, fmt, rows, model_dirs, spec_path, video, Path(raw_dir), log)
    table = []
    for r in rows:
        fps = app.get((r["series"], r["method"], r["step"]), (math.nan, math.nan))
        table.append({"arch": arch, "target": target, "runtime": tgt.runtime,
                      "method": r["method"], "finetuned": bool(r["finetuned"]),
                      "step": r["step"], "removed": r["removed"],
                      "widths": json.dumps(r["widths"]), "params": r["params"],
                      "macs": r["macs"],
                      **{f"latency_{k}": r["latency"][k] for k in LATENCY_FIELDS},
                      "mAP": map_for(r, fmt), "app_frame_ms": fps[0], "app_fps": fps[1]})
    df = pd.DataFrame(table)
    write_csv(df, out_csv)
    metrics: dict[str, float] = {"latency_median_ms_base": float(df["latency_median_ms"][0])}
    history: dict[str, list[float]] = {}
    for (method, ft), sub in df[df["method"] != "base"].groupby(["method", "finetuned"]):
        tag = f"{method}_{'ft' if ft else 'oneshot'}"
        metrics[f"latency_median_ms_{tag}_final"] = float(sub["latency_median_ms"].iloc[-1])
        history[f"latency_median_ms_{tag}"] = sub["latency_median_ms"].tolist()
        history[f"mAP_{tag}"] = sub["mAP"].tolist()
    metrics.update({f"app_fps_{k[1]}_{k[0]}": v[1] for k, v in app.items()})
    return RunRecord(
        experiment=_experiment(config), run_name=f"{arch}/paper2/whole/{target}",
        params={"stage": "paper2_whole_time", "arch": arch, "target": target,
                "runtime": tgt.runtime, "method": "filter,cluster",
                "P": json.dumps(builds[0]["sizes"]), "warmup": s.whole.warmup,
                "runs": s.whole.runs, "passes": s.whole.passes},
        metrics=metrics, history=history,
        tags={"stage": "paper2", "arch": arch, "target": target},
        artifacts=[Path(out_csv)],
    )


def _app_fps(config: Mapping[str, Any], s: Paper2Settings, tgt: Any, fmt: str,
             rows: Sequence[Mapping[str, Any]], model_dirs: Sequence[str],
             spec_path: str | Path, video: str | Path, raw_dir: Path,
             log: JobLog) -> dict[tuple[str, str, int], tuple[float, float]]:
    """Application frame rate over the clip (JPEG decoding, resize, inference, box decoding,
    NMS; timed frames / wall time) and its frame time, for the unpruned model and each method's
    table-step model, in ``paper2.whole.passes`` passes; on any target that can run Python
    (local or ssh; adb targets get none)."""
    from edgeprune.app_fps import run_app_on_target
    from edgeprune.stages.devices import app_postprocess

    if tgt.transport == "adb":
        log(f"{tgt.name}: no application FPS over adb (no Python on the device); skipped")
        return {}
    want = series_name(s.table_finetuned)
    chosen = [r for r in rows if r["method"] == "base"][:1]
    for method in ("filter", "cluster"):
        series = [r for r in rows if r["method"] == method and r["series"] == want]
        if series:
            chosen.append(pick_step(series, s.table_step))
    spec, raw = load_spec(spec_path)
    anchors = anchors_from_spec(raw)
    # Like the latency passes: every pass in a fresh seeded order, FPS = median over passes,
    # so the machine's drift does not favour whichever model happens to run first.
    rng = np.random.default_rng(int(config.get("seed", 0)))
    fps_runs: list[list[float]] = [[] for _ in chosen]
    for p in range(s.whole.passes):
        for i in rng.permutation(len(chosen)):
            r = chosen[i]
            result = run_app_on_target(
                tgt, Path(model_dirs[r["build"]]) / r[f"file_{fmt}"], anchors, video,
                raw_dir / f"app_{r['method']}_{r['step']}_p{p + 1}.log", spec.input_size,
                spec.num_classes, app_postprocess(config), warmup_frames=s.app_warmup,
                max_frames=s.app_frames)
            fps_runs[i].append(float(result["fps"]))
            log(f"application pass {p + 1}: {r['method']} step {r['step']}: "
                f"{result['fps']:.1f} FPS ({result['frames']} frames)")
    out = {}
    for r, runs in zip(chosen, fps_runs, strict=True):
        fps = float(np.median(runs))
        out[(r["series"], r["method"], int(r["step"]))] = (1000.0 / fps, fps)
    return out


# --------------------------------------------------------------------------- report


def figure_paths(figure_dir: str | Path, name: str) -> list[Path]:
    """The PNG and PDF files of one figure."""
    return [Path(figure_dir) / f"{name}.{ext}" for ext in ("png", "pdf")]


def report_figures(archs: Sequence[str]) -> dict[str, list[str]]:
    """Names of the figures the report stage writes, per architecture."""
    return {a: [f"fig10_latency_{a}", f"fig12_map_{a}"] for a in archs}


def _markdown(df: pd.DataFrame, digits: int = 3) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _period_table(sizes: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for doc in sizes:
        for layer, per_t in doc["sweeps"].items():
            for target, e in per_t.items():
                lat, acc = e["latency"], e["accuracy"]
                rows.append({
                    "arch": doc["arch"], "layer": layer, "target": target,
                    "p_lat": e["p_lat"],
                    "lat strength": lat["strength"], "lat threshold": lat["threshold"],
                    "lat best": lat["best_period"], "p_acc": e["p_acc"],
                    "acc strength": acc["strength"], "acc threshold": acc["threshold"],
                    "P": e["P"]})
    return pd.DataFrame(rows)


def _closing_note(s: Paper2Settings, periods: pd.DataFrame, sizes: Sequence[Mapping[str, Any]],
                  t2: pd.DataFrame, t3: pd.DataFrame, t1: pd.DataFrame) -> str:
    host = [n for n, t in s.targets.items() if t.transport == "local"]
    found = periods[(periods["target"].isin(host)) & (periods["p_lat"] > 1)] \
        if len(periods) else periods
    if len(found):
        verdict = "Yes: a latency period was detected for " + ", ".join(
            f"{r.arch}/{r.layer} on {r.target} (p_lat = {r.p_lat})"
            for r in found.itertuples()) + "."
    else:
        verdict = ("No: on the host CPU runtimes no swept layer shows latency minima with a "
                   "period that beats shuffled data, as the paper saw for its CPU and GPU.")
    used = "; ".join(f"{d['arch']}: {d['sizes']}" for d in sizes)
    step = "last measured step" if s.table_step < 0 and s.table_step == -1 else \
        f"step {s.table_step}"
    lines = [
        "# Paper 2 on this machine: cluster pruning vs filter pruning", "",
        "## Do the host CPU runtimes show a latency period?", "", verdict, "",
        "Evidence per swept layer and target (strength of the best phase contrast of the "
        "chosen period; threshold = 1 - alpha quantile of the same maximum on shuffled "
        "residuals; `lat best` is the strongest candidate before the harmonic rule):", "",
        _markdown(periods) if len(periods) else "(no sweeps)", "",
        f"Cluster sizes used for whole-model pruning: {used}.", "",
        f"## Table II: inference (ms, median) at the {step}, "
        f"{'fine-tuned' if s.table_finetuned else 'no fine-tuning'}", "",
        _markdown(t2), "",
        "Paper 2, Table II (ms):", "", _markdown(paper_table(PAPER_TABLE2, False), 2), "",
        "(The paper prints -1.97 % for the GPU filter-pruning gain; its own times, 22.33 and "
        "21.89 ms, give +1.97 %, as computed above.)", "",
        "## Table III: application FPS", "", _markdown(t3), "",
        "Paper 2, Table III (FPS):", "", _markdown(paper_table(PAPER_TABLE3, True), 3), "",
        "Application FPS here is timed frames / wall-clock time over the `app` clip (the demo "
        "clip from the test split unless `app.video` names one): JPEG decoding, resize to the "
        "model input, inference, box decoding and NMS per frame, on every target that runs "
        "Python (this machine and ssh targets; adb targets have no column).", "",
        "## Table I: filters per pruned layer", "", _markdown(t1, 0), "",
    ]
    return "\n".join(lines) + "\n"


def report(config: Mapping[str, Any], sizes_jsons: Sequence[str], build_jsons: Sequence[str],
           whole_csvs: Sequence[str], table1_csv: str | Path, table2_csv: str | Path,
           table3_csv: str | Path, periods_csv: str | Path, summary_md: str | Path,
           figure_dir: str | Path, log: JobLog) -> RunRecord:
    """Tables I-III, Figures 10 and 12, the period table and the closing note."""
    s = paper2_settings(config)
    sizes = [read_json(p) for p in sizes_jsons]
    builds: dict[str, dict[str, Any]] = {}
    for path in build_jsons:
        b = read_json(path)
        builds.setdefault(b["arch"], {})[b["method"]] = b
    whole = pd.concat([pd.read_csv(p) for p in whole_csvs], ignore_index=True)
    t1 = pd.concat([table1(a, builds[a], s.table_finetuned, s.table_step) for a in s.archs],
                   ignore_index=True)
    t2 = speed_table(whole, "latency_median_ms", s.table_finetuned, s.table_step, False)
    t3 = speed_table(whole, "app_fps", s.table_finetuned, s.table_step, True)
    periods = _period_table(sizes)
    for df, path in ((t1, table1_csv), (t2, table2_csv), (t3, table3_csv),
                     (periods, periods_csv)):
        write_csv(df, path)
    for arch in s.archs:
        sub = whole[whole["arch"] == arch]
        names = report_figures([arch])[arch]
        plot_whole(sub, arch, "latency_median_ms", "latency (ms, median)", "target",
                   figure_paths(figure_dir, names[0]))
        acc = sub[sub["target"] == s.size_from]
        label = "mAP (Keras model)" if s.accuracy == "keras" else f"mAP ({s.size_from} file)"
        plot_whole(acc, arch, "mAP", label, "finetuned", figure_paths(figure_dir, names[1]))
    write_text(summary_md, _closing_note(s, periods, sizes, t2, t3, t1))
    log("\n" + t2.to_string(index=False))
    metrics = {}
    for _, r in t2.iterrows():
        if str(r["row"]).startswith("gain"):
            kind = "filter" if "filter" in r["row"] else "cluster"
            for target in s.targets:
                if target in r and pd.notna(r[target]):
                    metrics[f"gain_pct_{kind}_{r['arch']}_{target}"] = float(r[target])
    return RunRecord(
        experiment=_experiment(config), run_name="paper2/report",
        params={"stage": "paper2_report", "archs": ",".join(s.archs),
                "targets": ",".join(s.targets), "table_step": s.table_step,
                "finetuned": s.table_finetuned},
        metrics=metrics, tags={"stage": "paper2"},
        artifacts=[Path(table1_csv), Path(table2_csv), Path(table3_csv), Path(summary_md)],
    )


# --------------------------------------------------------------------------- OpenVINO


def openvino_ir(config: Mapping[str, Any], arch: str, variant: str, precision: str,
                model_path: str | Path, xml_out: str | Path, threads: int,
                log: JobLog) -> RunRecord:
    """Convert a Keras detector to OpenVINO IR with fp32 or fp16 weights (static batch 1)."""
    from edgeprune.openvino_rt import convert_to_ir, ir_files
    from edgeprune.size import file_sizes

    if precision not in ("fp32", "fp16"):
        raise ConfigError(f"OpenVINO precision must be fp32 or fp16, got {precision!r}")
    _, keras = setup(threads, int(config.get("seed", 0)))
    model = load_keras(model_path, keras)
    t0 = time.perf_counter()
    xml = convert_to_ir(model, xml_out, fp16=precision == "fp16")
    seconds = time.perf_counter() - t0
    weights = file_sizes(ir_files(xml)[1])
    log(f"{xml} ({precision}): {seconds:.1f} s, weights {weights['size_mb']:.2f} MiB")
    return RunRecord(
        experiment=_experiment(config), run_name=f"{arch}/{variant}/openvino-{precision}",
        params={"stage": "openvino_ir", "arch": arch, "variant": variant,
                "precision": precision},
        metrics={"convert_seconds": seconds, "bin_mb": weights["size_mb"],
                 "bin_gzip_mb": weights["gzip_mb"], **model_cost(model)},
        tags={"stage": "openvino_ir", "arch": arch, "variant": variant},
    )


def openvino_accuracy(config: Mapping[str, Any], eval_jsons: Sequence[str],
                      out_csv: str | Path, log: JobLog) -> pd.DataFrame:
    """mAP of Keras vs OpenVINO IR (fp32, fp16) from the shared evaluator's JSON results."""
    rows = []
    for path in eval_jsons:
        e = read_json(path)
        rows.append({"arch": e["arch"], "variant": e["variant"], "runtime": e["runtime"],
                     "mAP_voc07": e["mAP_voc07"], "mAP_all": e["mAP_all"],
                     "test_images": e["test_images"]})
    df = pd.DataFrame(rows)
    if df.empty:
        raise DataError("no evaluation results given")
    ref = df[df["runtime"] == "keras"].set_index(["arch", "variant"])["mAP_voc07"]
    df["delta_vs_keras_voc07"] = [
        r.mAP_voc07 - ref.get((r.arch, r.variant), math.nan) for r in df.itertuples()]
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df
