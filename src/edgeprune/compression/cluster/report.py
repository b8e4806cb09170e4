"""Paper-2 tables (I, II, III) and figures (5, 8, 10, 12 and the period evidence) from the
per-job results, plus the closing note that compares the gains with the paper's Table II."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgeprune.compression.cluster.stats import NAN, Estimate, app_fps_gain, wording
from edgeprune.compression.cluster.stats import latency_gain as stat_latency_gain
from edgeprune.fileio import atomic_path

#: Paper 2, Table II: whole-network inference (ms) without pruning, after filter pruning and
#: after cluster pruning (SSD-MobileNet, ~1.3 % of the filters removed).
PAPER_TABLE2: dict[str, tuple[float, float, float]] = {
    "Pi": (4787.18, 4756.14, 4461.64),
    "Pi+NCS": (84.92, 86.63, 82.37),
    "CPU": (215.22, 215.61, 195.85),
    "GPU": (22.33, 21.89, 21.74),
    "TX2": (104.23, 97.54, 94.03),
}
#: Paper 2, Table III: application frames per second, same rows.
PAPER_TABLE3: dict[str, tuple[float, float, float]] = {
    "Pi": (0.186, 0.192, 0.204),
    "Pi+NCS": (6.346, 6.331, 6.427),
    "CPU": (4.467, 4.940, 5.031),
    "GPU": (42.389, 48.450, 49.361),
    "TX2": (10.335, 10.659, 11.004),
}
ROWS = ("without pruning", "filter pruning", "cluster pruning")


def latency_gain(without: float, after: float) -> float:
    """Paper 2's latency gain in percent: (without - after) / without."""
    return (without - after) / without * 100.0 if without else math.nan


def fps_gain(without: float, after: float) -> float:
    """Paper 2's throughput gain in percent: (after - without) / without."""
    return (after - without) / without * 100.0 if without else math.nan


def save_figure(fig: Any, paths: Sequence[str | Path]) -> None:
    """Write a matplotlib figure to each path (format from the suffix), atomically."""
    import matplotlib.pyplot as plt

    if not fig.get_suptitle():
        fig.tight_layout()
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- row selection


def pick_step(rows: Sequence[Mapping[str, Any]], step: int) -> Mapping[str, Any]:
    """The row of measured step ``step`` (1-based) or, if negative, counted from the end."""
    if not rows:
        raise ValueError("no measured steps")
    if step < 0:
        return rows[max(0, len(rows) + step)]
    by_step = {int(r["step"]): r for r in rows}
    return by_step.get(step, rows[-1])


def series_name(finetuned: bool) -> str:
    """Key of a series in the whole-model build JSON."""
    return "finetuned" if finetuned else "oneshot"


# --------------------------------------------------------------------------- tables


def table1(arch: str, builds: Mapping[str, Mapping[str, Any]], finetuned: bool,
           step: int) -> pd.DataFrame:
    """Filters per pruned layer: original, after filter pruning, after cluster pruning."""
    base = builds["filter"]["base"]["widths"]
    picked = {m: pick_step(builds[m]["series"][series_name(finetuned)], step) for m in builds}
    rows = []
    for layer, width in base.items():
        row: dict[str, Any] = {"arch": arch, "layer": layer, "original": width}
        for method in ("filter", "cluster"):
            left = int(picked[method]["widths"][layer])
            row[f"{method}_pruning"] = left
            row[f"{method}_pruned"] = width - left
        rows.append(row)
    total = {"arch": arch, "layer": "total", "original": sum(base.values())}
    for method in ("filter", "cluster"):
        total[f"{method}_pruning"] = sum(r[f"{method}_pruning"] for r in rows)
        total[f"{method}_pruned"] = sum(r[f"{method}_pruned"] for r in rows)
    return pd.DataFrame([*rows, total])


def _selected(df: pd.DataFrame, finetuned: bool, step: int) -> pd.DataFrame:
    """Base rows plus each method's row at the table step."""
    out = [df[df["method"] == "base"].head(1)]
    for method in ("filter", "cluster"):
        sub = df[(df["method"] == method) & (df["finetuned"] == finetuned)]
        rows = sub.sort_values("step").to_dict("records")
        if rows:
            out.append(pd.DataFrame([pick_step(rows, step)]))
    return pd.concat(out, ignore_index=True)


#: Per table value column: its interval columns and the column of paired replicates (block
#: medians for latency, frame times per pass for application FPS) the gains are built from.
INTERVALS: dict[str, tuple[str, str, str]] = {
    "latency_median_ms": ("latency_ci95_lo_ms", "latency_ci95_hi_ms",
                          "latency_block_medians_ms"),
    "app_fps": ("app_fps_ci95_lo", "app_fps_ci95_hi", "app_frames_ms"),
    "mAP": ("mAP_ci95_lo", "mAP_ci95_hi", ""),   # bootstrap over the evaluation images
}
GAIN_ROWS = ("gain from filter pruning (%)", "gain from cluster pruning (%)",
             "gain of cluster over filter pruning (%)")
#: (model, reference) of each gain row.
GAIN_PAIRS = (("filter", "base"), ("cluster", "base"), ("cluster", "filter"))
GAIN_LABELS = dict(zip(GAIN_ROWS, (("filter pruning", "without pruning"),
                                   ("cluster pruning", "without pruning"),
                                   ("cluster pruning", "filter pruning")), strict=True))


def _replicates(row: Mapping[str, Any] | None, column: str) -> Any:
    if row is None or column not in row:
        return None
    value = row[column]
    if not isinstance(value, str) or not value.strip():
        return None
    return json.loads(value)


def paired_gain(rows: Mapping[str, Mapping[str, Any]], column: str, model: str, reference: str,
                higher_is_better: bool, seed: int = 0) -> Estimate:
    """Gain (%) of ``rows[model]`` over ``rows[reference]`` in paper 2's convention, with its
    95 % interval from the paired replicates (:mod:`edgeprune.compression.cluster.stats`); without
    replicates, the point gain with a NaN interval."""
    a, b = rows.get(model), rows.get(reference)
    if a is None or b is None:
        return NAN
    rep = INTERVALS.get(column, ("", "", ""))[2]
    ra, rb = _replicates(a, rep), _replicates(b, rep)
    if ra is not None and rb is not None:
        if higher_is_better:
            return app_fps_gain(ra, rb, seed=seed)
        return stat_latency_gain(ra, rb, seed=seed)
    gain = fps_gain if higher_is_better else latency_gain
    return Estimate(gain(float(b[column]), float(a[column])), math.nan, math.nan)


def speed_table(whole: pd.DataFrame, column: str, finetuned: bool, step: int,
                higher_is_better: bool, seed: int = 0) -> pd.DataFrame:
    """Rows without/filter/cluster pruning and the three gain rows (filter vs without, cluster
    vs without, cluster vs filter: paired differences), per arch; per target the value and its
    95 % interval (columns ``<target>``, ``<target>_ci95_lo``, ``<target>_ci95_hi``)."""
    lo_col, hi_col, _ = INTERVALS.get(column, ("", "", ""))
    tables = []
    for arch, per_arch in whole.groupby("arch", sort=False):
        cells: dict[str, dict[str, float]] = {}
        removed: dict[str, float] = {}
        for target, df in per_arch.groupby("target", sort=False):
            sel = {r["method"]: r for r in _selected(df, finetuned, step).to_dict("records")}
            col: dict[str, float] = {}
            lo: dict[str, float] = {}
            hi: dict[str, float] = {}
            for name, method in zip(ROWS, ("base", "filter", "cluster"), strict=True):
                r = sel.get(method, {})
                col[name] = float(r.get(column, math.nan))
                lo[name] = float(r.get(lo_col, math.nan))
                hi[name] = float(r.get(hi_col, math.nan))
            for name, (model, ref) in zip(GAIN_ROWS, GAIN_PAIRS, strict=True):
                est = paired_gain(sel, column, model, ref, higher_is_better, seed)
                col[name], lo[name], hi[name] = est.value, est.lo, est.hi
            cells[target] = col
            cells[f"{target}_ci95_lo"] = lo
            cells[f"{target}_ci95_hi"] = hi
            removed = {m: float(sel[m]["removed"]) if m in sel else math.nan
                       for m in ("filter", "cluster")}
        t = pd.DataFrame(cells)
        t.insert(0, "row", t.index)
        t.insert(0, "arch", arch)
        t["filters_removed"] = [0, removed.get("filter"), removed.get("cluster"),
                                None, None, None]
        tables.append(t.reset_index(drop=True))
    return pd.concat(tables, ignore_index=True)


def table_targets(table: pd.DataFrame) -> list[str]:
    """Target columns of a :func:`speed_table` (those with interval columns)."""
    return [c for c in table.columns if f"{c}_ci95_lo" in table.columns]


def with_intervals(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A :func:`speed_table` with each target's value and interval in one text cell,
    ``value [lo, hi]`` (gain rows: signed, 2 digits), for Markdown."""
    out = table[["arch", "row"]].copy()
    for target in table_targets(table):
        cells = []
        for _, r in table.iterrows():
            v, lo, hi = r[target], r[f"{target}_ci95_lo"], r[f"{target}_ci95_hi"]
            gain = str(r["row"]).startswith("gain")
            d, sign = (2, "+") if gain else (digits, "")
            if pd.isna(v):
                cells.append("")
            elif pd.isna(lo) or pd.isna(hi):
                cells.append(f"{v:{sign}.{d}f}")
            else:
                cells.append(f"{v:{sign}.{d}f} [{lo:{sign}.{d}f}, {hi:{sign}.{d}f}]")
        out[target] = cells
    if "filters_removed" in table:
        out["filters_removed"] = table["filters_removed"]
    return out


def paper_table(values: Mapping[str, tuple[float, float, float]],
                higher_is_better: bool) -> pd.DataFrame:
    """The paper's Table II or III with its gain rows, in the same layout (no intervals: the
    paper gives single timings)."""
    gain = fps_gain if higher_is_better else latency_gain
    cols = {}
    for device, (w, f, c) in values.items():
        cols[device] = {ROWS[0]: w, ROWS[1]: f, ROWS[2]: c,
                        GAIN_ROWS[0]: gain(w, f), GAIN_ROWS[1]: gain(w, c),
                        GAIN_ROWS[2]: gain(f, c)}
    t = pd.DataFrame(cols)
    t.insert(0, "row", t.index)
    return t.reset_index(drop=True)


# --------------------------------------------------------------------------- figures


SCOPE_TITLES = {"network": "whole network", "layer": "layer alone"}


def plot_sweeps(df: pd.DataFrame, arch: str, value: str, ylabel: str,
                paths: Sequence[str | Path]) -> None:
    """Figures 5 / 8: one column per swept layer, one row per scope (whole network; the layer
    alone, when timed), one line per target against filters left, with the 95 % interval as
    a band where the data carry one (``latency_ci95_lo_ms`` / ``_hi_ms`` for latency)."""
    plt = _plt()
    layers = list(dict.fromkeys(df["layer"]))
    scopes = [s for s in SCOPE_TITLES if "scope" in df and (df["scope"] == s).any()] \
        or ["network"]
    lo_col, hi_col = (INTERVALS[value][:2] if value in INTERVALS else ("", ""))
    fig, axes = plt.subplots(len(scopes), len(layers), figsize=(4.4 * len(layers),
                                                                3.2 * len(scopes)),
                             squeeze=False)
    for row, scope in enumerate(scopes):
        for ax, layer in zip(axes[row], layers, strict=True):
            sub = df[df["layer"] == layer]
            if "scope" in sub:
                sub = sub[sub["scope"] == scope]
            for target, t in sub.groupby("target", sort=False):
                t = t.sort_values("filters_left")
                (line,) = ax.plot(t["filters_left"], t[value], marker=".", ms=3, lw=1,
                                  label=target)
                if lo_col in t and hi_col in t and t[lo_col].notna().any():
                    ax.fill_between(t["filters_left"], t[lo_col], t[hi_col], alpha=0.25,
                                    color=line.get_color(), lw=0,
                                    label=f"{target} 95 % interval")
            ax.set_title(f"{arch}: {layer} ({SCOPE_TITLES[scope]})", fontsize=9)
            ax.set_xlabel("filters left")
            ax.set_ylabel(ylabel)
            ax.invert_xaxis()
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
    save_figure(fig, paths)


def plot_evidence(sizes: Mapping[str, Any], paths: Sequence[str | Path]) -> None:
    """Strength of every candidate period against the null threshold, for latency minima (whole
    network, and the layer alone when timed) and accuracy maxima of each swept layer and
    target; the title gives the verdict and p-value."""
    plt = _plt()
    panels = [(layer, target, kind, ev[kind])
              for layer, per_t in sizes["sweeps"].items() for target, ev in per_t.items()
              for kind in SERIES_KINDS if kind in ev]
    cols = 2
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(9, 2.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (layer, target, kind, ev) in zip(axes.flat, panels, strict=False):
        periods = [int(p) for p in ev["strengths"]]
        ax.bar(periods, list(ev["strengths"].values()), color="tab:blue", width=0.8)
        if ev.get("threshold") is not None:
            ax.axhline(ev["threshold"], color="tab:red", ls="--", lw=1, label="null 1-α")
        if ev["period"] > 1 and str(ev["period"]) in ev["strengths"]:
            ax.bar([ev["period"]], [ev["strengths"][str(ev["period"])]], color="tab:orange",
                   width=0.8, label=f"period {ev['period']}")
        pv = ev.get("p_value")
        ax.set_title(f"{layer} / {target} / {kind}: {ev.get('verdict', '')} "
                     f"P={ev['period']}" + ("" if pv is None else f", p={pv:.3g}"), fontsize=8)
        ax.set_xlabel("candidate period (filters)", fontsize=7)
        ax.set_ylabel("strength", fontsize=7)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.suptitle(f"{sizes['arch']}: period evidence")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, paths)


def plot_whole(df: pd.DataFrame, arch: str, value: str, ylabel: str, by: str,
               paths: Sequence[str | Path]) -> None:
    """Figures 10 / 12: filter vs cluster pruning against filters removed, one panel per
    ``by`` value (target for latency, fine-tuning for accuracy); 95 % interval bands where the
    data carry them."""
    plt = _plt()
    lo_col, hi_col = (INTERVALS[value][:2] if value in INTERVALS else ("", ""))
    keys = list(dict.fromkeys(df[by]))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.3), squeeze=False)
    base = df[df["method"] == "base"]
    for ax, key in zip(axes[0], keys, strict=True):
        sub = df[df[by] == key]
        b = base.iloc[:1] if by == "finetuned" else base[base[by] == key]
        for method, color in (("filter", "tab:blue"), ("cluster", "tab:orange")):
            for ft in sorted(set(sub.loc[sub["method"] == method, "finetuned"])):
                m = sub[(sub["method"] == method) & (sub["finetuned"] == ft)]
                m = m.sort_values("removed")
                x = np.concatenate([[0], m["removed"].to_numpy()])
                y = np.concatenate([[b[value].iloc[0] if len(b) else np.nan],
                                    m[value].to_numpy()])
                label = f"{method} pruning" + (" (fine-tuned series)" if ft and by != "finetuned"
                                               else "")
                ax.plot(x, y, marker="o", color=color, ls="--" if ft else "-", label=label)
                if lo_col in m and hi_col in m and m[lo_col].notna().any():
                    first = b.iloc[:1] if len(b) else None
                    lo = np.concatenate([[first[lo_col].iloc[0] if first is not None
                                          else np.nan], m[lo_col].to_numpy()])
                    hi = np.concatenate([[first[hi_col].iloc[0] if first is not None
                                          else np.nan], m[hi_col].to_numpy()])
                    ax.fill_between(x, lo, hi, color=color, alpha=0.12, lw=0)
        label = {True: "fine-tuned", False: "no fine-tuning"}.get(key, key) \
            if isinstance(key, bool | np.bool_) else key
        ax.set_title(f"{arch}: {label}")
        ax.set_xlabel("filters removed")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, paths)


# --------------------------------------------------------------------------- closing-note words


def gain_sentences(table: pd.DataFrame, better: str, worse: str) -> list[str]:
    """One bullet per arch, target and gain row of a :func:`speed_table`; the words follow the
    interval ("within noise" when it holds 0, else ``better``/``worse`` by X % [lo, hi])."""
    lines = []
    for _, r in table[table["row"].isin(GAIN_ROWS)].iterrows():
        for target in table_targets(table):
            est = Estimate(float(r[target]), float(r[f"{target}_ci95_lo"]),
                           float(r[f"{target}_ci95_hi"]))
            if not math.isfinite(est.value):
                continue
            if math.isfinite(est.lo) and math.isfinite(est.hi):
                words = wording(est, better, worse)
            else:
                words = f"{est.value:+.1f} % (no interval: not measured in pairs)"
            what, ref = GAIN_LABELS[str(r["row"])]
            lines.append(f"- {r['arch']} on {target}: {what} vs {ref}: {words}")
    return lines


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else f"{float(v):.2f} %"


def evidence_phrase(ev: Mapping[str, Any]) -> str:
    """Verdict of one series with its numbers: period and phase, p-value, the smallest
    p-value the sweep could reach, the observed step and the smallest detectable step (%)."""
    p = ev.get("p_value")
    found = (f"flat blocks of {ev.get('period')} filters, ending at left ≡ {ev.get('phase')} "
             f"(mod {ev.get('period')})" if ev.get("kind") == "steps"
             else f"period {ev.get('period')} (phase {ev.get('phase')})")
    head = {"period": found,
            "none": "no period", "inconclusive": "inconclusive"}.get(str(ev.get("verdict")),
                                                                     str(ev.get("verdict")))
    return (f"{head}; p = {'n/a' if p is None else f'{float(p):.4f}'} (smallest reachable "
            f"{float(ev.get('min_p_value', math.nan)):.4f}), observed step "
            f"{_pct(ev.get('step_pct'))}, detectable step {_pct(ev.get('min_detectable_pct'))}")


SERIES_TITLES = {"latency": "whole network", "layer_latency": "layer alone",
                 "steps": "whole network, block steps", "layer_steps": "layer alone, block steps"}
#: Every evidence series of a sweep, in report order.
SERIES_KINDS = (*SERIES_TITLES, "accuracy")


def host_verdicts(sizes: Sequence[Mapping[str, Any]],
                  runtimes: Mapping[str, str]) -> list[str]:
    """Per host target (``runtimes``: target -> runtime): does latency against filters left
    show a period? One verdict line per runtime, then one bullet per swept layer and series
    with :func:`evidence_phrase`. A runtime tests several series, so its verdict is *yes* only
    when a series' p-value stays at or below ``alpha / series`` (Bonferroni over the runtime's
    series); a series significant only on its own is reported as not confirmed. *No period*
    when every series could rule out a step of its detectable size, else *inconclusive*."""
    lines = []
    for target, runtime in runtimes.items():
        series = [(doc["arch"], layer, kind, per_t[target][kind])
                  for doc in sizes for layer, per_t in doc["sweeps"].items()
                  if target in per_t for kind in SERIES_TITLES if kind in per_t[target]]
        if not series:
            continue
        verdicts = {str(ev.get("verdict")) for *_, ev in series}
        hits = [(a, layer, k, ev) for a, layer, k, ev in series if ev.get("verdict") == "period"]
        bound = min(float(ev.get("alpha", 0.01)) for *_, ev in series) / len(series)
        confirmed = [h for h in hits if float(h[3]["p_value"]) <= bound]
        if confirmed:
            found = [f"{a}/{layer} ({SERIES_TITLES[k]}): period {ev['period']} "
                     f"(p = {float(ev['p_value']):.4f})" for a, layer, k, ev in confirmed]
            head = (f"**{target} ({runtime}): yes** -- " + "; ".join(found)
                    + f" (Bonferroni bound {bound:.4f} over {len(series)} series).")
        elif hits:
            found = [f"{a}/{layer} ({SERIES_TITLES[k]}): period {ev['period']}, "
                     f"p = {float(ev['p_value']):.4f}" for a, layer, k, ev in hits]
            head = (f"**{target} ({runtime}): not confirmed** -- " + "; ".join(found)
                    + f" is significant on its own but not after testing {len(series)} "
                    f"series (Bonferroni bound {bound:.4f}): compatible with chance.")
        elif verdicts == {"none"}:
            head = (f"**{target} ({runtime}): no period** -- every sweep could have detected "
                    "the step sizes below and found none.")
        else:
            head = (f"**{target} ({runtime}): inconclusive** -- no period found, but not every "
                    "sweep could reach significance or detect the step sizes that matter.")
        lines.append(head)
        lines += [f"- {a}/{layer}, {SERIES_TITLES[k]}: {evidence_phrase(ev)}"
                  for a, layer, k, ev in series]
        lines.append("")
    return lines
