"""Paper figures (matplotlib/seaborn), written atomically as PNG and PDF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from edgeprune.fileio import atomic_path  # noqa: E402


def save(fig: Any, paths: Sequence[str | Path]) -> None:
    """Save ``fig`` to every path (format from the suffix) atomically, then close it."""
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=Path(p).suffix[1:])
    plt.close(fig)


def fig8_sparsity(table1: pd.DataFrame, paths: Sequence[str | Path]) -> None:
    """mAP (left axis) and model size raw/gzip (right axis) against sparsity."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(table1["sparsity"], table1["mAP"], "o-", color="tab:blue", label="mAP")
    ax.set_xlabel("sparsity (fraction of Conv2D weights pruned)")
    ax.set_ylabel("mAP (VOC, IoU > 0.5)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(table1["sparsity"], table1["gzip_mb"], "s--", color="tab:red", label="size (gzip)")
    ax2.plot(table1["sparsity"], table1["size_mb"], "^:", color="tab:gray", label="size (raw)")
    ax2.set_ylabel("model size (MB)", color="tab:red")
    ax2.grid(False)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower left")
    ax.set_title("Fig. 8: mAP and model size vs sparsity")
    save(fig, paths)


def fig9_size_fps(table2: pd.DataFrame, paths: Sequence[str | Path]) -> None:
    """TFLite model size against FPS, one series per sparsity level, one panel per target."""
    sns.set_theme(style="whitegrid")
    fps_cols = [c for c in table2.columns if c.startswith("fps_")]
    tfl = table2[table2["format"].str.startswith("tflite")]
    n = max(1, len(fps_cols))
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    for ax, col in zip(axes[0], fps_cols or [None], strict=True):
        if col is None:
            ax.text(0.5, 0.5, "no enabled TFLite target", ha="center", transform=ax.transAxes)
            continue
        for variant, grp in tfl.groupby("variant", sort=False):
            ax.plot(grp["size_mb"], grp[col], "o-", label=variant)
            for _, r in grp.iterrows():
                ax.annotate(r["format"].removeprefix("tflite-"), (r["size_mb"], r[col]),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("TFLite model size (MB)")
        ax.set_ylabel("FPS (1000 / median inference ms)")
        ax.set_title(f"Fig. 9: size vs FPS on {col.removeprefix('fps_')}")
        ax.legend(title="sparsity level")
    save(fig, paths)
