"""SSD multibox loss: softmax cross-entropy with hard-negative mining + smooth-L1 localisation."""

from __future__ import annotations

from typing import Any


def multibox_loss(tf: Any, loc_pred: Any, conf_logits: Any, loc_target: Any, cls_target: Any,
                  neg_pos_ratio: float = 3.0, min_negatives: int = 8,
                  loc_weight: float = 1.0) -> tuple[Any, Any, Any]:
    """Return (total, classification, localisation) losses, each normalised by #positives.

    ``cls_target`` (B, A) holds 0 for background and ``class + 1`` for matched anchors. For each
    image the negatives kept are the ``neg_pos_ratio * #pos`` background anchors with the highest
    cross-entropy (at least ``min_negatives``), as in the SSD paper.
    """
    cls_target = tf.cast(cls_target, tf.int32)
    pos = cls_target > 0
    pos_f = tf.cast(pos, tf.float32)
    n_pos = tf.reduce_sum(pos_f, axis=1)  # (B,)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=cls_target, logits=conf_logits)
    neg_ce = tf.where(pos, tf.zeros_like(ce), ce)
    n_anchors = tf.cast(tf.shape(ce)[1], tf.float32)
    n_neg = tf.minimum(tf.maximum(neg_pos_ratio * n_pos, float(min_negatives)), n_anchors - n_pos)
    order = tf.argsort(neg_ce, axis=1, direction="DESCENDING")
    rank = tf.argsort(order, axis=1)
    neg = tf.cast(rank, tf.float32) < n_neg[:, None]
    conf_mask = tf.cast(tf.logical_or(pos, neg), tf.float32)
    cls_loss = tf.reduce_sum(ce * conf_mask)
    diff = tf.abs(loc_pred - loc_target)
    smooth = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    loc_loss = tf.reduce_sum(tf.reduce_sum(smooth, axis=-1) * pos_f)
    norm = tf.maximum(tf.reduce_sum(n_pos), 1.0)
    cls_loss = cls_loss / norm
    loc_loss = loc_loss / norm
    return cls_loss + loc_weight * loc_loss, cls_loss, loc_loss
