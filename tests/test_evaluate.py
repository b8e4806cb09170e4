"""Tests for the VOC mAP evaluator (edgeprune.measurement.evaluate), with hand-worked expected
values."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeprune.data.voc import Annotation
from edgeprune.errors import DataError
from edgeprune.measurement.evaluate import (
    Detections,
    class_pr,
    evaluate,
    format_result,
    iou_voc,
    main,
    ranked_matches,
    read_detections,
    voc_ap,
    write_detections,
)

G1 = (1.0, 1.0, 10.0, 10.0)      # 10 x 10 pixels with the +1 convention
G2 = (21.0, 21.0, 30.0, 30.0)
AWAY = (50.0, 50.0, 60.0, 60.0)  # overlaps nothing


def _ann(image_id: str, boxes: list[tuple[float, ...]], names: list[str],
         difficult: list[bool] | None = None) -> Annotation:
    n = len(names)
    return Annotation(
        image_id, Path(f"{image_id}.jpg"), 100, 100,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4), tuple(names),
        np.asarray(difficult if difficult is not None else [False] * n, dtype=bool),
        np.zeros(n, dtype=bool),
    )


# --------------------------------------------------------------------------- voc_ap


def test_voc_ap_hand_worked() -> None:
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    # 11-point: t = 0..0.5 (6 points) reach precision 1, t = 0.6..1 (5 points) only 2/3
    assert voc_ap(recall, precision, True) == pytest.approx((6 + 5 * 2 / 3) / 11)
    # all-point: recall 0->0.5 at envelope 1, 0.5->1 at envelope 2/3
    assert voc_ap(recall, precision, False) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_ap(np.zeros(0), np.zeros(0), True) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), False) == 0.0


def test_voc_ap_envelope_uses_later_higher_precision() -> None:
    # precision rises again later: the envelope carries 0.75 back to recall 0.25
    recall = np.array([0.25, 0.5, 0.75])
    precision = np.array([0.5, 0.5, 0.75])
    assert voc_ap(recall, precision, False) == pytest.approx(0.75 * 0.75)
    # 11-point: t = 0..0.7 (8 points) -> 0.75, t = 0.8..1 -> 0
    assert voc_ap(recall, precision, True) == pytest.approx(8 * 0.75 / 11)


# --------------------------------------------------------------------------- matching


def test_perfect_detections_ap_one() -> None:
    anns = [_ann("i1", [G1, G2], ["a", "b"]), _ann("i2", [G2], ["a"])]
    dets: Detections = {"a": [("i1", 0.9, *G1), ("i2", 0.8, *G2)], "b": [("i1", 0.5, *G2)]}
    for metric in ("voc07", "all"):
        result = evaluate(anns, dets, ["a", "b"], metric=metric)
        assert result.per_class_ap == {"a": 1.0, "b": 1.0}
        assert result.mean_ap == 1.0 and result.mAP == 1.0
        assert result.npos == {"a": 2, "b": 1}
        assert result.num_detections == {"a": 2, "b": 1}


def test_tp_fp_tp_exact_values() -> None:
    anns = [_ann("i1", [G1, G2], ["a", "a"])]
    # given out of order on purpose: ranking is by score
    dets: Detections = {"a": [("i1", 0.7, *G2), ("i1", 0.9, *G1), ("i1", 0.8, *AWAY)]}
    recall, precision, npos = class_pr(anns, dets["a"], "a")
    assert npos == 2
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    assert evaluate(anns, dets, ["a"], "voc07").mean_ap == pytest.approx(28 / 33)
    assert evaluate(anns, dets, ["a"], "all").mean_ap == pytest.approx(5 / 6)


def test_duplicate_detection_is_false_positive() -> None:
    anns = [_ann("i1", [G1, G2], ["a", "a"])]
    dets: Detections = {"a": [("i1", 0.9, *G1), ("i1", 0.8, 1.0, 1.0, 10.0, 9.0),
                              ("i1", 0.7, *G2)]}
    _, precision, _ = class_pr(anns, dets["a"], "a")
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    assert evaluate(anns, dets, ["a"], "all").mean_ap == pytest.approx(5 / 6)


def test_difficult_match_is_ignored_and_not_counted() -> None:
    anns = [_ann("i1", [G1, G2], ["a", "a"], difficult=[False, True])]
    dets: Detections = {"a": [("i1", 0.9, *G2), ("i1", 0.85, *G2), ("i1", 0.8, *G1)]}
    recall, precision, npos = class_pr(anns, dets["a"], "a")
    assert npos == 1
    # two ignored detections (tp = fp = 0), then a TP
    np.testing.assert_allclose(recall, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(precision, [0.0, 0.0, 1.0])
    result = evaluate(anns, dets, ["a"], "voc07")
    assert result.per_class_ap["a"] == pytest.approx(1.0)
    assert result.npos["a"] == 1


def test_iou_threshold_is_strict_with_plus_one_convention() -> None:
    half = (1.0, 1.0, 10.0, 5.0)  # 10 x 5 = 50 px inside the 100 px GT: IoU exactly 0.5
    assert iou_voc(np.array(half), np.array([G1]))[0] == 0.5
    anns = [_ann("i1", [G1], ["a"])]
    at_threshold = evaluate(anns, {"a": [("i1", 0.9, *half)]}, ["a"], "all")
    assert at_threshold.per_class_ap["a"] == 0.0
    above = evaluate(anns, {"a": [("i1", 0.9, 1.0, 1.0, 10.0, 6.0)]}, ["a"], "all")
    assert above.per_class_ap["a"] == 1.0  # IoU 0.6
    looser = evaluate(anns, {"a": [("i1", 0.9, *half)]}, ["a"], "all", iou_threshold=0.45)
    assert looser.per_class_ap["a"] == 1.0


def test_detection_on_image_without_that_class_is_fp() -> None:
    anns = [_ann("i1", [G1], ["a"]), _ann("i2", [G1], ["b"])]
    dets: Detections = {"a": [("i2", 0.9, *G1), ("i1", 0.8, *G1)]}
    _, precision, _ = class_pr(anns, dets["a"], "a")
    np.testing.assert_allclose(precision, [0.0, 0.5])


def test_class_without_ground_truth_is_nan_and_excluded() -> None:
    anns = [_ann("i1", [G1, G2], ["a", "c"], difficult=[False, True])]
    dets: Detections = {"a": [("i1", 0.9, *G1)], "b": [("i1", 0.5, *G2)]}
    result = evaluate(anns, dets, ["a", "b", "c"], "voc07")
    assert result.per_class_ap["a"] == 1.0
    assert math.isnan(result.per_class_ap["b"]) and math.isnan(result.per_class_ap["c"])
    assert result.npos == {"a": 1, "b": 0, "c": 0}
    assert result.mean_ap == 1.0
    assert result.to_dict()["per_class_ap"] == {"a": 1.0, "b": None, "c": None}
    text = format_result(result)
    assert "n/a" in text and "1.0000" in text
    empty = evaluate([_ann("i1", [], [])], {}, ["a"])
    assert math.isnan(empty.mean_ap)


def test_unknown_image_id_and_class_raise() -> None:
    anns = [_ann("i1", [G1], ["a"])]
    with pytest.raises(DataError, match="'ghost_7'"):
        evaluate(anns, {"a": [("ghost_7", 0.9, *G1)]}, ["a"])
    with pytest.raises(DataError, match="'zebra'"):
        evaluate(anns, {"zebra": []}, ["a"])


def test_missing_class_in_detections_means_no_detections() -> None:
    anns = [_ann("i1", [G1], ["a"])]
    result = evaluate(anns, {}, ["a"], "all")
    assert result.per_class_ap == {"a": 0.0} and result.num_detections == {"a": 0}


# --------------------------------------------------------------------------- results files


def _reference_status(anns: list[Annotation], dets: list, name: str,
                      thr: float) -> list[tuple[int, int]]:
    """voc_eval.py's loop, one detection at a time, as the reference for ranked_matches."""
    truth = {a.image_id: (a.boxes[[n == name for n in a.names]].astype(np.float64),
                          a.difficult[[n == name for n in a.names]],
                          np.zeros(sum(n == name for n in a.names), dtype=bool)) for a in anns}
    order = np.argsort(-np.array([d[1] for d in dets]), kind="stable")
    out = []
    for i in order:
        boxes, difficult, matched = truth[dets[i][0]]
        if len(boxes) == 0:
            out.append((0, 1))
            continue
        overlaps = iou_voc(np.asarray(dets[i][2:], dtype=np.float64), boxes)
        best = int(np.argmax(overlaps))
        if overlaps[best] <= thr:
            out.append((0, 1))
        elif difficult[best]:
            out.append((0, 0))
        elif matched[best]:
            out.append((0, 1))
        else:
            matched[best] = True
            out.append((1, 0))
    return out


def test_ranked_matches_equals_reference_loop() -> None:
    """Vectorised per image, the statuses are those of the one-detection-at-a-time loop, on
    crowded images (overlapping boxes, ties, difficult boxes, duplicates)."""
    rng = np.random.default_rng(0)
    anns, dets = [], []
    for i in range(40):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(1, 40, (n, 2))
        boxes = [(x, y, x + 20.0, y + 20.0) for x, y in xy]
        anns.append(_ann(f"i{i}", boxes, ["a"] * n, list(rng.random(n) < 0.2)))
        for _ in range(int(rng.integers(0, 8))):
            x, y = rng.uniform(1, 45, 2)
            dets.append((f"i{i}", round(float(rng.random()), 1), x, y, x + 20.0, y + 20.0))
    for thr in (0.3, 0.5):
        got = ranked_matches(anns, dets, "a", thr)
        want = _reference_status(anns, dets, "a", thr)
        assert list(zip(got.tp.astype(int).tolist(), got.fp.astype(int).tolist(),
                        strict=True)) == want
        assert got.npos == sum(int((~a.difficult).sum()) for a in anns)
        assert {s for s in want} == {(1, 0), (0, 1), (0, 0)}


def test_write_read_round_trip(tmp_path: Path) -> None:
    dets: Detections = {"a": [("000001", 0.9123456, 1.04, 2.0, 30.55, 40.0),
                              ("000002", 0.1, 5.0, 6.0, 7.0, 8.0)]}
    paths = write_detections(tmp_path / "dets", dets, ["a", "b"])
    assert [p.name for p in paths] == ["comp4_det_test_a.txt", "comp4_det_test_b.txt"]
    lines = paths[0].read_text().splitlines()
    assert lines[0] == "000001 0.912346 1.0 2.0 30.6 40.0"
    assert paths[1].read_text() == ""
    back = read_detections(tmp_path / "dets", ["a", "b"])
    assert back["b"] == []
    assert back["a"][1] == ("000002", 0.1, 5.0, 6.0, 7.0, 8.0)
    assert back["a"][0][0] == "000001"
    np.testing.assert_allclose(back["a"][0][1:], [0.912346, 1.0, 2.0, 30.6, 40.0])
    assert not list((tmp_path / "dets").glob(".*"))  # no temporary files left behind


def test_read_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "comp4_det_test_a.txt").write_text(
        "000001 0.9 1 2 3 4\n\n000002 0.8 1 2 three 4\n")
    with pytest.raises(DataError) as info:
        read_detections(tmp_path, ["a"])
    assert "comp4_det_test_a.txt:3" in str(info.value)
    (tmp_path / "comp4_det_test_a.txt").write_text("000001 0.9 1 2 3\n")
    with pytest.raises(DataError, match="comp4_det_test_a.txt:1"):
        read_detections(tmp_path, ["a"])


def test_read_missing_class_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="comp4_det_test_a.txt"):
        read_detections(tmp_path, ["a"])
    assert read_detections(tmp_path, ["a"], allow_missing=True) == {"a": []}
    with pytest.raises(DataError, match="absent"):
        read_detections(tmp_path / "absent", ["a"], allow_missing=True)


# --------------------------------------------------------------------------- CLI


def _xml(objects: list[tuple[str, tuple[float, ...], int]]) -> str:
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return ("<annotation><filename>x.jpg</filename><size><width>100</width>"
            f"<height>100</height></size>{body}</annotation>")


@pytest.fixture()
def cli_data(tmp_path: Path) -> dict[str, Path]:
    ann_dir = tmp_path / "VOC" / "Annotations"
    ann_dir.mkdir(parents=True)
    (ann_dir / "000001.xml").write_text(_xml([("dog", G1, 0), ("dog", G2, 0), ("cat", AWAY, 0)]))
    (ann_dir / "000002.xml").write_text(_xml([("cat", G1, 1)]))
    (ann_dir / "000003.xml").write_text(_xml([("bird", G1, 0)]))  # not in the image set
    imageset = tmp_path / "test.txt"
    imageset.write_text("000001\n000002\n")
    dets: Detections = {
        "dog": [("000001", 0.9, *G1), ("000001", 0.8, *AWAY), ("000001", 0.7, *G2)],
        "cat": [("000001", 0.6, *AWAY), ("000002", 0.95, *G1)],
    }
    write_detections(tmp_path / "dets", dets, ["cat", "dog"])
    return {"annotations": ann_dir, "imageset": imageset, "detections": tmp_path / "dets",
            "root": tmp_path}


def _argv(data: dict[str, Path], *extra: str) -> list[str]:
    return ["--annotations", str(data["annotations"]), "--imageset", str(data["imageset"]),
            "--detections", str(data["detections"]), *extra]


def test_cli_end_to_end(cli_data: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out_json = cli_data["root"] / "out" / "eval.json"
    assert main(_argv(cli_data, "--metric", "all", "--json", str(out_json))) == 0
    printed = capsys.readouterr().out
    # classes default to those present: cat, dog. cat: ignored (difficult) then TP -> 1.0;
    # dog: TP, FP, TP -> 5/6. mAP = (1 + 5/6) / 2 = 0.9167
    assert "mAP (all, IoU > 0.5): 0.9167" in printed
    assert "bird" not in printed
    report = json.loads(out_json.read_text())
    assert report["per_class_ap"]["dog"] == pytest.approx(5 / 6)
    assert report["mAP"] == pytest.approx(11 / 12)
    assert report["npos"] == {"cat": 1, "dog": 2}

    assert main(_argv(cli_data, "--classes", "dog", "--metric", "voc07")) == 0
    assert "mAP (voc07, IoU > 0.5): 0.8485" in capsys.readouterr().out


def test_cli_errors_exit_2(cli_data: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cli_data["detections"] = cli_data["root"] / "no_such_dir"
    assert main(_argv(cli_data)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_dir" in err and "Traceback" not in err

    cli_data["detections"] = cli_data["root"] / "dets"
    assert main(_argv(cli_data, "--classes", "cat,dog,bird")) == 2
    assert "comp4_det_test_bird.txt" in capsys.readouterr().err


def test_cli_as_module(cli_data: dict[str, Path]) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgeprune.evaluate", *_argv(cli_data)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "mAP (voc07" in proc.stdout


def test_cli_bootstrap_interval(cli_data: dict[str, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    out_json = cli_data["root"] / "boot.json"
    argv = _argv(cli_data, "--metric", "all", "--bootstrap", "200", "--seed", "3",
                 "--json", str(out_json))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "95% interval (200 bootstrap resamples of 2 test images, seed 3): [" in printed
    report = json.loads(out_json.read_text())
    lo, hi = report["mAP_ci95"]
    # image 000002 holds only a difficult cat (ignored either way) and no scorable ground
    # truth, so every draw that counts holds 000001 at least once and scores 11/12 again
    assert lo == pytest.approx(11 / 12) and hi == pytest.approx(11 / 12)
    assert f"[{lo:.4f}, {hi:.4f}]" in printed
    assert report["bootstrap"]["resamples"] == 200 and report["bootstrap"]["seed"] == 3
    assert "percentile" in report["bootstrap"]["method"]
    assert main(argv) == 0
    assert json.loads(out_json.read_text())["mAP_ci95"] == [lo, hi]   # seeded
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(_argv(cli_data, "--bootstrap", "0"))
    assert "positive integer" in capsys.readouterr().err


def test_cli_compare(cli_data: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    same = _argv(cli_data, "--metric", "all", "--compare", str(cli_data["detections"]),
                 "--bootstrap", "100")
    assert main(same) == 0
    printed = capsys.readouterr().out
    assert ("paired difference (other - main) +0.0000, 95% interval [+0.0000, +0.0000] "
            "(100 resamples, seed 0): within noise (interval holds 0)") in printed

    # the other detector drops the dog false positive: dog AP 5/6 -> 1, mAP +1/12 in every
    # draw that holds image 000001 (draws without it have no ground truth and are left out)
    better = read_detections(cli_data["detections"], ["cat", "dog"])
    better["dog"] = [d for d in better["dog"] if d[2] != AWAY[0]]
    write_detections(cli_data["root"] / "better", better, ["cat", "dog"])
    out_json = cli_data["root"] / "cmp.json"
    assert main(_argv(cli_data, "--metric", "all", "--compare", str(cli_data["root"] / "better"),
                      "--json", str(out_json))) == 0
    printed = capsys.readouterr().out
    assert "mAP 1.0000; paired difference (other - main) +0.0833" in printed
    assert "(1000 resamples, seed 0): significant (interval excludes 0)" in printed
    cmp = json.loads(out_json.read_text())["compare"]
    assert cmp["significant"] is True and cmp["diff"] == pytest.approx(1 / 12)
    assert cmp["ci95"] == pytest.approx([1 / 12, 1 / 12])
    assert cmp["detections"] == str(cli_data["root"] / "better")

    assert main(_argv(cli_data, "--compare", str(cli_data["root"] / "nowhere"))) == 2
    assert "nowhere" in capsys.readouterr().err
