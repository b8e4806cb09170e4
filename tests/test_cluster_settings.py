"""The ``paper2:`` config section: defaults in step with the schema, errors naming the key,
and the table arithmetic of paper 2 (gains, Tables II and III)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from edgeprune.compression.cluster.report import (
    PAPER_TABLE2,
    fps_gain,
    latency_gain,
    paper_table,
    pick_step,
    speed_table,
)
from edgeprune.compression.cluster.settings import DEFAULTS, paper2_settings
from edgeprune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = {"detectors": {"ssd_mobilenet_v1": {}, "ssd_squeezenet": {}}}


def _schema_defaults(schema: dict[str, Any]) -> Any:
    """The object a validator that fills defaults would build from an empty section."""
    if "default" in schema and not isinstance(schema["default"], dict):
        return schema["default"]
    if schema.get("type") == "object" and "properties" in schema:
        out = {k: _schema_defaults(v) for k, v in schema["properties"].items()}
        return {k: v for k, v in out.items() if v is not None}
    return schema.get("default")


def test_schema_defaults_equal_python_defaults() -> None:
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    from_schema = _schema_defaults(schema["properties"]["paper2"])
    expected = {k: v for k, v in DEFAULTS.items() if k != "archs"}
    assert from_schema == expected


def test_defaults_and_paper_config_parse() -> None:
    s = paper2_settings(BASE)
    assert s.archs == ["ssd_mobilenet_v1", "ssd_squeezenet"]
    assert list(s.targets) == ["host-openvino", "host-litert"]
    assert s.whole.layers["ssd_mobilenet_v1"] == [f"conv{i}" for i in range(1, 10)]
    assert len(s.whole.layers["ssd_squeezenet"]) == 21            # fire2..fire8, 3 convs each
    paper = yaml.safe_load((ROOT / "config/paper2.yaml").read_text())
    p = paper2_settings({**BASE, **paper})
    assert p.sweep.layers["ssd_mobilenet_v1"] == ["conv0", "conv1", "conv2", "conv6"]
    assert (p.sweep.step, p.whole.measure_every, p.whole.finetune.updates) == (1, 8, 2000)
    # Issue 12, point 7: the paper config fine-tunes with SGD + momentum, not Adam at 0.5x.
    assert (p.whole.finetune.optimizer, p.whole.finetune.momentum) == ("sgd", 0.9)
    assert p.whole.finetune.lr_factor <= 0.1
    assert p.sweep.isolated and p.sweep.isolated_step == 1


def test_default_sweeps_hold_four_cycles_of_16() -> None:
    """Issue 12, point 3: default sweeps at step 1 on layers with >= 4 cycles of 16 filters
    (the isolated layer at step 1; the whole network at a coarser step), in a window."""
    from edgeprune.compression.cluster.sweep import window_points
    from edgeprune.detection.models import default_widths

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    s = paper2_settings(cfg)
    assert s.sweep.isolated and s.sweep.isolated_step == 1
    assert s.period.max_period >= 32
    for arch, layers in s.sweep.layers.items():
        widths = default_widths(arch, cfg["detectors"][arch]["width_multiplier"])
        for layer in layers:
            points = window_points(widths[layer], s.sweep.isolated_step, s.sweep.min_filters,
                                   s.sweep.max_removed)
            assert points[0] == widths[layer]
            assert (points[0] - points[-1]) // 16 >= 4, (arch, layer, points)
            assert points == list(range(points[0], points[-1] - 1, -1))
    assert window_points(256, 4, 2, 64) == list(range(256, 191, -4))
    assert window_points(10, 4, 2, None) == [10, 6, 2]


def test_timing_settings_become_engine_settings() -> None:
    s = paper2_settings({**BASE, "paper2": {"sweep": {"timing": {"seconds": 3}}}})
    c = s.sweep.timing.compare_settings(seed=7)
    assert (c.seconds, c.block_runs, c.blocks_per_group, c.warmup, c.min_groups, c.seed) == \
        (3.0, 10, 8, 5, 6, 7)
    assert s.whole.timing.compare_settings(0).seconds == DEFAULTS["whole"]["timing"]["seconds"]
    # Only configured detectors are pruned by default.
    assert paper2_settings({"detectors": {"ssd_squeezenet": {}}}).archs == ["ssd_squeezenet"]


@pytest.mark.parametrize(("section", "key"), [
    ({"sweep": {"layers": {"ssd_mobilenet_v1": ["conv99"]}}},
     "paper2.sweep.layers.ssd_mobilenet_v1"),
    ({"targets": ["pixel9"]}, "paper2.targets"),
    ({"cluster": {"size_from": "host-litert"}, "targets": ["host-openvino"]},
     "paper2.cluster.size_from"),
    ({"cluster": {"size": 0}}, "paper2.cluster.size"),
    ({"whole": {"steps": 0}}, "paper2.whole.steps"),
    ({"archs": ["mobilenet_v2_ssd"]}, "paper2.archs"),
    ({"accuracy": "int8"}, "paper2.accuracy"),
    ({"tables": {"step": 0}}, "paper2.tables.step"),
    ({"sweep": {"timing": {"seconds": 0}}}, "paper2.sweep.timing.seconds"),
    ({"whole": {"timing": {"min_groups": 1}}}, "paper2.whole.timing.min_groups"),
    ({"sweep": {"max_removed": 0}}, "paper2.sweep.max_removed"),
    ({"sweep": {"isolated": {"step": 0}}}, "paper2.sweep.isolated.step"),
    ({"whole": {"finetune": {"optimizer": "rmsprop"}}}, "paper2.whole.finetune.optimizer"),
    ({"whole": {"finetune": {"momentum": 1.0}}}, "paper2.whole.finetune.momentum"),
    ({"app_fps": {"passes": 0}}, "paper2.app_fps.passes"),
    ({"period": {"candidates": [8, 1]}}, "paper2.period.candidates"),
])
def test_errors_name_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        paper2_settings({**BASE, "paper2": section})


def test_disabled_target_is_refused() -> None:
    cfg = {**BASE, "targets": {"host-litert": {"enabled": False}}}
    with pytest.raises(ConfigError, match="disabled"):
        paper2_settings(cfg)
    assert paper2_settings({**cfg, "paper2": {"targets": ["host-openvino"]}}).targets


def test_paper_gains() -> None:
    t = paper_table(PAPER_TABLE2, higher_is_better=False).set_index("row")
    assert t.loc["gain from cluster pruning (%)", "CPU"] == pytest.approx(9.00, abs=0.01)
    assert t.loc["gain from filter pruning (%)", "Pi+NCS"] == pytest.approx(-2.01, abs=0.01)
    assert latency_gain(200.0, 150.0) == pytest.approx(25.0)
    assert fps_gain(4.0, 5.0) == pytest.approx(25.0)
    assert math.isnan(latency_gain(0.0, 1.0))


def test_speed_table_picks_table_step() -> None:
    rows = [("base", False, 0, 0, 10.0)]
    for method, ms in (("filter", (9.5, 9.0)), ("cluster", (9.0, 8.0))):
        for ft in (False, True):
            rows += [(method, ft, 1, 8, ms[0] + ft), (method, ft, 2, 16, ms[1] + ft)]
    df = pd.DataFrame(rows, columns=["method", "finetuned", "step", "removed",
                                     "latency_median_ms"])
    df["arch"], df["target"] = "a", "cpu"
    t = speed_table(df, "latency_median_ms", False, -1, False).set_index("row")
    assert t.loc["without pruning", "cpu"] == 10.0
    assert t.loc["cluster pruning", "cpu"] == 8.0
    assert t.loc["gain from filter pruning (%)", "cpu"] == pytest.approx(10.0)
    assert t.loc["gain from cluster pruning (%)", "cpu"] == pytest.approx(20.0)
    assert t.loc["gain of cluster over filter pruning (%)", "cpu"] == pytest.approx(11.11,
                                                                                  abs=0.01)
    t1 = speed_table(df, "latency_median_ms", True, 1, False).set_index("row")
    assert t1.loc["filter pruning", "cpu"] == 10.5
    assert pick_step([{"step": 1}, {"step": 2}], -2) == {"step": 1}


@pytest.mark.parametrize("overlay", [None, "config/tiny.yaml", "config/paper2.yaml"])
def test_shipped_configs_pass_the_schema(overlay: str | None) -> None:
    """config.yaml alone and with each shipped overlay is valid (unknown or removed keys such
    as the former ``sweep.runs`` would fail) and gives valid paper-2 settings."""
    import jsonschema

    from edgeprune.compression.cluster.settings import _merge

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    if overlay:
        cfg = _merge(cfg, yaml.safe_load((ROOT / overlay).read_text()))
    jsonschema.Draft202012Validator(schema).validate(cfg)
    assert paper2_settings(cfg).sweep.timing.seconds > 0
    bad = _merge(cfg, {"paper2": {"sweep": {"runs": 200}}})
    with pytest.raises(jsonschema.ValidationError, match="runs"):
        jsonschema.Draft202012Validator(schema).validate(bad)
