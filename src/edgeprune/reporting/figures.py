"""Paper figures (matplotlib), written atomically as PNG and PDF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from edgeprune.fileio import atomic_path  # noqa: E402

#: Matplotlib style of every figure (white background, light grid; bundled with matplotlib).
STYLE = "seaborn-v0_8-whitegrid"


def save(fig: Any, paths: Sequence[str | Path]) -> None:
    """Save ``fig`` to every path (format from the suffix) atomically, then close it."""
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=Path(p).suffix[1:])
    plt.close(fig)


def fig8_sparsity(table1: pd.DataFrame, paths: Sequence[str | Path]) -> None:
    """mAP with its 95 % interval (error bars) and model size raw/gzip (right axis) against
    sparsity; the base and, when Table 1 has it, the fine-tuned unpruned control
    (``nonprune_ft``) are reference lines with their interval as a band."""
    with plt.style.context(STYLE):
        _fig8(table1, paths)


def _fig8(table1: pd.DataFrame, paths: Sequence[str | Path]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = table1[table1["model"] == "nonprune"]
    control = table1[table1["model"] == "nonprune_ft"]
    # The fine-tuned series starts at the control (sparsity 0, same fine-tune) when there is one.
    tuned = table1[table1["sparsity"] > 0]
    tuned = pd.concat([control if not control.empty else base, tuned]).sort_values("sparsity")
    for ref, color, label in ((base, "tab:gray", "base, not fine-tuned"),
                              (control, "tab:green", "control: base fine-tuned, no pruning")):
        if ref.empty:
            continue
        r = ref.iloc[0]
        ax.axhline(r["mAP"], color=color, lw=1, ls="--", label=f"{label} ({r['mAP']:.3f})")
        ax.axhspan(r["mAP_ci95_lo"], r["mAP_ci95_hi"], color=color, alpha=0.15, lw=0)
    err = [tuned["mAP"] - tuned["mAP_ci95_lo"], tuned["mAP_ci95_hi"] - tuned["mAP"]]
    ax.errorbar(tuned["sparsity"], tuned["mAP"], yerr=err, fmt="o-", color="tab:blue",
                capsize=3, label="pruned + fine-tuned: mAP, 95 % interval")
    levels = table1[table1["model"] != "nonprune_ft"].sort_values("sparsity")
    ax.set_xlabel("sparsity (fraction of Conv2D weights pruned)")
    ax.set_ylabel("mAP (VOC, IoU > 0.5)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(levels["sparsity"], levels["gzip_mb"], "s--", color="tab:red", label="size (gzip)")
    ax2.plot(levels["sparsity"], levels["size_mb"], "^:", color="tab:gray", label="size (raw)")
    ax2.set_ylabel("model size (MB)", color="tab:red")
    ax2.set_ylim(bottom=0)
    ax2.grid(False)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, loc="upper center", bbox_to_anchor=(0.5, -0.15),
              ncol=2, fontsize=8, frameon=False)
    ax.set_title("Fig. 8: mAP (95 % interval) and model size vs sparsity")
    save(fig, paths)


def fig9_size_fps(table2: pd.DataFrame, paths: Sequence[str | Path]) -> None:
    """TFLite file size (gzip, the size that shrinks with sparsity: a dense flatbuffer keeps
    its raw size whatever the zeros) against inference FPS, one series per sparsity level, one
    panel per target; FPS 95 % intervals (``fps_<target>_ci95_lo/_hi``) as error bars when the
    table has them."""
    with plt.style.context(STYLE):
        _fig9(table2, paths)


def _fig9(table2: pd.DataFrame, paths: Sequence[str | Path]) -> None:
    fps_cols = _fps_columns(table2)
    tfl = table2[table2["format"].astype(str).str.startswith("tflite")]
    n = max(1, len(fps_cols))
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.2), squeeze=False, layout="constrained")
    for ax, col in zip(axes[0], fps_cols or [None], strict=True):
        if col is None:
            ax.text(0.5, 0.5, "no enabled TFLite target", ha="center", transform=ax.transAxes)
            continue
        lo, hi = f"{col}_ci95_lo", f"{col}_ci95_hi"
        has_ci = lo in tfl.columns and hi in tfl.columns
        for variant, grp in tfl.groupby("variant", sort=False):
            grp = grp[grp[col].notna()].sort_values("gzip_mb")
            if grp.empty:
                continue
            x, y = grp["gzip_mb"].to_numpy(float), grp[col].to_numpy(float)
            label = "nonprune" if variant == "base" else str(variant)
            if has_ci:
                err = [(y - grp[lo].to_numpy(float)).clip(min=0),
                       (grp[hi].to_numpy(float) - y).clip(min=0)]
                ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=label)
            else:
                ax.plot(x, y, "o-", label=label)
            for xi, yi, fmt in zip(x, y, grp["format"], strict=True):
                ax.annotate(str(fmt).removeprefix("tflite-"), (xi, yi),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.margins(x=0.15, y=0.1)  # room for the format labels beside the points
        ax.set_xlabel("TFLite file size, gzip -9 (MB)")
        ax.set_ylabel("FPS (1000 / median inference ms)"
                      + ("\nbars: 95 % interval" if has_ci else "\nno interval in Table 2"))
        ax.set_title(f"Fig. 9: size vs FPS on {col.removeprefix('fps_')}")
        ax.legend(title="sparsity level")
    save(fig, paths)


def _fps_columns(table2: pd.DataFrame) -> list[str]:
    """The inference-FPS column of each target in Table 2 (``fps_<target>``), leaving out the
    interval, significance and ``vs_float32_pct_*`` columns that sit beside them."""
    extras = ("_ci95_lo", "_ci95_hi", "_significant")
    return [c for c in table2.columns
            if c.startswith("fps_") and not c.endswith(extras)]
