"""Which variant to deploy: the accuracy/latency Pareto front of every variant timed on a target.

Candidates are every model the run timed on the target: paper 1's TFLite files (each sparsity
level x precision of Table 2) and paper 2's whole-model pruning steps (filter and cluster
pruning, one-shot and fine-tuned, and the unpruned model), each with its mAP and median
inference latency and their 95 % intervals, and its size.

**Front.** By point estimates: variant *u* dominates *v* when it is at least as accurate
(mAP) and at least as fast (median ms) and strictly better on one of the two. The front is the
set of variants nothing dominates; size is reported, not used to rank.

**Noise.** A domination is *clear* when, for at least one dominating variant, the two 95 %
intervals do not overlap on at least one axis (a conservative test: paired differences are
tighter than two overlapping intervals suggest); *within noise* when every dominating variant's
intervals overlap *v*'s on both axes; *no interval* when an interval needed to tell is missing.
A variant dominated within noise is a reasonable choice too; the table says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgeprune.errors import DataError
from edgeprune.fileio import atomic_path

__all__ = [
    "COLUMNS",
    "choose",
    "mark_front",
    "paper1_candidates",
    "paper2_candidates",
    "pareto_figure",
    "pareto_table",
]

#: Columns of ``results/pareto/<target>.csv``, in order.
COLUMNS = ("target", "variant", "study", "arch", "precision", "sparsity", "method", "step",
           "removed", "ms", "ms_ci95_lo", "ms_ci95_hi", "mAP", "mAP_ci95_lo", "mAP_ci95_hi",
           "size_mb", "gzip_mb", "size_source", "app_fps", "app_fps_ci95_lo", "app_fps_ci95_hi",
           "pareto", "dominated_by", "dominance", "files")

_NAN = float("nan")


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return _NAN
    return out


# --------------------------------------------------------------------------- candidates


def paper1_candidates(table2: pd.DataFrame, target: str, arch: str,
                      results: str | Path = "results") -> pd.DataFrame:
    """Paper 1's converted models timed on ``target`` (Table 2 rows with ``ms_<target>``).

    The latency interval comes from Table 2's FPS interval (FPS = 1000 / median ms, so the ms
    interval is 1000 / the FPS bounds, swapped)."""
    col = f"ms_{target}"
    if col not in table2.columns:
        return pd.DataFrame(columns=list(COLUMNS))
    rows = []
    for _, r in table2[table2[col].notna()].iterrows():
        fmt = str(r["format"])
        dtype = fmt.removeprefix("tflite-")
        variant = str(r["variant"])
        fps_lo, fps_hi = (_num(r.get(f"fps_{target}_ci95_lo")),
                          _num(r.get(f"fps_{target}_ci95_hi")))
        sparsity = 0.0 if variant in ("base", "control") else _sparsity(variant)
        rows.append({
            "target": target, "variant": f"{arch}/{variant}_{dtype}", "study": "paper1",
            "arch": arch, "precision": dtype, "sparsity": sparsity, "method": "magnitude",
            "step": math.nan, "removed": math.nan, "ms": _num(r[col]),
            "ms_ci95_lo": 1000.0 / fps_hi if fps_hi > 0 else _NAN,
            "ms_ci95_hi": 1000.0 / fps_lo if fps_lo > 0 else _NAN,
            "mAP": _num(r["mAP"]), "mAP_ci95_lo": _num(r.get("mAP_ci95_lo")),
            "mAP_ci95_hi": _num(r.get("mAP_ci95_hi")), "size_mb": _num(r.get("size_mb")),
            "gzip_mb": _num(r.get("gzip_mb")), "size_source": "file",
            "app_fps": _num(r.get(f"app_fps_{target}")),
            "app_fps_ci95_lo": _num(r.get(f"app_fps_{target}_ci95_lo")),
            "app_fps_ci95_hi": _num(r.get(f"app_fps_{target}_ci95_hi")),
            "files": ";".join([f"{results}/tflite/{arch}/{variant}_{dtype}.tflite",
                               f"{results}/eval/{arch}/{variant}/{fmt}.json"]),
        })
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in _MARKS])


def _sparsity(variant: str) -> float:
    """prune50 -> 0.5, prune72p5 -> 0.725 (see edgeprune.compression.prune.variant_name)."""
    digits = variant.removeprefix("prune").replace("p", ".")
    try:
        return float(digits) / 100.0
    except ValueError:
        return _NAN


#: Bytes per weight of a paper 2 timing format, for the size estimate of models not kept.
_BYTES_PER_WEIGHT = {"fp16": 2, "float16": 2, "int8": 1}


def paper2_candidates(whole: pd.DataFrame, results: str | Path = "results",
                      timing_format: str = "") -> pd.DataFrame:
    """Paper 2's whole-model steps of one architecture timed on one target (its
    ``results/paper2/whole/<arch>/<target>.csv``).

    The step models are temporary files, so their size is estimated as parameters x bytes per
    weight of the timed format (``size_source`` says so) and ``files`` names the build record
    (per step: widths per layer) from which a step is rebuilt."""
    per_weight = next((b for k, b in _BYTES_PER_WEIGHT.items() if k in timing_format), 4)
    rows = []
    for _, r in whole.iterrows():
        arch, method = str(r["arch"]), str(r["method"])
        series = "finetuned" if bool(r.get("finetuned", False)) else "oneshot"
        if method == "base":
            name, files = f"{arch}/base", [f"{results}/models/{arch}/base.keras"]
        else:
            name = f"{arch}/{method}-{series}-step{int(r['step'])}"
            files = [f"{results}/paper2/whole/{arch}/{method}.json"]
        rows.append({
            "target": str(r["target"]), "variant": name, "study": "paper2", "arch": arch,
            "precision": timing_format or str(r.get("runtime", "")), "sparsity": _NAN,
            "method": method if method == "base" else f"{method} ({series})",
            "step": _num(r.get("step")), "removed": _num(r.get("removed")),
            "ms": _num(r["latency_median_ms"]), "ms_ci95_lo": _num(r.get("latency_ci95_lo_ms")),
            "ms_ci95_hi": _num(r.get("latency_ci95_hi_ms")), "mAP": _num(r["mAP"]),
            "mAP_ci95_lo": _num(r.get("mAP_ci95_lo")), "mAP_ci95_hi": _num(r.get("mAP_ci95_hi")),
            "size_mb": _num(r.get("params")) * per_weight / 1e6, "gzip_mb": _NAN,
            "size_source": f"params x {per_weight} B",
            "app_fps": _num(r.get("app_fps")), "app_fps_ci95_lo": _num(r.get("app_fps_ci95_lo")),
            "app_fps_ci95_hi": _num(r.get("app_fps_ci95_hi")),
            "files": ";".join(files + [f"{results}/paper2/whole/{arch}/{r['target']}.csv"]),
        })
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in _MARKS])


# --------------------------------------------------------------------------- the front

_MARKS = ("pareto", "dominated_by", "dominance")


def _dominates(u: Mapping[str, Any], v: Mapping[str, Any]) -> bool:
    """By point estimates: at least as accurate and as fast, strictly better on one."""
    return (u["ms"] <= v["ms"] and u["mAP"] >= v["mAP"]
            and (u["ms"] < v["ms"] or u["mAP"] > v["mAP"]))


def _separated(u: Mapping[str, Any], v: Mapping[str, Any]) -> bool | None:
    """Whether ``u``'s and ``v``'s 95 % intervals are disjoint on latency or on mAP; None when
    an interval needed to tell is missing (and none of the present ones is disjoint)."""
    known = True
    for lo, hi in (("ms_ci95_lo", "ms_ci95_hi"), ("mAP_ci95_lo", "mAP_ci95_hi")):
        bounds = (u[lo], u[hi], v[lo], v[hi])
        if any(isinstance(b, float) and math.isnan(b) for b in bounds):
            known = False
            continue
        if u[hi] < v[lo] or v[hi] < u[lo]:
            return True
    return False if known else None


def mark_front(candidates: pd.DataFrame) -> pd.DataFrame:
    """Add ``pareto`` (on the front), ``dominated_by`` (the dominating variant that separates
    from it most clearly, the fastest such) and ``dominance`` (``clear``, ``within noise`` or
    ``no interval``; empty on the front). Rows are sorted by latency."""
    df = candidates.sort_values(["ms", "mAP"], ascending=[True, False], kind="stable")
    df = df.reset_index(drop=True)
    records = df.to_dict("records")
    pareto, by, how = [], [], []
    for v in records:
        dominators = [u for u in records if u is not v and _dominates(u, v)]
        if not dominators:
            pareto.append(True)
            by.append("")
            how.append("")
            continue
        verdicts = [(u, _separated(u, v)) for u in dominators]
        clear = [u for u, s in verdicts if s]
        if clear:
            chosen, label = clear[0], "clear"
        elif all(s is False for _, s in verdicts):
            chosen, label = dominators[0], "within noise"
        else:
            chosen, label = dominators[0], "no interval"
        pareto.append(False)
        by.append(str(chosen["variant"]))
        how.append(label)
    return df.assign(pareto=pareto, dominated_by=by, dominance=how)[list(COLUMNS)]


def pareto_table(target: str, table2: pd.DataFrame | None, p1_arch: str,
                 whole: Sequence[tuple[pd.DataFrame, str]] = (),
                 results: str | Path = "results") -> pd.DataFrame:
    """Every variant timed on ``target`` with the front marked (see the module docstring).

    ``table2``: paper 1's Table 2 (None: paper 1 does not time on this target); ``whole``:
    (paper 2 whole-model timing table, timed format) per architecture."""
    parts = []
    if table2 is not None:
        parts.append(paper1_candidates(table2, target, p1_arch, results))
    parts += [paper2_candidates(df, results, fmt) for df, fmt in whole]
    parts = [p for p in parts if not p.empty]
    if not parts:
        raise DataError(f"target '{target}': no variant was timed on it (no ms_{target} column "
                        "in Table 2 and no paper 2 whole-model timing)")
    candidates = pd.concat(parts, ignore_index=True)
    candidates = candidates[candidates["ms"].notna() & candidates["mAP"].notna()]
    return mark_front(candidates)


# --------------------------------------------------------------------------- choosing


def choose(table: pd.DataFrame, max_ms: float, min_map: float | None = None
           ) -> tuple[pd.Series, pd.DataFrame]:
    """The most accurate variant whose median latency is at most ``max_ms`` (and mAP at least
    ``min_map``); ties go to the faster, then the smaller. It is always on the front.

    Returns it and the other front variants that fit whose mAP interval overlaps its own
    (as accurate within noise: pick among them by speed or size).

    Raises:
        DataError: nothing fits (the message gives the fastest and the most accurate variants).
    """
    fits = table[table["ms"] <= max_ms]
    if min_map is not None:
        fits = fits[fits["mAP"] >= min_map]
    if fits.empty:
        fastest = table.loc[table["ms"].idxmin()]
        best = table.loc[table["mAP"].idxmax()]
        limit = f"median latency <= {max_ms:g} ms" + (
            f" and mAP >= {min_map:g}" if min_map is not None else "")
        raise DataError(f"target '{table['target'].iloc[0]}': no variant has {limit} (fastest: "
                        f"{fastest['variant']} {fastest['ms']:.3g} ms, mAP {fastest['mAP']:.3f}; "
                        f"most accurate: {best['variant']} {best['ms']:.3g} ms, mAP "
                        f"{best['mAP']:.3f})")
    ranked = fits.sort_values(["mAP", "ms", "size_mb"], ascending=[False, True, True],
                              kind="stable")
    pick = ranked.iloc[0]
    others = fits[fits["pareto"].astype(bool) & (fits["variant"] != pick["variant"])]
    if not (math.isnan(pick["mAP_ci95_lo"]) or math.isnan(pick["mAP_ci95_hi"])):
        others = others[(others["mAP_ci95_hi"] >= pick["mAP_ci95_lo"])
                        & (others["mAP_ci95_lo"] <= pick["mAP_ci95_hi"])]
    else:
        others = others.iloc[0:0]
    return pick, others


# --------------------------------------------------------------------------- figure


def _err(df: pd.DataFrame, col: str) -> np.ndarray | None:
    lo, hi = df[f"{col}_ci95_lo"].to_numpy(float), df[f"{col}_ci95_hi"].to_numpy(float)
    if np.isnan(lo).all() or np.isnan(hi).all():
        return None
    value = df[col].to_numpy(float)
    return np.nan_to_num(np.vstack([value - lo, hi - value]).clip(min=0))


def pareto_figure(table: pd.DataFrame, target: str, paths: Sequence[str | Path]) -> None:
    """mAP against median latency (left) and against size (right), every variant with its
    95 % intervals as error bars, one marker per study and precision / method; the front is
    joined by a step line and its points are filled, dominated points are hollow."""
    import matplotlib.pyplot as plt

    from edgeprune.reporting.figures import STYLE, save

    with plt.style.context(STYLE):
        fig, (ax, ax_size) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
        groups = table.groupby(["study", "precision", "method"], sort=True, dropna=False)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        markers = "osD^v<>Ph*X"
        for k, ((study, precision, method), grp) in enumerate(groups):
            label = (f"{study}: {precision}" if study == "paper1"
                     else f"{study}: {grp['arch'].iloc[0]} {method}")
            color, marker = colors[k % len(colors)], markers[k % len(markers)]
            for axis, x in ((ax, "ms"), (ax_size, "size_mb")):
                for on_front, sub in grp.groupby(grp["pareto"].astype(bool)):
                    xerr = _err(sub, "ms") if x == "ms" else None
                    axis.errorbar(sub[x], sub["mAP"], yerr=_err(sub, "mAP"), xerr=xerr,
                                  fmt=marker, color=color, capsize=2, lw=0.8, ms=6,
                                  mfc=color if on_front else "white",
                                  label=label if (on_front or grp["pareto"].sum() == 0)
                                  and axis is ax else None)
        front = table[table["pareto"].astype(bool)].sort_values("ms")
        ax.step(front["ms"], front["mAP"], where="post", color="black", lw=1, ls="--",
                label="Pareto front (point estimates)")
        for _, r in front.iterrows():
            ax.annotate(str(r["variant"]).split("/", 1)[1], (r["ms"], r["mAP"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_xlabel(f"median inference latency on {target} (ms), bars: 95 % interval")
        ax.set_ylabel("mAP (VOC, IoU > 0.5), bars: 95 % interval")
        ax.set_title(f"Which variant on {target}: mAP vs latency")
        ax_size.set_xlabel("model file size, raw (MB; paper 2 steps: parameters x bytes per "
                           "weight)")
        ax_size.set_title("mAP vs size (filled: on the front)")
        sizes = table["size_mb"].to_numpy(float)
        if np.isfinite(sizes).any():  # room for the largest model's marker
            ax_size.set_xlim(0, 1.08 * float(np.nanmax(sizes)))
        fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
        save(fig, paths)


# --------------------------------------------------------------------------- workflow stage


def pareto_stage(config: Mapping[str, Any], target: str, table2_csv: str | None, p1_arch: str,
                 whole_csvs: Sequence[str], whole_format: str, out_csv: str | Path,
                 figure: Sequence[str | Path], log: Any, results: str = "results") -> None:
    """``results/pareto/<target>.csv`` and its figure (PNG, PDF) from paper 1's Table 2 (when
    paper 1 times on the target) and paper 2's whole-model timing tables (when paper 2 does)."""
    table2 = pd.read_csv(table2_csv) if table2_csv else None
    whole = [(pd.read_csv(p), whole_format) for p in whole_csvs]
    table = pareto_table(target, table2, p1_arch, whole, results)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    pareto_figure(table, target, figure)
    front = table[table["pareto"]]
    log(f"{target}: {len(table)} variants, {len(front)} on the front: "
        + ", ".join(f"{r.variant} ({r.ms:.3g} ms, mAP {r.mAP:.3f})"
                    for r in front.itertuples()))
    noisy = table[table["dominance"] == "within noise"]
    if not noisy.empty:
        log("dominated within noise: " + ", ".join(noisy["variant"]))


# --------------------------------------------------------------------------- command line


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m edgeprune.choose",
        description="The most accurate variant within a latency budget on one target, from "
                    "results/pareto/<target>.csv (snakemake pareto builds it).")
    parser.add_argument("--target", required=True, help="benchmark target name from config")
    parser.add_argument("--max-ms", type=float, required=True,
                        help="latency budget: median inference latency, ms")
    parser.add_argument("--min-map", type=float, default=None, help="lowest acceptable mAP")
    parser.add_argument("--results", default="results",
                        help="results folder (default: %(default)s)")
    return parser


def _describe(r: Mapping[str, Any]) -> str:
    def interval(lo: float, hi: float, digits: int) -> str:
        if math.isnan(lo) or math.isnan(hi):
            return ""
        return f" [{lo:.{digits}f}, {hi:.{digits}f}]"

    return (f"mAP {r['mAP']:.3f}{interval(r['mAP_ci95_lo'], r['mAP_ci95_hi'], 3)}, "
            f"{r['ms']:.3g} ms{interval(r['ms_ci95_lo'], r['ms_ci95_hi'], 2)}, "
            f"{r['size_mb']:.3g} MB" + ("" if math.isnan(r["gzip_mb"])
                                         else f", {r['gzip_mb']:.3g} MB gzip"))


def main(argv: Sequence[str] | None = None) -> int:
    """Print the chosen variant and its files; a one-line error and status 2 if the target has
    no Pareto table or nothing fits."""
    import sys

    args = _parser().parse_args(argv)
    try:
        if not args.max_ms > 0:
            raise DataError(f"--max-ms must be a positive number of milliseconds, got "
                            f"{args.max_ms:g}")
        folder = Path(args.results) / "pareto"
        csv = folder / f"{args.target}.csv"
        if not csv.is_file():
            known = sorted(p.stem for p in folder.glob("*.csv"))
            raise DataError(f"unknown target '{args.target}': no {csv} (targets with a Pareto "
                            f"table: {', '.join(known) or 'none yet'}; build it with "
                            f"`snakemake --cores 8 {csv}`)")
        table = pd.read_csv(csv, keep_default_na=True)
        for col in ("dominated_by", "dominance", "files"):
            table[col] = table[col].fillna("")
        if table.empty:
            raise DataError(f"{csv}: no variant")
        pick, others = choose(table, args.max_ms, args.min_map)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.target}: {pick['variant']}  ({_describe(pick)})")
    for path in str(pick["files"]).split(";"):
        print(f"  {path}")
    for _, r in others.iterrows():
        print(f"  as accurate within noise: {r['variant']}  ({_describe(r)})")
    return 0
