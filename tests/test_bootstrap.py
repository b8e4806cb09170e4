"""Tests for the paired bootstrap over test images (edgeprune.measurement.bootstrap) and where its
intervals
land: the eval stage's scores and the base detectors table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeprune.data.voc import Annotation
from edgeprune.errors import DataError
from edgeprune.measurement.bootstrap import (
    METHOD,
    bootstrap_map,
    bootstrap_maps,
    bootstrap_settings,
    map_samples,
    paired_difference,
    paired_difference_from_dirs,
    percentile_interval,
    resample_weights,
)
from edgeprune.measurement.evaluate import Detections, evaluate, match_classes, write_detections
from edgeprune.stages.evaluate import score_detections
from edgeprune.stages.report import base_summary

CLASSES = ["a", "b", "c"]


def _ann(image_id: str, boxes: list[tuple[float, ...]], names: list[str],
         difficult: list[bool]) -> Annotation:
    n = len(names)
    return Annotation(image_id, Path(f"{image_id}.jpg"), 200, 200,
                      np.asarray(boxes, dtype=np.float32).reshape(-1, 4), tuple(names),
                      np.asarray(difficult, dtype=bool), np.zeros(n, dtype=bool))


def _dataset(n_images: int = 60, seed: int = 3) -> tuple[list[Annotation], Detections,
                                                          Detections]:
    """Images with 1-3 boxes of classes a/b (about 15 % difficult; class c never appears),
    plus a noisy detector (jittered hits with duplicates, misses, tied scores, false
    positives) and a perfect one."""
    rng = np.random.default_rng(seed)
    anns: list[Annotation] = []
    noisy: Detections = {c: [] for c in CLASSES}
    perfect: Detections = {c: [] for c in CLASSES}
    for i in range(n_images):
        image_id = f"im{i:03d}"
        n = int(rng.integers(1, 4))
        boxes, names, difficult = [], [], []
        for k in range(n):
            x, y = 1.0 + 60.0 * k, float(rng.uniform(1, 100))
            boxes.append((x, y, x + 40.0, y + 40.0))
            names.append(str(rng.choice(["a", "b"])))
            difficult.append(bool(rng.random() < 0.15))
        anns.append(_ann(image_id, boxes, names, difficult))
        for box, name, hard in zip(boxes, names, difficult, strict=True):
            if not hard:
                perfect[name].append((image_id, 0.9, *box))
            if rng.random() < 0.75:   # a hit, sometimes jittered past the IoU threshold
                jitter = rng.normal(0.0, 6.0, 4)
                score = round(float(rng.random()), 1)   # ties across images
                noisy[name].append((image_id, score, *(np.asarray(box) + jitter)))
                if rng.random() < 0.3:                  # a duplicate: a false positive
                    noisy[name].append((image_id, score * 0.9, *box))
        for _ in range(int(rng.integers(0, 4))):        # false positives on empty space
            x = float(rng.uniform(1, 150))
            noisy[str(rng.choice(CLASSES))].append(
                (image_id, float(rng.random()) * 0.5, x, 150.0, x + 30.0, 190.0))
    return anns, noisy, perfect


@pytest.fixture(scope="module")
def data() -> tuple[list[Annotation], Detections, Detections]:
    return _dataset()


def test_weights_all_one_is_exactly_evaluate(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    anns, noisy, _ = data
    matches = match_classes(anns, noisy, CLASSES)
    ones = map_samples(matches, np.ones((2, len(anns)), dtype=np.int64))
    for metric in ("voc07", "all"):
        expected = evaluate(anns, noisy, CLASSES, metric).mAP
        assert ones[metric][0] == expected and ones[metric][1] == expected
    # the data really has difficult boxes, duplicates and a class without ground truth
    assert sum(m.npos for m in matches) < sum(len(a.names) for a in anns)
    assert matches[2].npos == 0
    assert any(m.fp.sum() for m in matches)


def test_weights_equal_evaluate_on_the_resampled_image_set(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    """A row of counts scores like evaluate() on a test set holding each image that often."""
    anns, noisy, _ = data
    weights = resample_weights(len(anns), 3, seed=11)
    matches = match_classes(anns, noisy, CLASSES)
    samples = map_samples(matches, weights)
    for r, row in enumerate(weights):
        copies = {a.image_id: [f"{a.image_id}_{k}" for k in range(int(w))]
                  for a, w in zip(anns, row, strict=True)}
        resampled = [Annotation(cid, a.image_path, a.width, a.height, a.boxes, a.names,
                                a.difficult, a.truncated)
                     for a in anns for cid in copies[a.image_id]]
        dets = {c: [(cid, *d[1:]) for d in noisy[c] for cid in copies[d[0]]] for c in CLASSES}
        for metric in ("voc07", "all"):
            assert samples[metric][r] == pytest.approx(
                evaluate(resampled, dets, CLASSES, metric).mAP, abs=1e-12)


def test_perfect_detector_interval_is_one_one(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    anns, _, perfect = data
    for metric, interval in bootstrap_maps(anns, perfect, CLASSES, resamples=200).items():
        assert interval.map == 1.0, metric
        assert interval.ci95 == pytest.approx((1.0, 1.0), abs=1e-12)


def test_interval_contains_point_estimate_and_is_seeded(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    anns, noisy, _ = data
    first = bootstrap_map(anns, noisy, CLASSES, "voc07", resamples=1000, seed=5)
    again = bootstrap_map(anns, noisy, CLASSES, "voc07", resamples=1000, seed=5)
    other = bootstrap_map(anns, noisy, CLASSES, "voc07", resamples=1000, seed=6)
    lo, hi = first.ci95
    assert lo < first.map < hi and hi - lo > 0.02
    assert first.map == evaluate(anns, noisy, CLASSES, "voc07").mAP
    assert again == first
    assert other.ci95 != first.ci95 and other.map == first.map
    assert (first.resamples, first.seed, first.method) == (1000, 5, METHOD)


def test_identical_sets_differ_by_exactly_zero(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    anns, noisy, _ = data
    diff = paired_difference(anns, noisy, {c: list(d) for c, d in noisy.items()}, CLASSES,
                             "all", resamples=300)
    assert diff.diff == 0.0 and diff.ci95 == (0.0, 0.0)
    assert not diff.significant


def test_half_the_true_positives_removed_is_significant(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    anns, _, perfect = data
    halved = {c: d[::2] for c, d in perfect.items()}
    for metric in ("voc07", "all"):
        diff = paired_difference(anns, perfect, halved, CLASSES, metric, resamples=500)
        assert diff.map_a == 1.0 and diff.map_b < 0.7
        assert diff.diff == pytest.approx(diff.map_b - diff.map_a)
        assert diff.ci95[0] <= diff.diff <= diff.ci95[1] < 0.0
        assert diff.significant


def test_small_degradation_within_noise(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    """Dropping one true positive of sixty images is not called significant."""
    anns, _, perfect = data
    minus_one = {c: (d[1:] if c == "a" else d) for c, d in perfect.items()}
    diff = paired_difference(anns, perfect, minus_one, CLASSES, "voc07", resamples=500)
    assert diff.diff < 0.0 and diff.ci95[0] < 0.0 <= diff.ci95[1]
    assert not diff.significant


def test_paired_difference_from_dirs(
        tmp_path: Path, data: tuple[list[Annotation], Detections, Detections]) -> None:
    anns, noisy, perfect = data
    write_detections(tmp_path / "a", noisy, CLASSES)
    write_detections(tmp_path / "b", perfect, CLASSES)
    got = paired_difference_from_dirs(anns, tmp_path / "a", tmp_path / "b", CLASSES, "voc07",
                                      resamples=200, seed=2)
    # the files round scores and boxes, so compare with the same data read back
    from edgeprune.measurement.evaluate import read_detections
    want = paired_difference(anns, read_detections(tmp_path / "a", CLASSES),
                             read_detections(tmp_path / "b", CLASSES), CLASSES, "voc07",
                             resamples=200, seed=2)
    assert got == want and got.diff > 0 and got.significant
    assert got.to_dict()["ci95"] == list(got.ci95)
    with pytest.raises(DataError, match="missing"):
        paired_difference_from_dirs(anns, tmp_path / "a", tmp_path / "missing", CLASSES)


def test_resample_weights_and_errors(
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    w = resample_weights(7, 50, seed=1)
    assert w.shape == (50, 7) and (w.sum(axis=1) == 7).all() and (w >= 0).all()
    assert (resample_weights(7, 50, seed=1) == w).all()
    with pytest.raises(ValueError, match="resamples"):
        resample_weights(7, 0, seed=1)
    with pytest.raises(DataError, match="empty test set"):
        resample_weights(0, 10, seed=1)
    anns, noisy, _ = data
    with pytest.raises(DataError, match="'z'"):
        bootstrap_map(anns, {**noisy, "z": []}, CLASSES)
    with pytest.raises(ValueError, match="metric"):
        bootstrap_map(anns, noisy, CLASSES, "coco")  # type: ignore[arg-type]
    assert percentile_interval(np.array([np.nan, np.nan])) != percentile_interval(np.ones(3))
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan])))


def test_sample_without_any_ground_truth_is_left_out() -> None:
    """An image set where some draws hold no ground truth at all: those draws are NaN and the
    interval comes from the others."""
    anns = [_ann("g", [(1, 1, 40, 40)], ["a"], [False]), _ann("e1", [], [], []),
            _ann("e2", [], [], [])]
    dets: Detections = {"a": [("g", 0.9, 1, 1, 40, 40), ("e1", 0.95, 1, 1, 40, 40)]}
    matches = match_classes(anns, dets, ["a"])
    weights = np.array([[0, 2, 1], [1, 1, 1], [3, 0, 0]])
    samples = map_samples(matches, weights, ("voc07",))["voc07"]
    assert math.isnan(samples[0]) and samples[2] == 1.0 and 0 < samples[1] < 1
    assert math.isnan(map_samples(matches, weights[:1], ("all",))["all"][0])
    interval = bootstrap_map(anns, dets, ["a"], resamples=200)
    assert 0.0 < interval.ci95[0] <= interval.map <= interval.ci95[1] == 1.0


def test_score_detections_fields(data: tuple[list[Annotation], Detections, Detections]) -> None:
    anns, noisy, _ = data
    config = {"evaluation": {"metric": "all", "iou_threshold": 0.5, "bootstrap": 300},
              "seed": 4}
    assert bootstrap_settings(config) == (300, 4)
    lines: list[str] = []
    scores = score_detections(config, anns, noisy, CLASSES, lines.append)
    assert scores["mAP"] == scores["mAP_all"] == evaluate(anns, noisy, CLASSES, "all").mAP
    assert scores["mAP_ci95"] == scores["mAP_all_ci95"]
    want = bootstrap_map(anns, noisy, CLASSES, "voc07", resamples=300, seed=4)
    assert scores["mAP_voc07_ci95"] == list(want.ci95)
    assert scores["bootstrap"] == {"resamples": 300, "seed": 4, "method": METHOD}
    lo, hi = scores["mAP_ci95"]
    assert lo < scores["mAP"] < hi
    assert any("95% interval" in line for line in lines)
    json.dumps(scores)


def test_base_summary_carries_intervals(tmp_path: Path) -> None:
    train = tmp_path / "base.train.json"
    train.write_text(json.dumps({"arch": "m", "metrics": {
        "params": 10, "size_mb": 1.0, "gzip_mb": 0.5, "train_images": 8,
        "train_seconds": 3.0}}))
    ev = tmp_path / "keras.json"
    ev.write_text(json.dumps({"mAP_voc07": 0.5, "mAP_all": 0.52,
                              "mAP_voc07_ci95": [0.4, 0.6], "mAP_all_ci95": [0.41, 0.63]}))
    out = tmp_path / "base_detectors.csv"
    df = base_summary({}, [str(train)], [str(ev)], out, lambda _msg: None)
    row = pd.read_csv(out).iloc[0]
    assert (row["mAP_voc07_ci95_lo"], row["mAP_voc07_ci95_hi"]) == (0.4, 0.6)
    assert (row["mAP_all_ci95_lo"], row["mAP_all_ci95_hi"]) == (0.41, 0.63)
    assert list(df.columns).index("mAP_voc07_ci95_lo") == list(df.columns).index("mAP_voc07") + 1


def test_chunking_does_not_change_samples(
        monkeypatch: pytest.MonkeyPatch,
        data: tuple[list[Annotation], Detections, Detections]) -> None:
    import edgeprune.measurement.bootstrap as bootstrap

    anns, noisy, _ = data
    matches = match_classes(anns, noisy, CLASSES)
    weights = resample_weights(len(anns), 40, seed=9)
    whole = map_samples(matches, weights)
    monkeypatch.setattr(bootstrap, "CHUNK_ELEMENTS", 7)   # one or a few rows per chunk
    chunked = map_samples(matches, weights)
    for metric in ("voc07", "all"):
        assert (chunked[metric] == whole[metric]).all()
        assert len(set(whole[metric].tolist())) > 10


def test_map_pairer_reads_the_config(tmp_path: Path) -> None:
    """The Table 1 entry point: test set, classes and settings from the config."""
    from PIL import Image

    from edgeprune.stages.evaluate import map_pairer

    anns, noisy, perfect = _dataset(n_images=12, seed=5)
    base = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    for a in anns:
        objects = "".join(
            f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox>"
            f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
            "</bndbox></object>" for n, b, d in zip(a.names, a.boxes, a.difficult, strict=True))
        (base / "Annotations" / f"{a.image_id}.xml").write_text(
            f"<annotation><filename>{a.image_id}.jpg</filename><size><width>200</width>"
            f"<height>200</height></size>{objects}</annotation>")
        Image.new("RGB", (200, 200)).save(base / "JPEGImages" / f"{a.image_id}.jpg")
    (base / "ImageSets" / "Main" / "test.txt").write_text(
        "".join(f"{a.image_id}\n" for a in anns))
    write_detections(tmp_path / "a", noisy, CLASSES)
    write_detections(tmp_path / "b", perfect, CLASSES)
    config = {"data": {"source": "voc", "root": str(tmp_path / "VOCdevkit"), "classes": CLASSES,
                       "test_sets": ["VOC2007/test"]},
              "evaluation": {"metric": "all", "iou_threshold": 0.5, "bootstrap": 150}, "seed": 8}
    got = map_pairer(config)(tmp_path / "a", tmp_path / "b")
    want = paired_difference_from_dirs(anns, tmp_path / "a", tmp_path / "b", CLASSES, "all",
                                       resamples=150, seed=8)
    assert got == want and (got.metric, got.resamples, got.seed) == ("all", 150, 8)
    assert map_pairer(config, metric="voc07")(tmp_path / "a", tmp_path / "b").metric == "voc07"
