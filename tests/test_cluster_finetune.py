"""Paper-2 fine-tuning (issue 12, point 7): the optimiser is a choice, SGD with momentum at the
shipped conservative rate lowers the loss of a pruned tiny detector, and the config's settings
reach the training loop."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from detector_helpers import build_tiny, random_detection_data, tf_keras, tiny_spec

from edgeprune.compression.cluster.settings import DEFAULTS, FinetuneSettings
from edgeprune.compression.cluster.surgery import prune_filters
from edgeprune.data.augment import AugmentConfig
from edgeprune.detection.models.registry import anchors_for
from edgeprune.detection.train import TrainConfig, encode_batch, recalibrate, train
from edgeprune.stages.paper2 import finetune_config


def _loss(model: Any, data: Any, anchors: np.ndarray, cfg: TrainConfig) -> float:
    """Multibox loss of the whole set in inference mode."""
    from edgeprune.detection.loss import multibox_loss

    tf, _ = tf_keras(None)
    loc_t, cls_t = encode_batch(data.boxes, data.labels, anchors, cfg.iou_threshold)
    out = model(data.images.astype(np.float32), training=False)
    loss, _, _ = multibox_loss(tf, out["loc"], out["conf_logits"], tf.constant(loc_t),
                               tf.constant(cls_t), cfg.neg_pos_ratio)
    return float(loss)


def test_finetune_config_carries_the_optimiser() -> None:
    base = TrainConfig(learning_rate=0.004, warmup_epochs=1.0, min_lr_fraction=0.02)
    ft = FinetuneSettings(enabled=True, updates=10, lr_factor=0.1, optimizer="sgd",
                          momentum=0.9)
    cfg = finetune_config(base, ft, epochs=2, batch=8)
    assert (cfg.optimizer, cfg.momentum, cfg.epochs, cfg.batch_size) == ("sgd", 0.9, 2, 8)
    assert cfg.learning_rate == pytest.approx(4e-4)
    assert (cfg.warmup_epochs, cfg.min_lr_fraction) == (0.0, 1.0)     # constant rate
    assert DEFAULTS["whole"]["finetune"]["optimizer"] == "sgd"


def test_unknown_optimiser_is_refused() -> None:
    spec = tiny_spec("ssd_mobilenet_v1")
    model = build_tiny(spec)
    data = random_detection_data(4)
    with pytest.raises(ValueError, match="optimizer"):
        train(model, data, anchors_for(spec, model),
              TrainConfig(epochs=1, batch_size=4, optimizer="rmsprop"), log=lambda m: None)


def test_sgd_finetune_recovers_loss_after_pruning() -> None:
    """A detector trained a little, pruned, then fine-tuned with the shipped default (SGD,
    momentum 0.9, 0.1 x the base rate) for 40 updates: the loss on its data goes down and
    stays finite. Augmentation is off and batch norm is re-estimated on the whole set before
    both measurements, so only the weight updates differ. (Measured here on this set: the
    loss falls 8.1 -> 7.8 at 0.1x, -> 6.5 at 0.3x, -> 4.5 at 1x; Adam at 0.5x reaches 1.4 --
    memorising 32 images, the overfitting seen to wreck the study-scale model.)"""
    spec = tiny_spec("ssd_mobilenet_v1")
    model = build_tiny(spec, seed=1)
    anchors = anchors_for(spec, model)
    data = random_detection_data(32, seed=2)
    base = TrainConfig(epochs=8, batch_size=16, learning_rate=0.004, warmup_epochs=0.5,
                       bn_recalibration_images=32, seed=0, augment=AugmentConfig(enabled=False))
    full_batch = replace(base, batch_size=32)
    train(model, data, anchors, base, log=lambda m: None)
    thin, _ = prune_filters(model, spec, {"conv1": [0, 1, 2], "conv3": [1, 4]})
    recalibrate(thin, data, full_batch, log=lambda m: None)
    before = _loss(thin, data, anchors, base)
    d = DEFAULTS["whole"]["finetune"]
    ft = FinetuneSettings(True, 40, d["lr_factor"], d["optimizer"], d["momentum"])
    cfg = finetune_config(base, ft, epochs=20, batch=16)
    hist = train(thin, data, anchors, cfg, log=lambda m: None)
    recalibrate(thin, data, full_batch, log=lambda m: None)
    after = _loss(thin, data, anchors, base)
    assert np.isfinite(hist["loss"]).all()
    assert after < before, (before, after)
