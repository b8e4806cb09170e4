"""The side-by-side table of paper 2's two backends (edgeprune.stages.backends): step pairing,
settings, words that follow the intervals, and the join of paired mAPs and latencies. The
workflow run with both backends is in tests/test_cluster_integration.py."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from edgeprune.compression.cluster.settings import paper2_settings
from edgeprune.errors import ConfigError, DataError
from edgeprune.stages.backends import paired_rows, side_by_side, verdict


def _build(method: str, steps: int, widths: dict[str, int]) -> dict:
    row = {"params": 100, "widths": widths, "removed": 0, "file_ir": "m.xml"}
    series = [dict(row, method=method, step=i + 1, finetuned=False, removed=4 * (i + 1))
              for i in range(steps)]
    return {"base": dict(row), "series": {"oneshot": series}}


def test_steps_are_paired_by_method_finetuned_and_step() -> None:
    keras = [_build("filter", 2, {"conv1": 8}), _build("cluster", 1, {"conv1": 4})]
    torch = [_build("filter", 2, {"conv1": 8}), _build("cluster", 1, {"conv1": 4})]
    pairs = paired_rows({"keras": keras, "torch": torch})
    assert [k for k, _, _ in pairs] == [("base", False, 0), ("filter", False, 1),
                                        ("filter", False, 2), ("cluster", False, 1)]
    assert all(k_row["build"] == t_row["build"] for _, k_row, t_row in pairs)
    short = [_build("filter", 1, {"conv1": 8}), _build("cluster", 1, {"conv1": 4})]
    with pytest.raises(DataError, match=r"\('filter', False, 2\)"):
        paired_rows({"keras": keras, "torch": short})


def test_backend_setting_takes_one_name_or_a_list() -> None:
    base = {"detectors": {"ssd_mobilenet_v1": {}, "ssd_squeezenet": {}}}
    assert paper2_settings(base).backends == ("keras",)
    both = paper2_settings({**base, "paper2": {"backend": ["keras", "torch"]}})
    assert (both.backend, both.backends) == ("keras", ("keras", "torch"))
    assert both.for_backend("torch").backend == "torch"
    assert both.for_backend(None) is both
    with pytest.raises(ConfigError, match=r"'paper2\.backend': 'torch' is not listed"):
        paper2_settings(base).for_backend("torch")
    for bad in (["keras", "keras"], [], ["tf"], 3):
        with pytest.raises(ConfigError, match=r"'paper2\.backend': expected one of"):
            paper2_settings({**base, "paper2": {"backend": bad}})


def test_words_follow_the_interval() -> None:
    assert verdict(0.4, -0.1, 0.9, "slower", "faster", " %", 2).startswith("within noise")
    assert verdict(3.0, 1.0, 5.0, "slower", "faster", " %", 2) == \
        "torch slower (+3.00 % [+1.00, +5.00])"
    assert verdict(-0.02, -0.03, -0.01, "more accurate", "less accurate", "", 4) == \
        "torch less accurate (-0.0200 [-0.0300, -0.0100])"
    assert verdict(math.nan, 0.0, 1.0, "a", "b", "", 1) == "no interval"


def _times(steps: list[tuple[str, bool, int]], target: str = "host") -> pd.DataFrame:
    return pd.DataFrame([{"arch": "a", "target": target, "method": m, "finetuned": ft,
                          "step": st, "latency_keras_ms": 1.0, "latency_torch_ms": 1.1,
                          "latency_diff_pct": 10.0, "latency_diff_ci95_lo_pct": 8.0,
                          "latency_diff_ci95_hi_pct": 12.0, "latency_diff_significant": True}
                         for m, ft, st in steps])


def _maps(steps: list[tuple[str, bool, int]]) -> list[dict]:
    pairs = [{"method": m, "finetuned": ft, "step": st, "format": "ir", "same_widths": True,
              "params_keras": 10, "params_torch": 10, "mAP_keras": 0.5, "mAP_torch": 0.5005,
              "mAP_diff": 0.0005, "mAP_diff_ci95": [-0.001, 0.002],
              "mAP_diff_significant": False, "metric": "voc07"}
             for m, ft, st in steps]
    return [{"arch": "a", "pairs": pairs}]


def test_side_by_side_joins_latency_and_map_per_target() -> None:
    steps = [("base", False, 0), ("cluster", False, 1), ("filter", False, 1)]
    times = pd.concat([_times(steps, "host"), _times(steps, "jetson")], ignore_index=True)
    df = side_by_side(_maps(steps), times)
    assert len(df) == 6
    assert df[df["target"] == "host"]["method"].tolist() == ["base", "filter", "cluster"]
    assert (df["latency_words"] == "torch slower (+10.00 % [+8.00, +12.00])").all()
    assert df["mAP_words"].str.startswith("within noise").all()
    assert (df["mAP_diff_ci95_lo"] == -0.001).all()
    with pytest.raises(DataError, match=r"step \(filter, finetuned=False, 1\) of a has a "
                                        r"latency or an mAP pair but not both"):
        side_by_side(_maps(steps[:2]), _times(steps))
