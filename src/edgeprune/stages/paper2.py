"""Stages of paper 2 (cluster pruning vs filter pruning), one function per Snakemake rule.

Each job of a sweep or a pruning series builds its thinned models in one process; the model
files are written by a *build* job (no target held, runs in parallel with others) and timed by
a *time* job that holds the target's Snakemake resource, so timings never overlap on a target.
With ``paper2.backend`` a list, each job runs for one of them: the ``backend`` argument (``None``:
the first listed); :mod:`edgeprune.stages.backends` sets the two side by side.
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
from edgeprune.compression.cluster.backend import get_backend
from edgeprune.compression.cluster.convert import RUNTIME_FORMAT
from edgeprune.compression.cluster.cost import model_cost
from edgeprune.compression.cluster.measure import (
    TestSet,
    compare_models,
    format_maps,
    latency_columns,
    map_columns,
    model_maps,
)
from edgeprune.compression.cluster.period import (
    cluster_phase,
    cluster_size,
    detect_period,
    detect_steps,
)
from edgeprune.compression.cluster.report import (
    GAIN_ROWS,
    PAPER_TABLE2,
    PAPER_TABLE3,
    SERIES_KINDS,
    SERIES_TITLES,
    evidence_phrase,
    gain_sentences,
    host_verdicts,
    paper_table,
    pick_step,
    plot_evidence,
    plot_sweeps,
    plot_whole,
    series_name,
    speed_table,
    table1,
    with_intervals,
)
from edgeprune.compression.cluster.settings import Paper2Settings, paper2_settings
from edgeprune.compression.cluster.stats import app_fps
from edgeprune.compression.cluster.sweep import sweep_isolated, sweep_layer
from edgeprune.compression.cluster.whole import (
    WholePlan,
    default_size,
    layer_phases,
    layer_sizes,
    plan_points,
    run_series,
)
from edgeprune.data.voc import load_images, load_sets
from edgeprune.detection.model_io import anchors_from_spec, load_keras, load_spec
from edgeprune.errors import ConfigError, DataError
from edgeprune.fileio import read_json, write_json, write_text
from edgeprune.jobs import JobLog
from edgeprune.measurement.bootstrap import bootstrap_settings
from edgeprune.reporting.tracking import RunRecord
from edgeprune.stages.report import write_csv
from edgeprune.tfenv import setup


def load_test_set(config: Mapping[str, Any], input_size: tuple[int, int],
                  anchors: np.ndarray, limit: int | None = None) -> TestSet:
    """Read ``data.test_sets`` (its first ``limit`` images, if given) resized to
    ``input_size``."""
    anns = load_sets(C.devkit_root(config), config["data"]["test_sets"])[:limit]
    ev = config.get("evaluation", {})
    resamples, seed = bootstrap_settings({"evaluation": ev, "seed": config.get("seed", 0)})
    return TestSet(anns, load_images(anns, input_size), C.classes(config), anchors,
                   C.postprocess_config(config), ev.get("metric", "voc07"),
                   float(ev.get("iou_threshold", 0.5)), int(ev.get("batch_size", 32)),
                   resamples, seed)


def experiment_name(config: Mapping[str, Any]) -> str:
    return config.get("mlflow", {}).get("experiment", "edgeprune")


def _formats(s: Paper2Settings) -> tuple[str, ...]:
    return tuple(sorted({RUNTIME_FORMAT[t.runtime] for t in s.targets.values()}))


def target_format(s: Paper2Settings, target: str) -> str:
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
                threads: int, log: JobLog, backend: str | None = None) -> RunRecord:
    """Thin ``layer`` of the base model point by point; write each point's model files and a
    JSON with removed filters, parameters, MACs, conversion time and mAP (``paper2.accuracy``)
    for the whole network (``rows``) and, if ``paper2.sweep.isolated.enabled``, the files of
    the layer alone (``layer_rows``)."""
    s = paper2_settings(config).for_backend(backend)
    if layer not in s.sweep.layers.get(arch, []):
        raise ConfigError(f"config key 'paper2.sweep.layers.{arch}': {layer!r} is not listed")
    model, spec, keras, anchors = _load_base(config, model_path, spec_path, threads)
    backend = get_backend(s.backend, keras)
    model = backend.load(model, spec)          # torch: the ported Keras base
    test = load_test_set(config, spec.input_size, anchors, s.eval_images)
    formats = _formats(s)
    sw = s.sweep
    log(f"{arch}/{layer}: sweep step {sw.step} down to {sw.min_filters} filters (at most "
        f"{sw.max_removed} removed), formats {formats}, {len(test.annotations)} test images")
    t0 = time.perf_counter()
    rows = sweep_layer(model, spec, layer, sw.step, sw.min_filters, formats, Path(out_dir),
                       test, threads, log, s.accuracy, keras, sw.max_removed, backend)
    seconds = time.perf_counter() - t0
    layer_rows: list[dict[str, Any]] = []
    if sw.isolated:
        t1 = time.perf_counter()
        layer_rows = sweep_isolated(model, layer, sw.isolated_step, sw.min_filters, formats,
                                    Path(out_dir), log, keras, sw.max_removed, backend)
        log(f"{layer} alone: {len(layer_rows)} points built in {time.perf_counter() - t1:.1f} s")
    write_json(points_json, {"arch": arch, "layer": layer, "formats": list(formats),
                             "step": sw.step, "isolated_step": sw.isolated_step,
                             "rows": rows, "layer_rows": layer_rows})
    map_keys = [k for k in rows[0] if k.startswith("mAP_")]
    history = {k: [r[k] for r in rows] for k in map_keys}
    convert = {f"convert_s_mean_{f}": float(np.mean([r[f"convert_s_{f}"] for r in rows]))
               for f in formats}
    convert.update({f"layer_convert_s_mean_{f}": float(np.mean(
        [r[f"convert_s_{f}"] for r in layer_rows])) for f in formats if layer_rows})
    return RunRecord(
        experiment=experiment_name(config), run_name=f"{arch}/paper2/sweep-{layer}/build",
        params={"stage": "paper2_sweep_build", "arch": arch, "layer": layer,
                "backend": s.backend,
                "method": "single-layer", "step": sw.step, "min_filters": sw.min_filters,
                "max_removed": str(sw.max_removed), "isolated": sw.isolated,
                "isolated_step": sw.isolated_step, "formats": ",".join(formats),
                "accuracy": s.accuracy},
        metrics={"points": len(rows), "layer_points": len(layer_rows),
                 "width": rows[0]["filters_left"], "sweep_build_seconds": seconds,
                 "params": rows[0]["params"], "macs": rows[0]["macs"], **convert,
                 **{k: rows[0][k] for k in map_keys}},
        history={**history, "filters_left": [r["filters_left"] for r in rows],
                 "macs": [r["macs"] for r in rows]},
        tags={"stage": "paper2", "arch": arch, "layer": layer},
        artifacts=[Path(points_json)],
    )


def _sweep_rows(arch: str, target: Any, fmt: str, points: Sequence[Mapping[str, Any]],
                comparison: Any) -> list[dict[str, Any]]:
    """CSV rows of one sweep scope: point, cost, latency with interval and block medians,
    paired difference to the unpruned point, mAP (network scope; NaN for the layer alone)."""
    rows = []
    for i, p in enumerate(points):
        rows.append({"arch": arch, "layer": p["layer"], "target": target.name,
                     "runtime": target.runtime, "scope": p.get("scope", "network"),
                     "filters_left": int(p["filters_left"]), "pruned": p["pruned"],
                     "params": p["params"], "macs": p["macs"],
                     **latency_columns(comparison, i),
                     **map_columns(p, fmt), "convert_s": p[f"convert_s_{fmt}"]})
    return rows


def sweep_time(config: Mapping[str, Any], arch: str, layer: str, target: str,
               points_json: str | Path, model_dir: str | Path, out_csv: str | Path,
               raw_dir: str | Path, log: JobLog, backend: str | None = None) -> RunRecord:
    """Time every sweep point on ``target``: all whole-network points in one interleaved
    comparison, all isolated-layer points in another (:mod:`edgeprune.measurement.compare`); one
    CSV row
    per point and scope (latency median, 95 % interval, block medians, paired difference to
    the unpruned point, mAP, cost)."""
    s = paper2_settings(config).for_backend(backend)
    fmt = target_format(s, target)
    tgt = s.targets[target]
    doc = read_json(points_json)
    settings = s.sweep.timing.compare_settings(int(config.get("seed", 0)))
    rows: list[dict[str, Any]] = []
    for scope, points in (("network", doc["rows"]), ("layer", doc.get("layer_rows") or [])):
        if not points:
            continue
        files = [Path(model_dir) / p[f"file_{fmt}"] for p in points]
        comparison = compare_models(tgt, files, settings, Path(raw_dir), scope, log)
        scoped = _sweep_rows(arch, tgt, fmt, [dict(p, scope=scope) for p in points],
                             comparison)
        for r in scoped:
            log(f"{layer} ({scope}) {r['filters_left']} filters left: "
                f"{r['latency_median_ms']:.4f} ms [{r['latency_ci95_lo_ms']:.4f}, "
                f"{r['latency_ci95_hi_ms']:.4f}] on {target}")
        rows += scoped
    df = pd.DataFrame(rows)
    df.insert(1, "backend", s.backend)
    write_csv(df, out_csv)
    net = df[df["scope"] == "network"]
    metrics = {"latency_median_ms_full": float(net["latency_median_ms"].iloc[0]),
               "latency_median_ms_min": float(net["latency_median_ms"].min()),
               "mAP_full": float(net["mAP"].iloc[0]), "params": float(net["params"].iloc[0]),
               "macs": float(net["macs"].iloc[0]), "points": len(net)}
    lay = df[df["scope"] == "layer"]
    if len(lay):
        metrics.update(layer_latency_median_ms_full=float(lay["latency_median_ms"].iloc[0]),
                       layer_points=len(lay))
    t = s.sweep.timing
    return RunRecord(
        experiment=experiment_name(config), run_name=f"{arch}/paper2/sweep-{layer}/{target}",
        params={"stage": "paper2_sweep_time", "arch": arch, "layer": layer,
                "backend": s.backend,
                "method": "single-layer", "target": target, "runtime": tgt.runtime,
                "seconds": t.seconds, "block_runs": t.block_runs,
                "blocks_per_group": t.blocks_per_group, "warmup": t.warmup,
                "min_groups": t.min_groups, "seed": settings.seed},
        metrics=metrics,
        history={"latency_median_ms": net["latency_median_ms"].tolist(),
                 "mAP": net["mAP"].tolist(), "filters_left": net["filters_left"].tolist(),
                 **({"layer_latency_median_ms": lay["latency_median_ms"].tolist()}
                    if len(lay) else {})},
        tags={"stage": "paper2", "arch": arch, "layer": layer, "target": target},
        artifacts=[Path(out_csv)],
    )


def sweep_figures(config: Mapping[str, Any], arch: str, csvs: Sequence[str],
                  latency_figs: Sequence[str], accuracy_figs: Sequence[str],
                  log: JobLog) -> None:
    """Figures 5 (latency with 95 % bands: whole network and the layer alone) and 8 (mAP)
    against filters left, every swept layer and target."""
    df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
    plot_sweeps(df, arch, "latency_median_ms", "latency (ms, median)", latency_figs)
    net = df[df["scope"] == "network"] if "scope" in df else df
    plot_sweeps(net, arch, "mAP", "mAP (no fine-tuning)", accuracy_figs)
    log(f"figures: {', '.join(map(str, [*latency_figs, *accuracy_figs]))}")


# --------------------------------------------------------------------------- cluster size


def _replicates(df: pd.DataFrame) -> list[Any] | None:
    """Block medians (groups x blocks) per point, from the sweep CSV; None when absent."""
    if "latency_block_medians_ms" not in df:
        return None
    return [json.loads(v) for v in df["latency_block_medians_ms"]]


def _period_entry(df: pd.DataFrame, s: Paper2Settings) -> dict[str, Any]:
    """Period evidence of one sweep on one target: latency minima of the whole network and,
    when timed, of the layer alone (replicate null from the block medians), accuracy maxima
    (network mAP, residual fallback), and the cluster size P = LCM(p_acc, p_lat) with its
    phase. ``p_lat`` comes from the layer alone when it was timed (its staircase is not
    diluted by the rest of the network), else from the whole network."""
    scope = df["scope"] if "scope" in df else pd.Series("network", index=df.index)
    net = df[scope == "network"].sort_values("filters_left")
    lay = df[scope == "layer"].sort_values("filters_left")
    left = net["filters_left"].to_numpy()
    lat = detect_period(left, net["latency_median_ms"].to_numpy(), "minima", s.period,
                        replicates=_replicates(net))
    acc = detect_period(left, net["mAP"].to_numpy(), "maxima", s.period)
    entry: dict[str, Any] = {"latency": lat.to_dict(), "accuracy": acc.to_dict()}
    chosen, source = lat, "network"
    if len(lay):
        alone = detect_period(lay["filters_left"].to_numpy(),
                              lay["latency_median_ms"].to_numpy(), "minima", s.period,
                              replicates=_replicates(lay))
        entry["layer_latency"] = alone.to_dict()
        chosen, source = alone, "layer"
    # Flat blocks with jumps at their boundaries (channel padding), on step-1 series.
    for kind, part in (("steps", net), ("layer_steps", lay)):
        if len(part) and set(np.diff(part["filters_left"].to_numpy())) == {1}:
            steps = detect_steps(part["filters_left"].to_numpy(), _replicates(part), s.period)
            entry[kind] = steps.to_dict()
            if chosen.verdict != "period" and steps.verdict == "period":
                chosen, source = steps, f"{'layer' if kind == 'layer_steps' else 'network'} " \
                                        "block steps"
    entry.update(p_lat=chosen.period, r_lat=chosen.phase, lat_source=source,
                 p_acc=acc.period, r_acc=acc.phase,
                 P=cluster_size(acc.period, chosen.period),
                 phase=cluster_phase(acc.period, acc.phase, chosen.period, chosen.phase))
    return entry


def cluster_sizes(config: Mapping[str, Any], arch: str, csvs: Sequence[str],
                  out_json: str | Path, figures: Sequence[str], log: JobLog,
                  backend: str | None = None) -> RunRecord:
    """Periods of latency minima and accuracy maxima per swept layer and target, the cluster
    size P = LCM(p_acc, p_lat) with its phase, and the size (and phase) used for each
    whole-model layer: the config override, else the layer's own sweep on ``size_from``, else
    the most common detected P."""
    s = paper2_settings(config).for_backend(backend)
    sweeps: dict[str, dict[str, Any]] = {}
    for path in csvs:
        df = pd.read_csv(path)
        layer, target = str(df["layer"].iloc[0]), str(df["target"].iloc[0])
        entry = _period_entry(df, s)
        sweeps.setdefault(layer, {})[target] = entry
        for kind in SERIES_KINDS:
            if kind in entry:
                log(f"{layer} on {target}, {kind}: " + evidence_phrase(entry[kind]))
        log(f"{layer} on {target}: P = {entry['P']} (phase {entry['phase']}, latency from the "
            f"{entry['lat_source']} series)")
    found = {layer: per_t[s.size_from]["P"] for layer, per_t in sweeps.items()
             if s.size_from in per_t}
    found_phase = {layer: per_t[s.size_from]["phase"] for layer, per_t in sweeps.items()
                   if s.size_from in per_t}
    default = default_size(found)
    layers = s.whole.layers[arch]
    sizes = layer_sizes(layers, found, default, s.size)
    # The detected phase aligns the clusters only when the sizes are the detected ones.
    phases = layer_phases(layers, sizes, found, found_phase) if s.size == "auto" else \
        dict.fromkeys(layers)
    out = {"arch": arch, "size_from": s.size_from, "override": s.size, "default": default,
           "sweeps": sweeps, "sizes": sizes, "phases": phases}
    write_json(out_json, out)
    plot_evidence(out, figures)
    log(f"cluster sizes ({'override' if s.size != 'auto' else s.size_from}): {sizes}, "
        f"phases {phases}")
    metrics = {f"P_{layer}_{t}": e["P"] for layer, per_t in sweeps.items()
               for t, e in per_t.items()}
    metrics.update({f"p_lat_{layer}_{t}": e["p_lat"] for layer, per_t in sweeps.items()
                    for t, e in per_t.items()})
    for layer, per_t in sweeps.items():
        for t, e in per_t.items():
            for kind in SERIES_TITLES:
                p = e.get(kind, {}).get("p_value")
                if p is not None:
                    metrics[f"p_value_{kind}_{layer}_{t}"] = float(p)
    return RunRecord(
        experiment=experiment_name(config), run_name=f"{arch}/paper2/cluster-size",
        params={"stage": "paper2_cluster_size", "arch": arch, "size_from": s.size_from,
                "backend": s.backend,
                "override": str(s.size), "P": json.dumps(sizes), "phase": json.dumps(phases),
                "period": {k: v for k, v in s.period.__dict__.items()}},
        metrics={**metrics, "P_default": default},
        tags={"stage": "paper2", "arch": arch},
        artifacts=[Path(out_json)],
    )


# --------------------------------------------------------------------------- whole model


def finetune_config(base: Any, ft: Any, epochs: int, batch: int) -> Any:
    """The TrainConfig of paper-2 fine-tuning: ``base`` (the detector's training settings) at
    ``ft.lr_factor`` x its learning rate, constant (no warm-up, no decay), with ``ft``'s
    optimiser (``sgd`` with ``ft.momentum``, as the paper's Caffe solver, or ``adam``)."""
    from edgeprune.detection.train import TrainConfig

    return TrainConfig(**{**base.__dict__, "epochs": epochs, "batch_size": batch,
                          "learning_rate": base.learning_rate * ft.lr_factor,
                          "warmup_epochs": 0.0, "min_lr_fraction": 1.0,
                          "optimizer": ft.optimizer, "momentum": ft.momentum})


def _finetuner(config: Mapping[str, Any], s: Paper2Settings, arch: str, spec: Any,
               anchors: np.ndarray, log: JobLog, backend: str = "keras") -> Any:
    """A ``finetune(model, spec)`` callable running ``paper2.whole.finetune.updates`` optimiser
    steps at ``lr_factor`` x the base learning rate (constant, no warm-up). Only the training
    images those updates visit are loaded: ``updates`` batches, spread over as few epochs as
    the training split allows."""
    from edgeprune.detection.dataset import to_detection_data
    from edgeprune.detection.train import recalibrate, steps_per_epoch, train

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
    cfg = finetune_config(base, ft, epochs, batch)
    log(f"fine-tuning: {ft.optimizer}" + (f" (momentum {ft.momentum})" if ft.optimizer == "sgd"
                                          else "") + f" at lr {cfg.learning_rate:.2e}")

    def finetune(model: Any, _spec: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        if backend == "torch":   # same data, settings and target encoding; torch loss + step
            from edgeprune.compression.torch_backend.train import finetune_torch

            hist = finetune_torch(model, subset, anchors, cfg)
        else:
            hist = train(model, subset, anchors, cfg, log=lambda m: None)
            recalibrate(model, subset, cfg, log=lambda m: None)
        return {"finetune_updates": epochs * steps_per_epoch(len(subset), batch),
                "finetune_lr": cfg.learning_rate, "finetune_loss": hist["loss"][-1],
                "finetune_s": time.perf_counter() - t0}

    return finetune


def whole_build(config: Mapping[str, Any], arch: str, method: str, model_path: str | Path,
                spec_path: str | Path, sizes_json: str | Path, out_dir: str | Path,
                out_json: str | Path, threads: int, log: JobLog,
                backend: str | None = None) -> RunRecord:
    """Prune the configured layers with ``method`` (filter | cluster): the one-shot series and,
    if enabled, the fine-tuned iterative series; write each step's model files and a JSON
    with widths, cost and mAP."""
    s = paper2_settings(config).for_backend(backend)
    model, spec, keras, anchors = _load_base(config, model_path, spec_path, threads)
    backend = get_backend(s.backend, keras)
    model = backend.load(model, spec)          # torch: the ported Keras base
    doc = read_json(sizes_json)
    sizes, phases = doc["sizes"], doc.get("phases") or {}
    layers = s.whole.layers[arch]
    plan = WholePlan(layers=layers, sizes={k: int(sizes[k]) for k in layers},
                     min_left=s.whole.min_filters, every=s.whole.measure_every,
                     steps=s.whole.steps,
                     phases={k: None if phases.get(k) is None else int(phases[k])
                             for k in layers})
    points = plan_points(model, spec, plan, backend)
    log(f"{arch}/{method}: layers {plan.layers}, cluster sizes {plan.sizes}, phases "
        f"{plan.phases}; measuring at "
        f"{[c for _, c in points]} filters removed")
    test = load_test_set(config, spec.input_size, anchors, s.eval_images)
    formats = _formats(s)
    out = Path(out_dir)

    def measure_as(series: str) -> Any:
        def measure(m: Any, sp: Any, step: int) -> dict[str, Any]:
            arts = backend.artifacts(m, out / f"{series}_{step:02d}", formats)
            row: dict[str, Any] = {**backend.cost(m)}
            for fmt, art in arts.items():
                row[f"file_{fmt}"] = art.path.name
            maps = model_maps(m, arts, s.accuracy, test, threads, backend.runner(m),
                              backend.name)
            row.update(maps)
            log(f"{series} step {step}: {row['params']:,} params, " + format_maps(maps))
            return row
        return measure

    base_row = {"method": "base", "finetuned": False, "step": 0, "removed": 0,
                "widths": {k: int(v) for k, v in plan_widths(spec, plan).items()},
                **measure_as("base")(model, spec, 0)}
    series = {"oneshot": run_series(model, spec, plan, method, points, measure_as("oneshot"),
                                    None, keras, backend)}
    if s.whole.finetune.enabled:
        tune = _finetuner(config, s, arch, spec, anchors, log, backend.name)
        fresh = backend.load(load_keras(model_path, keras), spec)
        series["finetuned"] = run_series(fresh, spec, plan, method, points,
                                         measure_as("finetuned"), tune, keras, backend)
    write_json(out_json, {"arch": arch, "method": method, "backend": backend.name,
                          "sizes": plan.sizes,
                          "phases": plan.phases,
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
        experiment=experiment_name(config), run_name=f"{arch}/paper2/whole-{method}/build",
        params={"stage": "paper2_whole_build", "arch": arch, "method": method,
                "backend": s.backend,
                "P": json.dumps(plan.sizes), "layers": ",".join(plan.layers),
                "measure_every": plan.every, "steps": plan.steps, "min_filters": plan.min_left,
                "finetune_updates": ft.updates if ft.enabled else 0,
                "finetune_lr_factor": ft.lr_factor, "finetune_optimizer": ft.optimizer,
                "finetune_momentum": ft.momentum},
        metrics={**metrics, "params_base": base_row["params"], "macs_base": base_row["macs"]},
        history=history,
        tags={"stage": "paper2", "arch": arch, "method": method},
        artifacts=[Path(out_json)],
    )


def plan_widths(spec: Any, plan: WholePlan) -> dict[str, int]:
    """Filters per pruned layer of the unpruned model."""
    from edgeprune.detection.models import resolve_widths

    widths = resolve_widths(spec)
    return {k: widths[k] for k in plan.layers}


def whole_rows(builds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Base row (once) and every series row of every build JSON, with its model directory key."""
    rows = [dict(builds[0]["base"], method="base", series="base", build=0)]
    for b, build in enumerate(builds):
        for name, series in build["series"].items():
            rows += [dict(r, series=name, build=b) for r in series]
    return rows


def whole_time(config: Mapping[str, Any], arch: str, target: str, build_jsons: Sequence[str],
               model_dirs: Sequence[str], spec_path: str | Path, video: str | Path,
               out_csv: str | Path, raw_dir: str | Path, log: JobLog,
               backend: str | None = None) -> RunRecord:
    """Time every whole-model step on ``target`` -- one model per distinct set of widths, all
    in ONE interleaved comparison with the unpruned model first
    (:mod:`edgeprune.measurement.compare`) --
    and the application frame rate, over ``video``, of the models that enter Tables II and
    III (interleaved passes)."""
    s = paper2_settings(config).for_backend(backend)
    fmt = target_format(s, target)
    tgt = s.targets[target]
    builds = [read_json(p) for p in build_jsons]
    rows = whole_rows(builds)
    distinct: dict[str, Path] = {}
    for r in rows:
        key = json.dumps(r["widths"], sort_keys=True)
        distinct.setdefault(key, Path(model_dirs[r["build"]]) / r[f"file_{fmt}"])
    settings = s.whole.timing.compare_settings(int(config.get("seed", 0)))
    comparison = compare_models(tgt, list(distinct.values()), settings, Path(raw_dir),
                                "whole", log)
    index = {key: i for i, key in enumerate(distinct)}
    for r in rows:
        r["latency"] = latency_columns(comparison, index[json.dumps(r["widths"],
                                                                    sort_keys=True)])
        lat = r["latency"]
        log(f"{r['method']}/{r['series']} step {r['step']} ({r['removed']} removed): "
            f"{lat['latency_median_ms']:.4f} ms [{lat['latency_ci95_lo_ms']:.4f}, "
            f"{lat['latency_ci95_hi_ms']:.4f}], {lat['diff_pct']:+.2f} % vs unpruned "
            f"[{lat['diff_ci95_lo_pct']:+.2f}, {lat['diff_ci95_hi_pct']:+.2f}]")
    app = _app_fps(config, s, tgt, fmt, rows, model_dirs, spec_path, video, Path(raw_dir), log)
    table = []
    for r in rows:
        fps = app.get((r["series"], r["method"], int(r["step"])), {})
        table.append({"arch": arch, "backend": s.backend, "target": target,
                      "runtime": tgt.runtime,
                      "method": r["method"], "finetuned": bool(r["finetuned"]),
                      "step": r["step"], "removed": r["removed"],
                      "widths": json.dumps(r["widths"]), "params": r["params"],
                      "macs": r["macs"], **r["latency"], **map_columns(r, fmt),
                      "app_fps": fps.get("fps", math.nan),
                      "app_fps_ci95_lo": fps.get("lo", math.nan),
                      "app_fps_ci95_hi": fps.get("hi", math.nan),
                      "app_frame_ms": 1000.0 / fps["fps"] if fps else math.nan,
                      "app_frames_ms": json.dumps(fps.get("frames_ms")) if fps else ""})
    df = pd.DataFrame(table)
    write_csv(df, out_csv)
    metrics: dict[str, float] = {"latency_median_ms_base": float(df["latency_median_ms"][0])}
    history: dict[str, list[float]] = {}
    for (method, ft), sub in df[df["method"] != "base"].groupby(["method", "finetuned"]):
        tag = f"{method}_{'ft' if ft else 'oneshot'}"
        metrics[f"latency_median_ms_{tag}_final"] = float(sub["latency_median_ms"].iloc[-1])
        metrics[f"latency_diff_pct_{tag}_final"] = float(sub["diff_pct"].iloc[-1])
        history[f"latency_median_ms_{tag}"] = sub["latency_median_ms"].tolist()
        history[f"mAP_{tag}"] = sub["mAP"].tolist()
    metrics.update({f"fps_app_{k[1]}_{k[0]}": v["fps"] for k, v in app.items()})
    t = s.whole.timing
    return RunRecord(
        experiment=experiment_name(config), run_name=f"{arch}/paper2/whole/{target}",
        params={"stage": "paper2_whole_time", "arch": arch, "target": target,
                "backend": s.backend,
                "runtime": tgt.runtime, "method": "filter,cluster",
                "P": json.dumps(builds[0]["sizes"]), "seconds": t.seconds,
                "block_runs": t.block_runs, "blocks_per_group": t.blocks_per_group,
                "warmup": t.warmup, "min_groups": t.min_groups, "seed": settings.seed,
                "app_passes": s.app_passes},
        metrics=metrics, history=history,
        tags={"stage": "paper2", "arch": arch, "target": target},
        artifacts=[Path(out_csv)],
    )


def _app_fps(config: Mapping[str, Any], s: Paper2Settings, tgt: Any, fmt: str,
             rows: Sequence[Mapping[str, Any]], model_dirs: Sequence[str],
             spec_path: str | Path, video: str | Path, raw_dir: Path,
             log: JobLog) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Application frame rate over the clip (JPEG decoding, resize, inference, box decoding,
    NMS per frame) of the unpruned model and each method's table-step model, on any target
    that can run Python (local or ssh) with a Python runtime (adb and trtexec targets get none,
    logged).

    ``paper2.app_fps.passes`` passes; in each pass every model runs once, the models in a
    fresh seeded random order, so drift spreads over all models and passes pair. Per model:
    FPS = 1000 / mean frame time over all passes, its 95 % interval by the two-level
    bootstrap over passes and frames (:func:`edgeprune.compression.cluster.stats.app_fps`), and the
    frame
    times per pass (``frames_ms``) for the paired gains of Table III."""
    from edgeprune.measurement.app_fps import run_app_on_target
    from edgeprune.stages.devices import app_postprocess

    if tgt.transport == "adb":
        log(f"{tgt.name}: no application FPS over adb (no Python on the device); skipped")
        return {}
    if tgt.runtime == "trtexec":
        log(f"{tgt.name}: no application FPS with runtime trtexec (the app runner has no "
            f"TensorRT runtime for the {fmt} files); skipped, app_fps columns are NaN")
        return {}
    want = series_name(s.table_finetuned)
    chosen = [r for r in rows if r["method"] == "base"][:1]
    for method in ("filter", "cluster"):
        series = [r for r in rows if r["method"] == method and r["series"] == want]
        if series:
            chosen.append(pick_step(series, s.table_step))
    spec, raw = load_spec(spec_path)
    anchors = anchors_from_spec(raw)
    seed = int(config.get("seed", 0))
    rng = np.random.default_rng(seed)
    frames: list[list[list[float]]] = [[] for _ in chosen]
    orders = []
    for p in range(s.app_passes):
        order = [int(i) for i in rng.permutation(len(chosen))]
        orders.append(order)
        for i in order:
            r = chosen[i]
            result = run_app_on_target(
                tgt, Path(model_dirs[r["build"]]) / r[f"file_{fmt}"], anchors, video,
                raw_dir / f"app_{r['method']}_{r['step']}_p{p + 1}.log", spec.input_size,
                spec.num_classes, app_postprocess(config), warmup_frames=s.app_warmup,
                max_frames=s.app_frames)
            frames[i].append([float(v) for v in result["samples_ms"]["frame"]])
            log(f"application pass {p + 1}/{s.app_passes}: {r['method']} step {r['step']}: "
                f"{result['fps']:.1f} FPS ({result['frames']} frames)")
    write_json(raw_dir / "app_passes.json", {"seed": seed, "orders": orders, "models": [
        f"{r['method']}/{r['series']}/{r['step']}" for r in chosen]})
    out = {}
    for r, per_pass in zip(chosen, frames, strict=True):
        est = app_fps(per_pass, seed=seed)
        out[(r["series"], r["method"], int(r["step"]))] = {
            "fps": est.value, "lo": est.lo, "hi": est.hi, "frames_ms": per_pass}
        log(f"application FPS {r['method']} step {r['step']}: {est.value:.2f} "
            f"[{est.lo:.2f}, {est.hi:.2f}] over {len(per_pass)} passes")
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
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _period_table(sizes: Sequence[Mapping[str, Any]],
                  runtimes: Mapping[str, str]) -> pd.DataFrame:
    """One row per swept layer, target and series (whole-network latency, layer-alone latency,
    accuracy): verdict, period, phase, p-value, smallest reachable p-value, observed and
    detectable step (%), and the layer's cluster size with its phase."""
    rows = []
    for doc in sizes:
        for layer, per_t in doc["sweeps"].items():
            for target, e in per_t.items():
                for kind in SERIES_KINDS:
                    if kind not in e:
                        continue
                    ev = e[kind]
                    rows.append({
                        "arch": doc["arch"], "layer": layer, "target": target,
                        "runtime": runtimes.get(target, ""), "series": kind,
                        "verdict": ev.get("verdict"), "period": ev.get("period"),
                        "phase": ev.get("phase"), "p_value": ev.get("p_value"),
                        "min_p_value": ev.get("min_p_value"), "step_pct": ev.get("step_pct"),
                        "detectable_pct": ev.get("min_detectable_pct"),
                        "points": ev.get("points"), "replicates": ev.get("replicates"),
                        "P": e["P"], "P_phase": e.get("phase")})
    return pd.DataFrame(rows)


def _closing_note(s: Paper2Settings, periods: pd.DataFrame, sizes: Sequence[Mapping[str, Any]],
                  t2: pd.DataFrame, t3: pd.DataFrame, t1: pd.DataFrame) -> str:
    """``summary.md``: the host period verdict per runtime with its numbers, Tables II and III
    with 95 % intervals and words that follow them, the paper's tables, and Table I."""
    host = {n: t.runtime for n, t in s.targets.items() if t.transport == "local"}
    verdicts = host_verdicts(sizes, host) or ["(no sweeps on a host target)", ""]
    used = "; ".join(f"{d['arch']}: {d['sizes']}" + (
        f" (phases {d['phases']})" if any(v is not None for v in d.get("phases", {}).values())
        else "") for d in sizes)
    how = ("`size: auto` -- the detected P on " + s.size_from) if s.size == "auto" else \
        f"the configured `paper2.cluster.size` ({s.size})"
    step = "last measured step" if s.table_step == -1 else f"step {s.table_step}"
    t2_words = gain_sentences(t2, "faster", "slower") or ["(no gains)"]
    t3_words = gain_sentences(t3, "higher FPS", "lower FPS") or ["(no application FPS)"]
    lines = [
        "# Paper 2 on this machine: cluster pruning vs filter pruning", "",
        "## Do the host CPU runtimes show a latency period?", "",
        "Latency against filters left, per host runtime. Each swept layer is timed inside the "
        "whole network and, on its own, as the layer alone (its unit with its real input "
        "shape); all points of one series are timed together, interleaved. The null of the "
        "period test comes from the replicate (block) timings; `inconclusive` means the sweep "
        "could not reach p <= alpha or could not detect the step sizes that matter. "
        "'Observed step' is the dip at the best period and phase, 'detectable step' the "
        "smallest dip found with 80 % power (both % of the median latency). Step-1 series are "
        "also tested for *block steps*: latency flat over blocks of P filters with jumps at the "
        "block boundaries (kernels padding channels to blocks), on the medians of the "
        "replicates; its 'observed step' is the median jump. A runtime's verdict corrects for "
        "testing several series (Bonferroni).", "",
        *verdicts,
        "Evidence per swept layer, target and series:", "",
        _markdown(periods, 4) if len(periods) else "(no sweeps)", "",
        f"Cluster sizes used for whole-model pruning ({how}): {used}.", "",
        f"## Table II: inference (ms, median [95 % interval]) at the {step}, "
        f"{'fine-tuned' if s.table_finetuned else 'no fine-tuning'}", "",
        "All models of one architecture and target were timed in one interleaved comparison; "
        "the gain rows are paired differences (positive = faster), with 95 % intervals from a "
        "bootstrap over groups of blocks.", "",
        _markdown(with_intervals(t2)), "", *t2_words, "",
        "Paper 2, Table II (ms):", "", _markdown(paper_table(PAPER_TABLE2, False), 2), "",
        "(The paper prints -1.97 % for the GPU filter-pruning gain; its own times, 22.33 and "
        "21.89 ms, give +1.97 %, as computed above.)", "",
        "## Table III: application FPS [95 % interval]", "",
        _markdown(with_intervals(t3)), "", *t3_words, "",
        "Paper 2, Table III (FPS):", "", _markdown(paper_table(PAPER_TABLE3, True), 3), "",
        f"Application FPS here is 1000 / mean frame time over {s.app_passes} passes of the "
        "`app` clip per model (the demo clip from the test split unless `app.video` names "
        "one): JPEG decoding, resize to the model input, inference, box decoding and NMS per "
        "frame, on every target that runs Python (this machine and ssh targets; adb targets "
        "have no column). The models of a pass run in a seeded random order; intervals are a "
        "two-level bootstrap over passes and frames within passes, and gains pair the models "
        "pass by pass.", "",
        "## Table I: filters per pruned layer", "", _markdown(t1, 0), "",
    ]
    return "\n".join(lines) + "\n"


def report(config: Mapping[str, Any], sizes_jsons: Sequence[str], build_jsons: Sequence[str],
           whole_csvs: Sequence[str], table1_csv: str | Path, table2_csv: str | Path,
           table3_csv: str | Path, periods_csv: str | Path, summary_md: str | Path,
           figure_dir: str | Path, log: JobLog, backend: str | None = None) -> RunRecord:
    """Tables I-III, Figures 10 and 12, the period table and the closing note."""
    s = paper2_settings(config).for_backend(backend)
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
    periods = _period_table(sizes, {n: t.runtime for n, t in s.targets.items()})
    for t in (t1, t2, t3):
        t.insert(1, "backend", s.backend)
    for df, path in ((t1, table1_csv), (t2, table2_csv), (t3, table3_csv),
                     (periods, periods_csv)):
        write_csv(df, path)
    for arch in s.archs:
        sub = whole[whole["arch"] == arch]
        names = report_figures([arch])[arch]
        plot_whole(sub, arch, "latency_median_ms", "latency (ms, median)", "target",
                   figure_paths(figure_dir, names[0]))
        acc = sub[sub["target"] == s.size_from]
        label = f"mAP ({'Keras' if s.backend == 'keras' else 'torch'} model)" \
            if s.accuracy == "keras" else f"mAP ({s.size_from} file)"
        plot_whole(acc, arch, "mAP", label, "finetuned", figure_paths(figure_dir, names[1]))
    write_text(summary_md, _closing_note(s, periods, sizes, t2, t3, t1))
    log("\n" + t2.to_string(index=False))
    metrics = {}
    kinds = dict(zip(GAIN_ROWS, ("filter", "cluster", "cluster_vs_filter"), strict=True))
    for _, r in t2.iterrows():
        kind = kinds.get(str(r["row"]))
        if kind is None:
            continue
        for target in s.targets:
            for col, suffix in ((target, ""), (f"{target}_ci95_lo", "_lo"),
                                (f"{target}_ci95_hi", "_hi")):
                if col in r and pd.notna(r[col]):
                    metrics[f"gain_pct_{kind}_{r['arch']}_{target}{suffix}"] = float(r[col])
    return RunRecord(
        experiment=experiment_name(config), run_name="paper2/report",
        params={"stage": "paper2_report", "archs": ",".join(s.archs), "backend": s.backend,
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
    from edgeprune.compression.openvino_rt import convert_to_ir, ir_files
    from edgeprune.compression.size import file_sizes

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
        experiment=experiment_name(config), run_name=f"{arch}/{variant}/openvino-{precision}",
        params={"stage": "openvino_ir", "arch": arch, "variant": variant,
                "format": "openvino", "precision": {"fp32": "float32"}.get(precision, "float16")},
        metrics={"convert_seconds": seconds, "bin_mb": weights["size_mb"],
                 "bin_gzip_mb": weights["gzip_mb"], **model_cost(model)},
        tags={"stage": "openvino_ir", "arch": arch, "variant": variant},
        artifacts=list(ir_files(xml)), model=Path(xml), source_model=Path(model_path),
    )


def openvino_accuracy(config: Mapping[str, Any], eval_jsons: Sequence[str],
                      out_csv: str | Path, log: JobLog) -> pd.DataFrame:
    """mAP of Keras vs OpenVINO IR (fp32, fp16) from the shared evaluator's JSON results, each
    with its 95 % interval, and the IR's change against the Keras model as a paired bootstrap
    over test images (``delta_vs_keras`` with its interval and significance; the metric is
    ``evaluation.metric``)."""
    from edgeprune.stages.evaluate import map_pairer

    pair = map_pairer(config)
    rows = []
    for path in eval_jsons:
        e = read_json(path)
        lo, hi = e["mAP_ci95"]
        rows.append({"arch": e["arch"], "variant": e["variant"], "runtime": e["runtime"],
                     "mAP": e["mAP"], "mAP_ci95_lo": lo, "mAP_ci95_hi": hi,
                     "mAP_voc07": e["mAP_voc07"], "mAP_all": e["mAP_all"],
                     "test_images": e["test_images"], "det_dir": Path(path).with_name(
                         f"{Path(path).stem}_detections")})
    df = pd.DataFrame(rows)
    if df.empty:
        raise DataError("no evaluation results given")
    ref = {(r.arch, r.variant): r.det_dir for r in df.itertuples() if r.runtime == "keras"}
    deltas = []
    for r in df.itertuples():
        key = (r.arch, r.variant)
        d = pair(ref[key], r.det_dir) if key in ref and r.runtime != "keras" else None
        deltas.append({"delta_vs_keras": d.diff if d else math.nan,
                       "delta_vs_keras_ci95_lo": d.ci95[0] if d else math.nan,
                       "delta_vs_keras_ci95_hi": d.ci95[1] if d else math.nan,
                       "delta_vs_keras_significant": bool(d.significant) if d else pd.NA})
    df = pd.concat([df.drop(columns="det_dir"), pd.DataFrame(deltas)], axis=1)
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df
