"""Paper-2 tables (I, II, III) and figures (5, 8, 10, 12 and the period evidence) from the
per-job results, plus the closing note that compares the gains with the paper's Table II."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


def speed_table(whole: pd.DataFrame, column: str, finetuned: bool, step: int,
                higher_is_better: bool) -> pd.DataFrame:
    """Rows without/filter/cluster and the two gain rows; one column per target, per arch."""
    gain = fps_gain if higher_is_better else latency_gain
    tables = []
    for arch, per_arch in whole.groupby("arch", sort=False):
        cells: dict[str, dict[str, float]] = {}
        removed: dict[str, float] = {}
        for target, df in per_arch.groupby("target", sort=False):
            sel = _selected(df, finetuned, step).set_index("method")
            vals = [float(sel[column].get(m, math.nan)) for m in ("base", "filter", "cluster")]
            cells[target] = {
                ROWS[0]: vals[0], ROWS[1]: vals[1], ROWS[2]: vals[2],
                "gain from filter pruning (%)": gain(vals[0], vals[1]),
                "gain from cluster pruning (%)": gain(vals[0], vals[2]),
            }
            removed = {m: float(sel["removed"].get(m, math.nan)) for m in ("filter", "cluster")}
        t = pd.DataFrame(cells)
        t.insert(0, "row", t.index)
        t.insert(0, "arch", arch)
        t["filters_removed"] = [0, removed.get("filter"), removed.get("cluster"), None, None]
        tables.append(t.reset_index(drop=True))
    return pd.concat(tables, ignore_index=True)


def paper_table(values: Mapping[str, tuple[float, float, float]],
                higher_is_better: bool) -> pd.DataFrame:
    """The paper's Table II or III with its gain rows, in the same layout."""
    gain = fps_gain if higher_is_better else latency_gain
    cols = {}
    for device, (w, f, c) in values.items():
        cols[device] = {ROWS[0]: w, ROWS[1]: f, ROWS[2]: c,
                        "gain from filter pruning (%)": gain(w, f),
                        "gain from cluster pruning (%)": gain(w, c)}
    t = pd.DataFrame(cols)
    t.insert(0, "row", t.index)
    return t.reset_index(drop=True)


# --------------------------------------------------------------------------- figures


def plot_sweeps(df: pd.DataFrame, arch: str, value: str, ylabel: str,
                paths: Sequence[str | Path]) -> None:
    """Figures 5 / 8: one panel per layer, one line per target, against filters left."""
    plt = _plt()
    layers = list(dict.fromkeys(df["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.3), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        sub = df[df["layer"] == layer]
        for target, t in sub.groupby("target", sort=False):
            t = t.sort_values("filters_left")
            ax.plot(t["filters_left"], t[value], marker=".", label=target)
        ax.set_title(f"{arch}: {layer}")
        ax.set_xlabel("filters left")
        ax.set_ylabel(ylabel)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, paths)


def plot_evidence(sizes: Mapping[str, Any], paths: Sequence[str | Path]) -> None:
    """Strength of every candidate period against the shuffled-data threshold, for latency
    minima and accuracy maxima of each swept layer and target."""
    plt = _plt()
    panels = [(layer, target, kind, ev[kind])
              for layer, per_t in sizes["sweeps"].items() for target, ev in per_t.items()
              for kind in ("latency", "accuracy")]
    cols = 2
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(9, 2.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (layer, target, kind, ev) in zip(axes.flat, panels, strict=False):
        periods = [int(p) for p in ev["strengths"]]
        ax.bar(periods, list(ev["strengths"].values()), color="tab:blue", width=0.8)
        if ev["threshold"] is not None:
            ax.axhline(ev["threshold"], color="tab:red", ls="--", lw=1, label="shuffled 1-α")
        if ev["period"] > 1:
            ax.bar([ev["period"]], [ev["strengths"][str(ev["period"])]], color="tab:orange",
                   width=0.8, label=f"period {ev['period']}")
        ax.set_title(f"{layer} / {target} / {kind}: p={ev['period']}", fontsize=8)
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
    ``by`` value (target for latency, fine-tuning for accuracy)."""
    plt = _plt()
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
        label = {True: "fine-tuned", False: "no fine-tuning"}.get(key, key) \
            if isinstance(key, bool | np.bool_) else key
        ax.set_title(f"{arch}: {label}")
        ax.set_xlabel("filters removed")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, paths)
