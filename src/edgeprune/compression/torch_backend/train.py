"""Fine-tuning a torch detector with the settings of the Keras one: the same
:class:`~edgeprune.detection.train.TrainConfig`, learning-rate schedule, shuffling
(:func:`~edgeprune.detection.train.epoch_order`), augmentation, anchor matching and target
encoding (:func:`~edgeprune.detection.train.training_example`, numpy, shared); only the
multibox loss and the optimiser step are torch code. Batch-norm statistics are re-estimated
afterwards on the same images as :func:`edgeprune.detection.train.recalibrate` uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.detection.train import (
    TrainConfig,
    TrainingImages,
    epoch_order,
    image_batches,
    lr_at,
    prefetch,
    steps_per_epoch,
    training_example,
)


def multibox_loss(loc_pred: torch.Tensor, conf_logits: torch.Tensor, loc_target: torch.Tensor,
                  cls_target: torch.Tensor, neg_pos_ratio: float = 3.0, min_negatives: int = 8,
                  loc_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`edgeprune.detection.loss.multibox_loss` in torch: (total, classification,
    localisation), each normalised by the number of positives; hard negatives are the
    ``neg_pos_ratio * #pos`` (at least ``min_negatives``) background anchors with the highest
    cross-entropy per image."""
    cls_target = cls_target.long()
    pos = cls_target > 0
    pos_f = pos.float()
    n_pos = pos_f.sum(dim=1)
    ce = F.cross_entropy(conf_logits.transpose(1, 2), cls_target, reduction="none")   # (B, A)
    neg_ce = torch.where(pos, torch.zeros_like(ce), ce)
    n_anchors = float(ce.shape[1])
    n_neg = torch.minimum(torch.clamp(neg_pos_ratio * n_pos, min=float(min_negatives)),
                          n_anchors - n_pos)
    order = torch.argsort(neg_ce.detach(), dim=1, descending=True, stable=True)
    rank = torch.argsort(order, dim=1)
    neg = rank.float() < n_neg[:, None]
    conf_mask = (pos | neg).float()
    cls_loss = (ce * conf_mask).sum()
    diff = (loc_pred - loc_target).abs()
    smooth = torch.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    loc_loss = (smooth.sum(dim=-1) * pos_f).sum()
    norm = torch.clamp(n_pos.sum(), min=1.0)
    cls_loss, loc_loss = cls_loss / norm, loc_loss / norm
    return cls_loss + loc_weight * loc_loss, cls_loss, loc_loss


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        # Keras's Adam epsilon (1e-7), not torch's default 1e-8.
        return torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-7)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")


def epoch_batches(data: TrainingImages, anchors: np.ndarray, cfg: TrainConfig,
                  epoch: int) -> Any:
    """The full, shuffled batches of one epoch as numpy (images, loc targets, class targets):
    the elements of :func:`edgeprune.detection.train.input_pipeline`, in its order."""
    batch = cfg.batch_size
    order = epoch_order(len(data), cfg.seed, epoch)[:steps_per_epoch(len(data), batch) * batch]
    for start in range(0, len(order), batch):
        items = [training_example(data, anchors, cfg, epoch, int(i))
                 for i in order[start:start + batch]]
        yield tuple(np.stack(parts) for parts in zip(*items, strict=True))


def train_torch(model: nn.Module, data: TrainingImages, anchors: np.ndarray, cfg: TrainConfig,
                log: Callable[[str], None] = print) -> dict[str, list]:
    """Train ``model`` (an :class:`~edgeprune.compression.torch_backend.models.SSDTorch`) in
    place, as :func:`edgeprune.detection.train.train` trains a Keras detector; returns the
    per-epoch history (loss, cls_loss, loc_loss, lr)."""
    if len(data) < cfg.batch_size:
        cfg = TrainConfig(**{**cfg.__dict__, "batch_size": max(1, len(data))})
    torch.manual_seed(cfg.seed)
    optimizer = _optimizer(model, cfg)
    spe = steps_per_epoch(len(data), cfg.batch_size)
    total, warmup = spe * cfg.epochs, int(cfg.warmup_epochs * spe)
    hist: dict[str, list] = {"loss": [], "cls_loss": [], "loc_loss": [], "lr": []}
    step = 0
    lr = cfg.learning_rate
    model.train()
    try:
        for epoch in range(cfg.epochs):
            sums = np.zeros(3)
            for x, loc_t, cls_t in prefetch(epoch_batches(data, anchors, cfg, epoch)):
                lr = lr_at(step, total, warmup, cfg.learning_rate, cfg.min_lr_fraction)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loc, logits = model(torch.from_numpy(x).permute(0, 3, 1, 2))
                loss, cls_loss, loc_loss = multibox_loss(
                    loc, logits, torch.from_numpy(loc_t), torch.from_numpy(cls_t),
                    cfg.neg_pos_ratio)
                total_loss = loss
                if cfg.weight_decay:
                    total_loss = total_loss + cfg.weight_decay * sum(
                        0.5 * m.weight.pow(2).sum() for m in model.modules()
                        if isinstance(m, nn.Conv2d))
                optimizer.zero_grad()
                total_loss.backward()
                optimizer.step()
                sums += [float(v.detach()) for v in (loss, cls_loss, loc_loss)]
                step += 1
            loss_e, cls_e, loc_e = sums / spe
            for k, v in zip(hist, (loss_e, cls_e, loc_e, lr), strict=True):
                hist[k].append(float(v))
            if not np.isfinite(loss_e):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1}: "
                                         f"loss={loss_e}")
            log(f"epoch {epoch + 1}/{cfg.epochs} loss={loss_e:.4f} cls={cls_e:.4f} "
                f"loc={loc_e:.4f} lr={lr:.2e}")
    finally:
        model.eval()
    return hist


@torch.no_grad()
def recalibrate_torch(model: nn.Module, data: TrainingImages, cfg: TrainConfig) -> int:
    """Re-estimate every batch norm's running mean and variance on the first
    ``cfg.bn_recalibration_images`` training images (un-augmented) as the mean of the
    per-batch statistics (torch's cumulative average, ``momentum=None``); no weight changes.
    Returns the number of batches used (0: turned off)."""
    n = min(cfg.bn_recalibration_images, len(data))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if n <= 0 or not bns:
        return 0
    batch = min(cfg.batch_size, n)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    used = 0
    model.train()
    try:
        for x in prefetch(image_batches(data, n, batch)):
            model(torch.from_numpy(np.asarray(x, np.float32)).permute(0, 3, 1, 2))
            used += 1
    finally:
        model.eval()
        for m, momentum in zip(bns, saved, strict=True):
            m.momentum = momentum
    return used


def finetune_torch(model: Any, data: TrainingImages, anchors: np.ndarray,
                   cfg: TrainConfig) -> dict[str, list]:
    """:func:`train_torch` then :func:`recalibrate_torch`, quietly; the training history."""
    hist = train_torch(model, data, anchors, cfg, log=lambda m: None)
    recalibrate_torch(model, data, cfg)
    return hist
