"""Tests for edgeprune.detection.loss.multibox_loss: exact values on hand-built cases, hard
negatives."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from edgeprune.detection.loss import multibox_loss
from edgeprune.tfenv import setup

NUM_CLASSES = 3  # + background


@pytest.fixture(scope="module")
def tf() -> ModuleType:
    tf, _ = setup()
    return tf


def _loss(tf: ModuleType, loc_pred: np.ndarray, logits: np.ndarray, loc_t: np.ndarray,
          cls_t: np.ndarray, **kwargs: float) -> tuple[float, float, float]:
    """Run multibox_loss on numpy inputs and return (total, cls, loc) as floats."""
    out = multibox_loss(tf, tf.constant(loc_pred, tf.float32), tf.constant(logits, tf.float32),
                        tf.constant(loc_t, tf.float32), tf.constant(cls_t, tf.int32), **kwargs)
    total, cls, loc = (float(v) for v in out)
    return total, cls, loc


def _one_hot_logits(cls_t: np.ndarray, margin: float) -> np.ndarray:
    """Logits that favour the target class by ``margin`` (0 elsewhere)."""
    logits = np.zeros((*cls_t.shape, NUM_CLASSES + 1), np.float32)
    np.put_along_axis(logits, cls_t[..., None], margin, axis=-1)
    return logits


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax cross-entropy per anchor, in float64 numpy."""
    z = logits.astype(np.float64)
    logz = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    return logz - np.take_along_axis(z, labels[..., None], axis=-1)[..., 0]


def _targets(rng: np.random.Generator, batch: int, anchors: int,
             positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Random regression targets and class targets with ``positives`` matched anchors/image."""
    loc_t = rng.normal(0.0, 1.0, size=(batch, anchors, 4)).astype(np.float32)
    cls_t = np.zeros((batch, anchors), np.int32)
    for b in range(batch):
        idx = rng.choice(anchors, size=positives, replace=False)
        cls_t[b, idx] = rng.integers(1, NUM_CLASSES + 1, size=positives)
    return loc_t, cls_t


def test_perfect_predictions_give_near_zero_loss(tf: ModuleType) -> None:
    rng = np.random.default_rng(0)
    loc_t, cls_t = _targets(rng, batch=2, anchors=50, positives=4)
    total, cls, loc = _loss(tf, loc_t, _one_hot_logits(cls_t, 20.0), loc_t, cls_t)
    assert loc == pytest.approx(0.0, abs=1e-7)
    assert 0.0 <= cls < 1e-6
    assert total == pytest.approx(cls + loc)


def test_wrong_predictions_cost_more_than_right_ones(tf: ModuleType) -> None:
    rng = np.random.default_rng(1)
    loc_t, cls_t = _targets(rng, batch=2, anchors=40, positives=3)
    right = _loss(tf, loc_t + 0.05, _one_hot_logits(cls_t, 4.0), loc_t, cls_t)
    wrong_cls = (cls_t + 1) % (NUM_CLASSES + 1)
    wrong = _loss(tf, loc_t + 1.5, _one_hot_logits(wrong_cls, 4.0), loc_t, cls_t)
    assert wrong[0] > right[0]
    assert wrong[1] > 10 * right[1]
    assert wrong[2] > 10 * right[2]


def test_localisation_is_smooth_l1_over_positives_normalised(tf: ModuleType) -> None:
    cls_t = np.array([[1, 0, 2, 0]], np.int32)
    loc_t = np.zeros((1, 4, 4), np.float32)
    loc_pred = np.zeros((1, 4, 4), np.float32)
    loc_pred[0, 0] = [0.5, -0.5, 2.0, 0.0]    # 0.125 + 0.125 + 1.5 = 1.75
    loc_pred[0, 2] = [0.0, 0.0, 0.0, -1.0]    # 0.5 (at the switch point: 1 - 0.5)
    loc_pred[0, 1] = [9.0, 9.0, 9.0, 9.0]     # negatives contribute nothing
    logits = _one_hot_logits(cls_t, 30.0)
    total, cls, loc = _loss(tf, loc_pred, logits, loc_t, cls_t, loc_weight=2.0)
    assert loc == pytest.approx((1.75 + 0.5) / 2, rel=1e-5)
    assert total == pytest.approx(cls + 2.0 * loc, rel=1e-5)


def test_hard_negative_mining_keeps_ratio_times_positives_hardest(tf: ModuleType) -> None:
    rng = np.random.default_rng(2)
    anchors, positives, ratio = 60, 2, 3.0
    loc_t, cls_t = _targets(rng, batch=1, anchors=anchors, positives=positives)
    logits = rng.normal(0.0, 2.0, size=(1, anchors, NUM_CLASSES + 1)).astype(np.float32)
    ce = _cross_entropy(logits, cls_t)[0]
    pos = cls_t[0] > 0
    hardest = np.sort(ce[~pos])[::-1]
    n_neg = int(ratio * positives)
    expected = (ce[pos].sum() + hardest[:n_neg].sum()) / positives
    _, cls, _ = _loss(tf, loc_t, logits, loc_t, cls_t, neg_pos_ratio=ratio, min_negatives=0)
    assert cls == pytest.approx(expected, rel=1e-5)
    # Strictly less than counting every negative, and more than counting one fewer.
    assert cls < (ce[pos].sum() + hardest.sum()) / positives
    assert cls > (ce[pos].sum() + hardest[:n_neg - 1].sum()) / positives


def test_uniform_logits_count_exactly_ratio_times_positives_negatives(tf: ModuleType) -> None:
    # Every anchor has the same cross-entropy log(C + 1), so cls_loss * #pos counts anchors.
    loc_t = np.zeros((1, 100, 4), np.float32)
    cls_t = np.zeros((1, 100), np.int32)
    cls_t[0, [3, 50, 97]] = [1, 2, 3]
    logits = np.zeros((1, 100, NUM_CLASSES + 1), np.float32)
    for ratio in (1.0, 3.0, 5.0):
        _, cls, _ = _loss(tf, loc_t, logits, loc_t, cls_t, neg_pos_ratio=ratio, min_negatives=0)
        counted = cls * 3 / np.log(NUM_CLASSES + 1)
        assert counted == pytest.approx(3 + ratio * 3, abs=1e-3)


def test_all_background_counts_min_negatives(tf: ModuleType) -> None:
    rng = np.random.default_rng(3)
    loc_t = np.zeros((1, 30, 4), np.float32)
    cls_t = np.zeros((1, 30), np.int32)
    logits = rng.normal(0.0, 2.0, size=(1, 30, NUM_CLASSES + 1)).astype(np.float32)
    ce = _cross_entropy(logits, cls_t)[0]
    total, cls, loc = _loss(tf, loc_t, logits, loc_t, cls_t, min_negatives=8)
    # No positives: the normaliser is 1 and the 8 hardest negatives are counted.
    assert cls == pytest.approx(np.sort(ce)[::-1][:8].sum(), rel=1e-5)
    assert loc == 0.0
    assert np.isfinite(total)
    _, cls0, _ = _loss(tf, loc_t, logits, loc_t, cls_t, min_negatives=0)
    assert cls0 == 0.0


def test_negatives_are_capped_by_available_anchors(tf: ModuleType) -> None:
    loc_t = np.zeros((1, 10, 4), np.float32)
    cls_t = np.zeros((1, 10), np.int32)
    cls_t[0, :4] = 1
    logits = np.zeros((1, 10, NUM_CLASSES + 1), np.float32)
    # 3 * 4 = 12 negatives wanted but only 6 exist: all 10 anchors count once.
    _, cls, _ = _loss(tf, loc_t, logits, loc_t, cls_t, neg_pos_ratio=3.0, min_negatives=0)
    assert cls == pytest.approx(10 * np.log(NUM_CLASSES + 1) / 4, rel=1e-5)


def test_mining_is_per_image_and_normalised_over_the_batch(tf: ModuleType) -> None:
    rng = np.random.default_rng(4)
    anchors = 40
    cls_t = np.zeros((2, anchors), np.int32)
    cls_t[0, [1, 2]] = [1, 2]   # 2 positives -> 2 negatives at ratio 1
    cls_t[1, [5]] = [3]         # 1 positive  -> 1 negative
    loc_t = np.zeros((2, anchors, 4), np.float32)
    logits = rng.normal(0.0, 2.0, size=(2, anchors, NUM_CLASSES + 1)).astype(np.float32)
    ce = _cross_entropy(logits, cls_t)
    expected = 0.0
    for b in range(2):
        pos = cls_t[b] > 0
        expected += ce[b, pos].sum() + np.sort(ce[b, ~pos])[::-1][:pos.sum()].sum()
    _, cls, _ = _loss(tf, loc_t, logits, loc_t, cls_t, neg_pos_ratio=1.0, min_negatives=0)
    assert cls == pytest.approx(expected / 3, rel=1e-5)


def test_loss_is_differentiable(tf: ModuleType) -> None:
    rng = np.random.default_rng(5)
    loc_t, cls_t = _targets(rng, batch=2, anchors=20, positives=2)
    logits = tf.Variable(rng.normal(size=(2, 20, NUM_CLASSES + 1)).astype(np.float32))
    loc = tf.Variable(np.zeros((2, 20, 4), np.float32))
    with tf.GradientTape() as tape:
        total, _, _ = multibox_loss(tf, loc, logits, tf.constant(loc_t), tf.constant(cls_t))
    g_loc, g_logits = tape.gradient(total, [loc, logits])
    assert g_loc is not None and g_logits is not None
    assert np.isfinite(g_loc.numpy()).all() and np.isfinite(g_logits.numpy()).all()
    # Localisation gradients flow only into positive anchors.
    assert not g_loc.numpy()[cls_t == 0].any()
    assert g_loc.numpy()[cls_t > 0].any()
