"""Paper 2 with both backends side by side (``paper2.backend: [keras, torch]``).

The Keras surgery and Torch-Pruning prune the same ported base with the same plan, so every
whole-model step exists twice: once per framework. These stages set each pair side by side:

* :func:`backends_map` -- both files of a pair scored by the same evaluator on the same test
  images; the difference (torch - keras) with a paired bootstrap interval over the images;
* :func:`backends_time` -- both files of every pair timed on one target in ONE interleaved
  comparison; the paired latency difference (torch vs keras, %) with its interval;
* :func:`backends_table` -- one row per architecture, target and step with both latencies, both
  mAPs, the two differences and their words ("within noise" when the interval holds 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from edgeprune.compression.cluster.measure import compare_models
from edgeprune.compression.cluster.settings import Paper2Settings, paper2_settings
from edgeprune.detection.detect import make_runner, run_batched, to_detections
from edgeprune.detection.model_io import anchors_from_spec, load_spec
from edgeprune.errors import DataError
from edgeprune.fileio import read_json, write_json
from edgeprune.jobs import JobLog
from edgeprune.measurement.bootstrap import paired_difference
from edgeprune.measurement.compare import difference
from edgeprune.reporting.tracking import RunRecord
from edgeprune.stages.paper2 import experiment_name, load_test_set, target_format, whole_rows
from edgeprune.stages.report import write_csv

#: The two frameworks, reference first: differences are ``torch - keras``.
PAIR: tuple[str, str] = ("keras", "torch")

#: Formats the evaluator can score, in order of preference (OpenVINO reads ONNX too).
_EVAL_FORMATS: tuple[tuple[str, str], ...] = (("ir", "openvino"), ("tflite", "tflite"),
                                               ("onnx", "openvino"))

Key = tuple[str, bool, int]


def _settings(config: Mapping[str, Any]) -> Paper2Settings:
    s = paper2_settings(config)
    if set(PAIR) - set(s.backends):
        raise DataError(f"config key 'paper2.backend': the side-by-side table needs both "
                        f"{list(PAIR)}, got {list(s.backends)}")
    return s


def row_key(row: Mapping[str, Any]) -> Key:
    """``(method, finetuned, step)``: what identifies a whole-model step in either backend."""
    return (str(row["method"]), bool(row.get("finetuned", False)), int(row.get("step", 0)))


def paired_rows(builds: Mapping[str, Sequence[Mapping[str, Any]]]
                ) -> list[tuple[Key, dict[str, Any], dict[str, Any]]]:
    """The whole-model rows of both backends matched step by step (keras row, torch row).

    ``builds[backend]`` are that backend's build JSONs (filter, cluster). The two sides must
    hold the same steps; a step present on one side only is an error naming it."""
    sides = {}
    for backend in PAIR:
        rows = whole_rows(builds[backend])
        sides[backend] = {row_key(r): r for r in rows}
        if len(sides[backend]) != len(rows):
            raise DataError(f"the {backend} builds hold a (method, finetuned, step) twice")
    keys_k, keys_t = list(sides["keras"]), set(sides["torch"])
    missing = sorted(set(keys_k) ^ keys_t)
    if missing:
        raise DataError(f"the keras and torch builds do not hold the same steps: {missing} "
                        "(method, finetuned, step) are on one side only; rerun both backends "
                        "with the same paper2 settings")
    return [(k, sides["keras"][k], sides["torch"][k]) for k in keys_k]


def _file(row: Mapping[str, Any], model_dirs: Sequence[str], fmt: str) -> Path:
    name = row.get(f"file_{fmt}")
    if not name:
        raise DataError(f"step {row_key(row)} has no {fmt} file in its build JSON")
    return Path(model_dirs[int(row["build"])]) / str(name)


def eval_format(row: Mapping[str, Any]) -> tuple[str, str]:
    """The built format (and its evaluator runtime) a pair is scored from."""
    for fmt, runtime in _EVAL_FORMATS:
        if row.get(f"file_{fmt}"):
            return fmt, runtime
    raise DataError(f"step {row_key(row)} has no file the evaluator reads "
                    f"({[f for f, _ in _EVAL_FORMATS]})")


def backends_map(config: Mapping[str, Any], arch: str,
                 build_jsons: Mapping[str, Sequence[str]],
                 model_dirs: Mapping[str, Sequence[str]], spec_path: str | Path,
                 out_json: str | Path, threads: int, log: JobLog) -> RunRecord:
    """mAP of both files of every pair on the same test images, and ``torch - keras`` with a
    paired bootstrap interval (:func:`edgeprune.measurement.bootstrap.paired_difference`)."""
    s = _settings(config)
    builds = {b: [read_json(p) for p in build_jsons[b]] for b in PAIR}
    pairs = paired_rows(builds)
    spec, raw = load_spec(spec_path)
    test = load_test_set(config, spec.input_size, anchors_from_spec(raw), s.eval_images)
    log(f"{arch}: {len(pairs)} steps per backend, scored on {len(test.annotations)} images")
    entries = []
    for key, k_row, t_row in pairs:
        fmt, runtime = eval_format(k_row)
        dets = []
        for backend, row in zip(PAIR, (k_row, t_row), strict=True):
            runner, batch = make_runner(runtime, _file(row, model_dirs[backend], fmt), threads)
            loc, probs = run_batched(runner, test.images, batch or test.batch_size)
            dets.append(to_detections(test.annotations, loc, probs, test.anchors,
                                      test.classes, test.postprocess))
        d = paired_difference(test.annotations, dets[0], dets[1], test.classes, test.metric,
                              test.iou, test.resamples, test.seed)
        entries.append({"method": key[0], "finetuned": key[1], "step": key[2],
                        "removed": k_row.get("removed", 0), "format": fmt,
                        "same_widths": k_row["widths"] == t_row["widths"],
                        "params_keras": k_row["params"], "params_torch": t_row["params"],
                        "mAP_keras": d.map_a, "mAP_torch": d.map_b, "mAP_diff": d.diff,
                        "mAP_diff_ci95": list(d.ci95), "mAP_diff_significant": d.significant,
                        "metric": d.metric, "resamples": d.resamples, "seed": d.seed})
        log(f"{key[0]} ft={key[1]} step {key[2]}: mAP keras {d.map_a:.4f}, torch "
            f"{d.map_b:.4f}, torch - keras {d.diff:+.4f} [{d.ci95[0]:+.4f}, {d.ci95[1]:+.4f}]")
    write_json(out_json, {"arch": arch, "pairs": entries})
    diffs = [abs(e["mAP_diff"]) for e in entries if not math.isnan(e["mAP_diff"])]
    return RunRecord(
        experiment=experiment_name(config),
        run_name=f"{arch}/paper2/backends/map",
        params={"stage": "paper2_backends_map", "arch": arch, "backend": ",".join(PAIR),
                "eval_images": len(test.annotations), "resamples": test.resamples},
        metrics={"max_abs_map_diff": max(diffs) if diffs else math.nan,
                 "significant_pairs": float(sum(e["mAP_diff_significant"] for e in entries))},
        tags={"stage": "paper2", "arch": arch}, artifacts=[Path(out_json)])


def backends_time(config: Mapping[str, Any], arch: str, target: str,
                  build_jsons: Mapping[str, Sequence[str]],
                  model_dirs: Mapping[str, Sequence[str]], out_csv: str | Path,
                  raw_dir: str | Path, log: JobLog) -> RunRecord:
    """Time both files of every pair on ``target`` in one interleaved comparison (keras file of
    the unpruned model first) and write, per pair, both latencies and the paired difference
    ``torch vs keras`` (%, 95 % interval over groups)."""
    s = _settings(config)
    fmt = target_format(s, target)
    builds = {b: [read_json(p) for p in build_jsons[b]] for b in PAIR}
    pairs = paired_rows(builds)
    paths: list[Path] = []
    index: dict[Path, int] = {}
    for _, k_row, t_row in pairs:
        for backend, row in zip(PAIR, (k_row, t_row), strict=True):
            path = _file(row, model_dirs[backend], fmt)
            if path not in index:
                index[path] = len(paths)
                paths.append(path)
    settings = s.whole.timing.compare_settings(int(config.get("seed", 0)))
    comparison = compare_models(s.targets[target], paths, settings, Path(raw_dir),
                                "backends", log)
    names = [str(p) for p in paths]
    rows = []
    for key, k_row, t_row in pairs:
        i_k = index[_file(k_row, model_dirs["keras"], fmt)]
        i_t = index[_file(t_row, model_dirs["torch"], fmt)]
        m_k, m_t = comparison.models[i_k], comparison.models[i_t]
        d = difference(comparison.raw, names, i_t, i_k, seed=settings.seed)
        rows.append({"arch": arch, "target": target, "runtime": s.targets[target].runtime,
                     "format": fmt, "method": key[0], "finetuned": key[1], "step": key[2],
                     "removed": k_row.get("removed", 0),
                     "latency_keras_ms": m_k.median_ms,
                     "latency_keras_ci95_lo_ms": m_k.ci95_ms[0],
                     "latency_keras_ci95_hi_ms": m_k.ci95_ms[1],
                     "latency_torch_ms": m_t.median_ms,
                     "latency_torch_ci95_lo_ms": m_t.ci95_ms[0],
                     "latency_torch_ci95_hi_ms": m_t.ci95_ms[1],
                     "latency_diff_pct": d.diff_pct, "latency_diff_ci95_lo_pct": d.ci95_pct[0],
                     "latency_diff_ci95_hi_pct": d.ci95_pct[1],
                     "latency_diff_significant": d.significant})
        log(f"{key[0]} ft={key[1]} step {key[2]} on {target}: keras {m_k.median_ms:.4f} ms, "
            f"torch {m_t.median_ms:.4f} ms, {d.diff_pct:+.2f} % [{d.ci95_pct[0]:+.2f}, "
            f"{d.ci95_pct[1]:+.2f}]")
    df = pd.DataFrame(rows)
    write_csv(df, out_csv)
    return RunRecord(
        experiment=experiment_name(config),
        run_name=f"{arch}/paper2/backends/{target}",
        params={"stage": "paper2_backends_time", "arch": arch, "target": target,
                "backend": ",".join(PAIR), "runtime": s.targets[target].runtime,
                "seconds": s.whole.timing.seconds, "seed": settings.seed},
        metrics={"max_abs_latency_diff_pct": float(df["latency_diff_pct"].abs().max()),
                 "significant_pairs": float(df["latency_diff_significant"].sum())},
        tags={"stage": "paper2", "arch": arch, "target": target},
        artifacts=[Path(out_csv)])


def verdict(diff: float, lo: float, hi: float, higher: str, lower: str, unit: str,
            digits: int) -> str:
    """Words for ``torch - keras``: "within noise" when the interval holds 0, else the
    direction with the value and its interval."""
    if any(math.isnan(v) for v in (diff, lo, hi)):
        return "no interval"
    interval = f"{diff:+.{digits}f}{unit} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    if lo <= 0.0 <= hi:
        return f"within noise ({interval})"
    return f"torch {higher if diff > 0 else lower} ({interval})"


def side_by_side(maps: Sequence[Mapping[str, Any]], times: pd.DataFrame) -> pd.DataFrame:
    """Join the paired mAPs (one JSON per architecture) with the paired latencies (one table
    per architecture and target): one row per architecture, target and step."""
    acc = pd.DataFrame([{**p, "arch": m["arch"]} for m in maps for p in m["pairs"]])
    if acc.empty or times.empty:
        raise DataError("side-by-side table: no paired steps to report")
    acc = acc.rename(columns={"format": "map_format"})
    acc["mAP_diff_ci95_lo"] = [c[0] for c in acc["mAP_diff_ci95"]]
    acc["mAP_diff_ci95_hi"] = [c[1] for c in acc["mAP_diff_ci95"]]
    keep = ["arch", "method", "finetuned", "step", "same_widths", "params_keras",
            "params_torch", "map_format", "mAP_keras", "mAP_torch", "mAP_diff",
            "mAP_diff_ci95_lo", "mAP_diff_ci95_hi", "mAP_diff_significant"]
    df = times.merge(acc[keep], on=["arch", "method", "finetuned", "step"], how="outer",
                     validate="many_to_one", indicator=True)
    lonely = df[df["_merge"] != "both"]
    if not lonely.empty:
        first = lonely.iloc[0]
        raise DataError(f"side-by-side table: step ({first['method']}, finetuned="
                        f"{first['finetuned']}, {first['step']}) of {first['arch']} has a "
                        "latency or an mAP pair but not both")
    df = df.drop(columns="_merge")
    df["latency_words"] = [verdict(r.latency_diff_pct, r.latency_diff_ci95_lo_pct,
                                   r.latency_diff_ci95_hi_pct, "slower", "faster", " %", 2)
                           for r in df.itertuples()]
    df["mAP_words"] = [verdict(r.mAP_diff, r.mAP_diff_ci95_lo, r.mAP_diff_ci95_hi,
                               "more accurate", "less accurate", "", 4)
                       for r in df.itertuples()]
    return df.sort_values(["arch", "target", "method", "finetuned", "step"],
                          key=lambda c: c.map({"base": 0, "filter": 1, "cluster": 2})
                          if c.name == "method" else c).reset_index(drop=True)


def backends_table(config: Mapping[str, Any], map_jsons: Sequence[str],
                   time_csvs: Sequence[str], out_csv: str | Path, log: JobLog) -> RunRecord:
    """``results/paper2/backends.csv``: the same plan in both frameworks, per target."""
    _settings(config)
    maps = [read_json(p) for p in map_jsons]
    times = pd.concat([pd.read_csv(p) for p in time_csvs], ignore_index=True)
    df = side_by_side(maps, times)
    write_csv(df, out_csv)
    for r in df.itertuples():
        log(f"{r.arch} {r.target} {r.method} ft={r.finetuned} step {r.step}: latency "
            f"{r.latency_words}; mAP {r.mAP_words}")
    return RunRecord(
        experiment=experiment_name(config),
        run_name="paper2/backends", params={"stage": "paper2_backends",
                                            "backend": ",".join(PAIR)},
        metrics={"pairs": float(len(df)),
                 "latency_significant": float(df["latency_diff_significant"].sum()),
                 "mAP_significant": float(df["mAP_diff_significant"].sum()),
                 "same_widths": float(df["same_widths"].all())},
        tags={"stage": "paper2"}, artifacts=[Path(out_csv)])

