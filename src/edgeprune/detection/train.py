"""Training loop for SSD detectors (from scratch or fine-tuning), with optional Keras callbacks
(tfmot's ``UpdatePruningStep``) driven by hand, and per-epoch progress lines."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from edgeprune.data.augment import AugmentConfig, augment
from edgeprune.detection.boxes import DEFAULT_VARIANCES, match
from edgeprune.detection.loss import multibox_loss

T = TypeVar("T")


@dataclass
class DetectionData:
    """Images resized to the model input (N, H, W, 3) uint8 with normalised corner boxes and
    0-based class labels per image."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_epochs: float = 1.0
    min_lr_fraction: float = 0.02
    weight_decay: float = 0.0
    iou_threshold: float = 0.5
    neg_pos_ratio: float = 3.0
    seed: int = 0
    bn_recalibration_images: int = 640
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: str = "adam"   # adam | sgd (with ``momentum``; paper 2's fine-tuning)
    momentum: float = 0.9


def lr_at(step: int, total_steps: int, warmup_steps: int, base: float, min_frac: float) -> float:
    """Linear warm-up then cosine decay to ``base * min_frac``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    t = min(max(t, 0.0), 1.0)
    return base * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def encode_batch(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], anchors: np.ndarray,
                 iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Match every image's ground truth to the anchors -> (B, A, 4), (B, A)."""
    pairs = [match(b, lab, anchors, iou_threshold, DEFAULT_VARIANCES)
             for b, lab in zip(boxes, labels, strict=True)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def batches(data: DetectionData, anchors: np.ndarray, cfg: TrainConfig,
            rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One epoch of shuffled, augmented, encoded full batches (the last partial batch is
    dropped so the compiled step keeps one shape)."""
    order = rng.permutation(len(data))
    n_batches = max(1, len(data) // cfg.batch_size)
    for b in range(n_batches):
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        imgs, bxs, lbs = [], [], []
        for i in idx:
            im, bx, lb = augment(data.images[i], data.boxes[i], data.labels[i], rng, cfg.augment)
            imgs.append(im)
            bxs.append(bx)
            lbs.append(lb)
        loc_t, cls_t = encode_batch(bxs, lbs, anchors, cfg.iou_threshold)
        yield np.stack(imgs).astype(np.float32), loc_t, cls_t


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Number of optimiser steps in one epoch (full batches only)."""
    return max(1, n_images // batch_size)


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` while a background thread already prepares the next ``depth`` ones
    (augmentation and anchor matching in numpy overlap the TensorFlow step). Order and
    content are those of ``items``; an exception in the producer is re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


def train(model: Any, data: DetectionData, anchors: np.ndarray, cfg: TrainConfig,
          log: Callable[[str], None] = print, callbacks: Sequence[Any] = ()) -> dict[str, list]:
    """Train ``model`` in place; return per-epoch history (loss, cls_loss, loc_loss, lr, s)."""
    from edgeprune.tfenv import setup

    tf, keras = setup()
    if len(data) < cfg.batch_size:
        cfg = TrainConfig(**{**cfg.__dict__, "batch_size": max(1, len(data))})
    if cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=cfg.learning_rate,
                                         momentum=cfg.momentum)
    elif cfg.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")
    spe = steps_per_epoch(len(data), cfg.batch_size)
    total = spe * cfg.epochs
    warmup = int(cfg.warmup_epochs * spe)
    rng = np.random.default_rng(cfg.seed)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(x: Any, loc_t: Any, cls_t: Any) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss, cls_loss, loc_loss = multibox_loss(
                tf, out["loc"], out["conf_logits"], loc_t, cls_t, cfg.neg_pos_ratio)
            total_loss = loss
            if cfg.weight_decay:
                total_loss += cfg.weight_decay * tf.add_n(
                    [tf.nn.l2_loss(v) for v in model.trainable_variables if "kernel" in v.name])
        grads = tape.gradient(total_loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, cls_loss, loc_loss

    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    hist: dict[str, list] = {"loss": [], "cls_loss": [], "loc_loss": [], "lr": [], "seconds": []}
    t_start = time.perf_counter()
    global_step = 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        sums = np.zeros(3)
        for x, loc_t, cls_t in prefetch(batches(data, anchors, cfg, rng)):
            lr = lr_at(global_step, total, warmup, cfg.learning_rate, cfg.min_lr_fraction)
            optimizer.learning_rate.assign(lr)
            for cb in callbacks:
                cb.on_train_batch_begin(batch=-1)
            sums += [float(v) for v in step(x, loc_t, cls_t)]
            global_step += 1
        for cb in callbacks:
            cb.on_epoch_end(epoch)
        loss, cls_loss, loc_loss = sums / spe
        dt = time.perf_counter() - t0
        for k, v in zip(hist, (loss, cls_loss, loc_loss, lr, dt), strict=True):
            hist[k].append(float(v))
        if not np.isfinite(loss):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: loss={loss}")
        eta = (time.perf_counter() - t_start) / (epoch + 1) * (cfg.epochs - epoch - 1)
        log(f"epoch {epoch + 1}/{cfg.epochs} loss={loss:.4f} cls={cls_loss:.4f} "
            f"loc={loc_loss:.4f} lr={lr:.2e} {dt:.1f}s eta {eta:.0f}s")
    return hist


def recalibrate_batchnorm(model: Any, images: np.ndarray, batch_size: int = 32) -> int:
    """Re-estimate every BatchNormalization layer's moving mean and variance on ``images``.

    The moving statistics kept during training describe augmented images and, after pruning,
    weights that kept changing under them (momentum 0.99 lags behind every mask update): in
    inference mode the normalisation is then off, and a heavily pruned detector can lose most
    of its mAP although its training loss looks fine. Running the images through in training
    mode with momentum k/(k+1) at batch k makes the moving statistics the mean of the
    per-batch statistics. No weight changes.
    Returns the number of batches used.
    """
    bns = [layer for layer in model.submodules
           if type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")]
    if not bns or len(images) == 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    n = 0
    try:
        for start in range(0, len(images) - batch_size + 1, batch_size) or [0]:
            for bn in bns:
                bn.momentum = n / (n + 1.0)
            model(images[start:start + batch_size].astype(np.float32), training=True)
            n += 1
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
    return n


def recalibrate(model: Any, data: DetectionData, cfg: TrainConfig,
                log: Callable[[str], None] = print) -> int:
    """:func:`recalibrate_batchnorm` on the first ``cfg.bn_recalibration_images`` training
    images (un-augmented), as configured; 0 images turns it off."""
    n = min(cfg.bn_recalibration_images, len(data))
    if n <= 0:
        return 0
    t0 = time.perf_counter()
    batches_used = recalibrate_batchnorm(model, data.images[:n], min(cfg.batch_size, n))
    log(f"batch-norm statistics re-estimated on {n} training images "
        f"({batches_used} batches, {time.perf_counter() - t0:.1f}s)")
    return batches_used
