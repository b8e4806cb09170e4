"""Tests for edgeprune.detection.boxes: anchors, box forms, encoding, IoU, matching, NMS,
postprocess, and that the module stays shippable to boards (standalone, Python 3.7 syntax)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from tiny_clip import board_remote_app

from edgeprune.detection import boxes as boxes_module
from edgeprune.detection.boxes import (
    AnchorSpec,
    PostprocessConfig,
    center_to_corners,
    corners_to_center,
    decode,
    encode,
    generate_anchors,
    iou_matrix,
    match,
    nms,
    postprocess,
    scales,
)


def _random_corner_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` valid corner boxes inside [0, 1] with sides of at least 0.02."""
    xy0 = rng.uniform(0.0, 0.7, size=(n, 2))
    wh = rng.uniform(0.02, 0.3, size=(n, 2))
    return np.concatenate([xy0, xy0 + wh], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- anchors


def test_anchor_count_is_sum_of_cells_times_anchors_per_location() -> None:
    spec = AnchorSpec(feature_sizes=((4, 4), (3, 2), (1, 1)), aspect_ratios=(1.0, 2.0, 0.5))
    anchors = generate_anchors(spec)
    assert spec.anchors_per_location == 4
    assert anchors.shape == ((16 + 6 + 1) * 4, 4)
    assert anchors.dtype == np.float32


def test_default_anchor_spec_has_six_anchors_per_location() -> None:
    spec = AnchorSpec(feature_sizes=((2, 2),))
    assert spec.anchors_per_location == 6
    assert generate_anchors(spec).shape == (2 * 2 * 6, 4)


def test_anchor_centres_are_cell_centres_inside_unit_square() -> None:
    spec = AnchorSpec(feature_sizes=((2, 3),), aspect_ratios=(1.0, 2.0))
    anchors = generate_anchors(spec)
    k = spec.anchors_per_location
    assert np.all(anchors[:, :2] > 0.0) and np.all(anchors[:, :2] < 1.0)
    # Row-major over cells, anchor type fastest.
    for y in range(2):
        for x in range(3):
            cell = anchors[(y * 3 + x) * k:(y * 3 + x + 1) * k]
            np.testing.assert_allclose(cell[:, 0], (x + 0.5) / 3, atol=1e-6)
            np.testing.assert_allclose(cell[:, 1], (y + 0.5) / 2, atol=1e-6)


def test_anchor_scales_are_monotone_between_min_and_max() -> None:
    sizes = ((8, 8), (4, 4), (2, 2), (1, 1))
    spec = AnchorSpec(feature_sizes=sizes, min_scale=0.2, max_scale=0.8,
                      aspect_ratios=(1.0, 2.0, 0.5))
    anchors = generate_anchors(spec)
    k = spec.anchors_per_location
    # The first anchor type of each map has aspect ratio 1: its side is the map's scale.
    starts = np.cumsum([0] + [h * w * k for h, w in sizes])[:-1]
    square = anchors[starts]
    np.testing.assert_allclose(square[:, 2], square[:, 3], atol=1e-6)
    side = square[:, 2]
    assert side[0] == pytest.approx(0.2)
    assert side[-1] == pytest.approx(0.8)
    assert np.all(np.diff(side) > 0)
    np.testing.assert_allclose(side, [0.2, 0.4, 0.6, 0.8], atol=1e-6)
    # The extra square anchor sits between this map's scale and the next one.
    extra = anchors[starts + k - 1, 2]
    assert np.all(extra > side)
    np.testing.assert_allclose(extra[:-1], np.sqrt(side[:-1] * side[1:]), atol=1e-6)
    # Aspect ratio r gives w / h == r (before clipping, which small scales avoid).
    first = anchors[:k]
    np.testing.assert_allclose(first[1, 2] / first[1, 3], 2.0, rtol=1e-5)
    np.testing.assert_allclose(first[2, 2] / first[2, 3], 0.5, rtol=1e-5)


def test_scales_by_hand() -> None:
    assert scales(1, 0.1, 0.9) == [0.1, 0.9]
    np.testing.assert_allclose(scales(3, 0.2, 0.8), [0.2, 0.5, 0.8, 1.0])


def test_anchors_are_clipped_to_unit_square() -> None:
    spec = AnchorSpec(feature_sizes=((1, 1),), min_scale=0.9, max_scale=0.95,
                      aspect_ratios=(1.0, 3.0))
    anchors = generate_anchors(spec)
    assert anchors.min() >= 0.0 and anchors.max() <= 1.0


# --------------------------------------------------------------------------- box forms


def test_corners_center_by_hand() -> None:
    corners = np.array([[0.1, 0.2, 0.5, 0.8]], np.float32)
    np.testing.assert_allclose(corners_to_center(corners), [[0.3, 0.5, 0.4, 0.6]], atol=1e-6)
    np.testing.assert_allclose(center_to_corners([[0.3, 0.5, 0.4, 0.6]]), corners, atol=1e-6)


def test_corners_center_round_trip() -> None:
    boxes = _random_corner_boxes(np.random.default_rng(0), 50)
    np.testing.assert_allclose(center_to_corners(corners_to_center(boxes)), boxes, atol=1e-6)
    batched = boxes.reshape(5, 10, 4)
    assert corners_to_center(batched).shape == (5, 10, 4)


def test_encode_decode_round_trip() -> None:
    rng = np.random.default_rng(1)
    boxes = _random_corner_boxes(rng, 200)
    anchors = corners_to_center(_random_corner_boxes(rng, 200))
    loc = encode(boxes, anchors)
    assert loc.shape == (200, 4)
    np.testing.assert_allclose(decode(loc, anchors), boxes, atol=1e-5)
    # Batched regression outputs decode against the same anchors.
    np.testing.assert_allclose(decode(np.stack([loc, loc]), anchors)[1], boxes, atol=1e-5)


def test_encode_of_anchor_itself_is_zero() -> None:
    anchors = np.array([[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.1, 0.1]], np.float32)
    np.testing.assert_allclose(encode(center_to_corners(anchors), anchors), 0.0, atol=1e-5)
    np.testing.assert_allclose(decode(np.zeros((2, 4)), anchors), center_to_corners(anchors),
                               atol=1e-6)


def test_encode_by_hand_with_variances() -> None:
    anchor = np.array([[0.5, 0.5, 0.2, 0.2]], np.float32)
    box = center_to_corners([[0.52, 0.5, 0.4, 0.2]])
    # dx = 0.02 / (0.2 * 0.1) = 1; dw = log(0.4 / 0.2) / 0.2
    np.testing.assert_allclose(encode(box, anchor), [[1.0, 0.0, np.log(2.0) / 0.2, 0.0]],
                               atol=1e-4)


# --------------------------------------------------------------------------- IoU


def test_iou_matrix_hand_cases() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [2, 0, 3, 2]], np.float32)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 4)
    expected = np.array([
        [1 / 7, 1.0, 0.0, 0.0],   # overlap 1 of union 7; identical; disjoint; touching edge
        [0.0, 0.25, 0.0, 0.0],    # corner touch; contained (1 / 4); disjoint; disjoint
    ])
    np.testing.assert_allclose(iou, expected, atol=1e-6)


def test_iou_matrix_is_symmetric_and_bounded() -> None:
    boxes = _random_corner_boxes(np.random.default_rng(2), 30)
    iou = iou_matrix(boxes, boxes)
    np.testing.assert_allclose(iou, iou.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(iou), 1.0, atol=1e-6)
    assert iou.min() >= 0.0 and iou.max() <= 1.0 + 1e-6


def test_iou_of_degenerate_boxes_is_zero() -> None:
    point = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
    assert iou_matrix(point, point)[0, 0] == 0.0
    assert np.isfinite(iou_matrix(point, point)).all()


# --------------------------------------------------------------------------- matching


def _grid_anchors() -> np.ndarray:
    """Four 0.5x0.5 anchors tiling the unit square (centre form) plus one small square one."""
    return np.array([
        [0.25, 0.25, 0.5, 0.5],
        [0.75, 0.25, 0.5, 0.5],
        [0.25, 0.75, 0.5, 0.5],
        [0.75, 0.75, 0.5, 0.5],
        [0.9, 0.9, 0.1, 0.1],
    ], np.float32)


def test_match_gives_gt_its_best_anchor_even_below_threshold() -> None:
    anchors = _grid_anchors()
    # A small box inside the top-left quadrant: IoU with anchor 0 is 0.04 / 0.25 = 0.16.
    gt = np.array([[0.1, 0.1, 0.3, 0.3]], np.float32)
    loc_t, cls_t = match(gt, np.array([2]), anchors, iou_threshold=0.5)
    np.testing.assert_array_equal(cls_t, [3, 0, 0, 0, 0])
    np.testing.assert_allclose(decode(loc_t[:1], anchors[:1]), gt, atol=1e-5)
    np.testing.assert_array_equal(loc_t[1:], 0.0)


def test_match_threshold_and_background() -> None:
    anchors = _grid_anchors()
    # Two boxes: one equal to anchor 3, one covering the left half (IoU 0.5 with anchors 0, 2).
    gt = np.array([[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]], np.float32)
    loc_t, cls_t = match(gt, np.array([0, 1]), anchors, iou_threshold=0.5)
    np.testing.assert_array_equal(cls_t, [2, 0, 2, 1, 0])
    np.testing.assert_allclose(decode(loc_t, anchors)[[0, 2]], gt[[1, 1]], atol=1e-5)
    np.testing.assert_allclose(loc_t[3], 0.0, atol=1e-5)  # gt equals the anchor
    # Above a stricter threshold only each box's best anchor stays positive.
    _, strict = match(gt, np.array([0, 1]), anchors, iou_threshold=0.6)
    assert sorted(np.nonzero(strict)[0].tolist()) in ([0, 3], [2, 3])


def test_match_best_anchor_claim_overrides_a_better_gt() -> None:
    anchors = np.array([[0.5, 0.5, 0.4, 0.4], [0.1, 0.1, 0.1, 0.1]], np.float32)
    big = [0.3, 0.3, 0.7, 0.7]     # equals anchor 0
    small = [0.45, 0.45, 0.55, 0.55]  # best anchor is also anchor 0 (IoU 0.0625)
    _, cls_t = match(np.array([big, small], np.float32), np.array([0, 1]), anchors)
    # Anchor 0 is claimed as the best anchor of both; the later gt wins the assignment.
    assert cls_t[0] in (1, 2)
    assert cls_t[1] == 0


def test_match_without_ground_truth_is_all_background() -> None:
    anchors = _grid_anchors()
    loc_t, cls_t = match(np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), anchors)
    assert loc_t.shape == (5, 4) and cls_t.shape == (5,)
    assert not loc_t.any() and not cls_t.any()


# --------------------------------------------------------------------------- NMS


def test_nms_suppresses_overlaps_keeps_disjoint_in_score_order() -> None:
    boxes = np.array([
        [0.5, 0.5, 0.6, 0.6],     # disjoint, score 0.7
        [0.0, 0.0, 0.2, 0.2],     # best, 0.9
        [0.01, 0.0, 0.21, 0.2],   # overlaps the best heavily, 0.8
        [0.8, 0.8, 0.9, 0.9],     # disjoint, 0.95
    ], np.float32)
    scores = np.array([0.7, 0.9, 0.8, 0.95], np.float32)
    keep = nms(boxes, scores, iou_threshold=0.5, max_out=10)
    assert keep.tolist() == [3, 1, 0]
    assert keep.dtype == np.int64


def test_nms_respects_max_out() -> None:
    boxes = np.array([[i * 0.2, 0.0, i * 0.2 + 0.1, 0.1] for i in range(5)], np.float32)
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.2], np.float32)
    assert nms(boxes, scores, 0.5, max_out=2).tolist() == [3, 1]
    assert nms(boxes, scores, 0.5, max_out=10).tolist() == [3, 1, 2, 4, 0]


def test_nms_threshold_is_inclusive_of_keeping_equal_iou() -> None:
    # IoU of these two boxes is exactly 1/3 (overlap 1, union 3).
    boxes = np.array([[0, 0, 2, 1], [1, 0, 3, 1]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, iou_threshold=0.5, max_out=5).tolist() == [0, 1]
    assert nms(boxes, scores, iou_threshold=0.3, max_out=5).tolist() == [0]


def test_nms_empty() -> None:
    keep = nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5, 10)
    assert keep.shape == (0,)


# --------------------------------------------------------------------------- postprocess


def test_postprocess_returns_one_confident_box_per_class() -> None:
    anchors = generate_anchors(AnchorSpec(feature_sizes=((4, 4),), aspect_ratios=(1.0,)))
    n = anchors.shape[0]
    rng = np.random.default_rng(3)
    loc = rng.normal(0.0, 0.1, size=(n, 4)).astype(np.float32)
    targets = {0: (5, [0.2, 0.2, 0.45, 0.5]), 1: (20, [0.55, 0.6, 0.9, 0.95])}
    probs = np.zeros((n, 3), np.float32)
    probs[:, 0] = 1.0
    for cls, (anchor, box) in targets.items():
        loc[anchor] = encode(np.array([box], np.float32), anchors[anchor:anchor + 1])[0]
        probs[anchor] = 0.0
        probs[anchor, cls + 1] = 0.9 if cls == 0 else 0.8
        probs[anchor, 0] = 1.0 - probs[anchor, cls + 1]
    boxes, scores, classes = postprocess(loc, probs, anchors, PostprocessConfig())
    assert boxes.shape == (2, 4) and scores.shape == (2,) and classes.shape == (2,)
    assert classes.tolist() == [0, 1]
    np.testing.assert_allclose(scores, [0.9, 0.8], atol=1e-6)
    np.testing.assert_allclose(boxes[0], targets[0][1], atol=1e-5)
    np.testing.assert_allclose(boxes[1], targets[1][1], atol=1e-5)


def test_postprocess_suppresses_duplicates_and_clips() -> None:
    anchors = np.array([[0.5, 0.5, 0.4, 0.4], [0.52, 0.5, 0.4, 0.4], [0.95, 0.95, 0.3, 0.3]],
                       np.float32)
    loc = np.zeros((3, 4), np.float32)
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], np.float32)
    boxes, scores, classes = postprocess(loc, probs, anchors,
                                         PostprocessConfig(score_threshold=0.5))
    np.testing.assert_allclose(scores, [0.9, 0.7], atol=1e-6)
    assert classes.tolist() == [0, 0]
    np.testing.assert_allclose(boxes[0], [0.3, 0.3, 0.7, 0.7], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [0.8, 0.8, 1.0, 1.0], atol=1e-6)  # clipped


def test_postprocess_respects_thresholds_and_max_total() -> None:
    # One small anchor per cell of a 3x3 grid (the extra square anchor of each cell dropped), so
    # no two anchors overlap and NMS removes nothing.
    anchors = generate_anchors(AnchorSpec(feature_sizes=((3, 3),), aspect_ratios=(1.0,),
                                          min_scale=0.1, max_scale=0.1))[::2]
    n = anchors.shape[0]
    assert n == 9
    loc = np.zeros((n, 4), np.float32)
    probs = np.zeros((n, 2), np.float32)
    probs[:, 1] = np.linspace(0.05, 0.95, n)
    probs[:, 0] = 1.0 - probs[:, 1]
    _, scores, _ = postprocess(loc, probs, anchors, PostprocessConfig(score_threshold=0.5))
    assert np.all(scores > 0.5)
    assert np.all(np.diff(scores) <= 0)
    _, scores, _ = postprocess(loc, probs, anchors,
                               PostprocessConfig(score_threshold=0.0, max_total=3))
    np.testing.assert_allclose(scores, probs[np.argsort(-probs[:, 1])[:3], 1], atol=1e-6)


def test_postprocess_with_nothing_above_threshold_is_empty() -> None:
    anchors = _grid_anchors()
    probs = np.tile([[1.0, 0.0, 0.0]], (5, 1)).astype(np.float32)
    boxes, scores, classes = postprocess(np.zeros((5, 4), np.float32), probs, anchors)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)
    assert classes.dtype == np.int32


# --------------------------------------------------------------------------- class scores


def test_class_probabilities_softmax_logits_in_float_and_pass_probabilities() -> None:
    from edgeprune.detection.detect import class_probabilities, softmax

    rng = np.random.default_rng(0)
    # Logits on an int8-like grid (what a dequantised int8 output holds).
    logits = (rng.integers(-60, 60, size=(2, 50, 4)) * 0.05).astype(np.float32)
    probs = class_probabilities({"loc": np.zeros((2, 50, 4)), "conf_logits": logits})
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs, softmax(logits.astype(np.float64)), atol=1e-6)
    # Ranking follows the logits; scores are not confined to a 1/256 grid.
    assert np.unique(probs[..., 1:]).size > 0.8 * probs[..., 1:].size
    given = softmax(logits)
    np.testing.assert_array_equal(class_probabilities({"conf": given}), given)
    with pytest.raises(ValueError, match="conf_logits"):
        class_probabilities({"loc": logits})
    # The standalone on-device application script applies the same softmax.
    remote_app = board_remote_app()
    np.testing.assert_allclose(remote_app.probabilities("conf_logits", logits), probs, atol=1e-6)
    np.testing.assert_array_equal(remote_app.probabilities("conf", given), given)


# --------------------------------------------------------------------------- shipped to boards


def test_module_stays_standalone_for_boards() -> None:
    """boxes.py is copied beside remote_app.py onto boards (Python 3.7+, numpy, no edgeprune):
    it imports only the standard library and numpy, and parses as Python 3.7."""
    source = Path(boxes_module.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 7))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in boxes.py"
            imported.add((node.module or "").split(".")[0])
    assert imported == {"__future__", "collections", "dataclasses", "numpy"}
    assert "from __future__ import annotations" in source  # annotations never evaluated on 3.7
