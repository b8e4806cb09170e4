"""Tests for edgeprune.reporting.figures.fig9_size_fps: the size plotted shrinks with sparsity
(gzip), the
axis says so, FPS intervals become error bars, and only the fps_<target> columns make panels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from edgeprune.reporting import figures

GZIP = {"base": (5.9, 3.0, 1.6), "prune50": (3.6, 2.0, 1.2), "prune72": (2.4, 1.4, 0.8)}
FPS = {"base": (657.0, 558.0, 1068.0), "prune50": (506.0, 510.0, 1213.0),
       "prune72": (474.0, 491.0, 1159.0)}
RAW = {"float32": 6.45, "float16": 3.27, "int8": 1.90}  # dense: the same at every sparsity


def _table2() -> pd.DataFrame:
    rows = []
    for v in GZIP:
        rows.append({"model": f"model_{v}_base", "variant": v, "format": "keras", "mAP": 0.4,
                     "size_mb": 7.11, "gzip_mb": 6.0})
        for i, d in enumerate(RAW):
            f = FPS[v][i]
            rows.append({"model": f"model_{v}_{d}", "variant": v, "format": f"tflite-{d}",
                         "mAP": 0.4, "size_mb": RAW[d], "gzip_mb": GZIP[v][i],
                         "fps_host-litert": f, "fps_host-litert_ci95_lo": f - 20.0,
                         "fps_host-litert_ci95_hi": f + 30.0,
                         "fps_host-litert_significant": True,
                         "vs_float32_pct_host-litert": 0.0, "app_fps_host-litert": f / 3,
                         "fps_phone": f / 50})
    return pd.DataFrame(rows)


@pytest.fixture()
def drawn(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The figure fig9_size_fps builds (captured instead of saved)."""
    captured: dict[str, Any] = {}
    monkeypatch.setattr(figures, "save", lambda fig, paths: captured.setdefault("fig", fig))
    figures.fig9_size_fps(_table2(), ["unused.png"])
    return captured["fig"]


def test_one_panel_per_fps_column_only(drawn: Any) -> None:
    titles = [ax.get_title() for ax in drawn.axes]
    assert titles == ["Fig. 9: size vs FPS on host-litert", "Fig. 9: size vs FPS on phone"]


def test_x_is_the_gzip_size_and_the_axis_says_so(drawn: Any) -> None:
    ax = drawn.axes[1]
    assert "gzip" in ax.get_xlabel()
    xs = {line.get_label(): sorted(line.get_xdata()) for line in ax.get_lines()}
    assert xs["nonprune"] == sorted(GZIP["base"])
    assert xs["prune72"] == sorted(GZIP["prune72"])
    # The plotted size shrinks with sparsity (the raw dense size would not).
    assert max(xs["prune72"]) < max(xs["prune50"]) < max(xs["nonprune"])


def test_fps_intervals_are_error_bars_when_present(drawn: Any) -> None:
    with_ci, without = drawn.axes
    bars = [c for c in with_ci.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3
    segments = bars[0].lines[2][0].get_segments()  # the nonprune series' vertical bars
    spans = sorted((seg[0][1], seg[1][1]) for seg in segments)
    assert spans == sorted((f - 20.0, f + 30.0) for f in FPS["base"])
    assert "95 %" in with_ci.get_ylabel()
    assert not [c for c in without.containers if isinstance(c, ErrorbarContainer)]
    assert "no interval" in without.get_ylabel()


def test_writes_png_and_pdf(tmp_path: Path) -> None:
    paths = [tmp_path / "fig9.png", tmp_path / "fig9.pdf"]
    figures.fig9_size_fps(_table2(), paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
    assert paths[1].read_bytes()[:4] == b"%PDF"
