"""Training loop for SSD detectors (from scratch or fine-tuning), with optional Keras callbacks
(tfmot's ``UpdatePruningStep``) driven by hand, and per-epoch progress lines.

Batches come from a ``tf.data`` pipeline: images are decoded, augmented and matched to the
anchors in parallel (``TrainConfig.input_workers`` threads), one element at a time, and
prefetched, so a VOC-sized split never sits in memory as one array. Every element's
augmentation is drawn from its own generator seeded with (seed, epoch, image), and every
epoch's order from (seed, epoch): the batches do not depend on thread timing, and an epoch
after a resume sees exactly the batches it would have seen without the interruption.

With a ``checkpoint_dir`` the model, the optimizer (and with it tfmot's pruning step and masks,
which are model variables), the epoch and the loss history are saved after every epoch; a
later call with the same directory and fingerprint resumes after the last saved epoch.
"""

from __future__ import annotations

import json
import math
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from edgeprune.data.augment import AugmentConfig, augment
from edgeprune.detection.boxes import DEFAULT_VARIANCES, match
from edgeprune.detection.loss import multibox_loss
from edgeprune.errors import ConfigError, DataError
from edgeprune.fileio import read_json, write_json

T = TypeVar("T")


class TrainingImages(Protocol):
    """What the training loop reads: ``len``, one resized uint8 image at a time, and the
    normalised corner boxes and 0-based labels per image."""

    boxes: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int: ...

    def image(self, index: int) -> np.ndarray: ...

    @property
    def input_size(self) -> tuple[int, int]: ...


@dataclass
class DetectionData:
    """Images already in memory, resized to the model input (N, H, W, 3) uint8, with
    normalised corner boxes and 0-based class labels per image (small sets and tests; a
    training split on disk is :class:`edgeprune.data.dataset.DetectionFiles`)."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def image(self, index: int) -> np.ndarray:
        return self.images[index]

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


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
    device: str = "auto"      # auto | cpu | gpu (:func:`resolve_device`)
    input_workers: int = 0    # input pipeline threads; 0: TensorFlow's intra-op thread count


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


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Number of optimiser steps in one epoch (full batches only)."""
    return max(1, n_images // batch_size)


def epoch_order(n_images: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled image order of ``epoch`` (0-based), a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n_images)


def training_example(data: TrainingImages, anchors: np.ndarray, cfg: TrainConfig, epoch: int,
                     index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``index`` of the training set as seen in ``epoch``: loaded, augmented with its own
    generator seeded by (seed, epoch, index), and matched to the anchors ->
    (H, W, 3) float32, (A, 4) float32, (A,) int32."""
    rng = np.random.default_rng([cfg.seed, epoch, index])
    img, boxes, labels = augment(data.image(index), data.boxes[index], data.labels[index], rng,
                                 cfg.augment)
    loc_t, cls_t = match(boxes, labels, anchors, cfg.iou_threshold, DEFAULT_VARIANCES)
    return img.astype(np.float32), loc_t.astype(np.float32), cls_t.astype(np.int32)


def input_pipeline(tf: Any, data: TrainingImages, anchors: np.ndarray, cfg: TrainConfig,
                   epoch: int, workers: int) -> Any:
    """The ``tf.data.Dataset`` of one epoch: full, shuffled batches (the last partial batch is
    dropped so the compiled step keeps one shape) of (images, loc targets, class targets).
    ``workers`` threads load, augment and match images in parallel; order and content are
    those of :func:`training_example` over :func:`epoch_order`, whatever the thread timing."""
    batch = cfg.batch_size
    order = epoch_order(len(data), cfg.seed, epoch)[:steps_per_epoch(len(data), batch) * batch]
    h, w = data.input_size
    n_anchors = int(anchors.shape[0])

    def load(index: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return training_example(data, anchors, cfg, epoch, int(index))

    def element(index: Any) -> tuple[Any, Any, Any]:
        img, loc_t, cls_t = tf.numpy_function(load, [index], (tf.float32, tf.float32, tf.int32),
                                              stateful=False)
        img.set_shape((h, w, 3))
        loc_t.set_shape((n_anchors, 4))
        cls_t.set_shape((n_anchors,))
        return img, loc_t, cls_t

    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = max(1, workers)
    ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64)).with_options(options)
    ds = ds.map(element, num_parallel_calls=max(1, workers), deterministic=True)
    return ds.batch(batch, drop_remainder=True).prefetch(2)


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` while a background thread already prepares the next ``depth`` ones
    (image loading overlaps the TensorFlow work). Order and content are those of ``items``; an
    exception in the producer is re-raised here."""
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


# ----------------------------------------------------------------------------- checkpoints

FINGERPRINT = "fingerprint.json"


class EpochCheckpoint:
    """Model + optimizer + epoch + loss history of a training run, saved after every epoch
    under ``directory`` (tf.train.CheckpointManager: the index is replaced atomically, so a
    kill while saving leaves the previous epoch's checkpoint). ``fingerprint`` describes the
    run (settings, data); a directory written for another fingerprint is discarded."""

    def __init__(self, tf: Any, directory: str | Path, model: Any, optimizer: Any,
                 fingerprint: Any, log: Callable[[str], None]) -> None:
        self.directory = Path(directory)
        stamp = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        fp_path = self.directory / FINGERPRINT
        if self.directory.exists() and (not fp_path.is_file() or read_json(fp_path) != stamp):
            log(f"discarding checkpoints in {self.directory}: written for other settings")
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if not fp_path.is_file():
            write_json(fp_path, stamp)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.history = tf.Variable("{}", dtype=tf.string, trainable=False)
        self.optimizer = optimizer
        self.model = model
        self.ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch,
                                        history=self.history)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.directory), max_to_keep=1)

    def restore(self) -> tuple[int, dict[str, list]]:
        """(epochs done, history so far) of the last checkpoint; (0, {}) without one."""
        latest = self.manager.latest_checkpoint
        if not latest:
            return 0, {}
        # Create the optimizer's slots first so that they are restored, not lazily re-made.
        self.optimizer.build(self.model.trainable_variables)
        self.ckpt.restore(latest).assert_existing_objects_matched()
        return int(self.epoch.numpy()), json.loads(self.history.numpy().decode())

    def save(self, epochs_done: int, history: dict[str, list]) -> None:
        self.epoch.assign(epochs_done)
        self.history.assign(json.dumps(history))
        self.manager.save(checkpoint_number=epochs_done)


def checkpoint_dir_for(model_out: str | Path) -> Path:
    """Where the training run that writes ``model_out`` keeps its epoch checkpoints: beside it,
    ``<model>.ckpt/`` (not a declared output, so Snakemake leaves it when the job dies)."""
    return Path(model_out).with_suffix(".ckpt")


def clear_checkpoints(directory: str | Path | None) -> None:
    """Remove a finished run's checkpoint directory (nothing to resume any more)."""
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def make_optimizer(keras: Any, cfg: TrainConfig) -> Any:
    """The configured optimizer (``adam`` or ``sgd`` with momentum)."""
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")


def input_workers(tf: Any, cfg: TrainConfig) -> int:
    """Threads of the input pipeline: ``cfg.input_workers``, else TensorFlow's intra-op thread
    count (the job's ``threads``), else 2."""
    if cfg.input_workers > 0:
        return cfg.input_workers
    return max(1, tf.config.threading.get_intra_op_parallelism_threads() or 2)


# ----------------------------------------------------------------------------- device

DEVICES = ("auto", "cpu", "gpu")


def resolve_device(tf: Any, requested: str) -> str:
    """``cpu`` or ``gpu`` for ``train.device`` = ``requested``: ``auto`` takes a GPU when
    TensorFlow sees one; ``cpu`` hides the GPUs from this process; ``gpu`` without a visible
    GPU is a ConfigError. Call before TensorFlow runs its first op."""
    if requested not in DEVICES:
        raise ConfigError(f"config key 'train.device': expected one of {list(DEVICES)}, "
                          f"got {requested!r}")
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "cpu" or not gpus:
        if requested == "gpu":
            raise ConfigError("config key 'train.device' is gpu but TensorFlow sees no GPU on "
                              "this host (CUDA_VISIBLE_DEVICES, driver); use auto or cpu")
        if gpus:
            tf.config.set_visible_devices([], "GPU")
        return "cpu"
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return "gpu"


def fit_batch_size(tf: Any, model: Any, input_size: tuple[int, int], batch_size: int,
                   log: Callable[[str], None] = print) -> int:
    """The largest batch size <= ``batch_size`` (halving) whose forward and backward pass fits
    in GPU memory, tried on zeros in inference mode (batch-norm statistics untouched)."""
    size = batch_size
    while True:
        try:
            x = tf.zeros((size, *input_size, 3), tf.float32)
            with tf.GradientTape() as tape:
                out = model(x, training=False)
                loss = tf.add_n([tf.reduce_sum(tf.cast(v, tf.float32)) for v in out.values()])
            tape.gradient(loss, model.trainable_variables)
            return size
        except tf.errors.ResourceExhaustedError:
            if size == 1:
                raise
            log(f"batch size {size} does not fit in GPU memory; trying {size // 2}")
            size //= 2


def pipeline_error(exc: Exception) -> Exception:
    """A DataError naming the file when a training input element failed on a bad image (the
    message the input pipeline carries), else ``exc`` itself."""
    found = re.search(r"DataError: (.+)", str(exc))
    return DataError(found.group(1).strip()) if found else exc


def train(model: Any, data: TrainingImages, anchors: np.ndarray, cfg: TrainConfig,
          log: Callable[[str], None] = print, callbacks: Sequence[Any] = (),
          checkpoint_dir: str | Path | None = None, fingerprint: Any = None,
          mixed_precision: bool = False) -> dict[str, list]:
    """Train ``model`` in place; return per-epoch history (loss, cls_loss, loc_loss, lr, s).

    With ``checkpoint_dir``, resume after the last saved epoch of a run with the same
    ``fingerprint`` (the history continues from it) and save after every epoch.
    ``mixed_precision``: the model was built under the ``mixed_float16`` policy; the loss is
    scaled (dynamic loss scaling) so float16 gradients do not underflow."""
    from edgeprune.tfenv import setup

    tf, keras = setup()
    if len(data) < cfg.batch_size:
        cfg = TrainConfig(**{**cfg.__dict__, "batch_size": max(1, len(data))})
    optimizer = make_optimizer(keras, cfg)
    if mixed_precision:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    spe = steps_per_epoch(len(data), cfg.batch_size)
    total = spe * cfg.epochs
    warmup = int(cfg.warmup_epochs * spe)
    workers = input_workers(tf, cfg)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(x: Any, loc_t: Any, cls_t: Any) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss, cls_loss, loc_loss = multibox_loss(
                tf, tf.cast(out["loc"], tf.float32), tf.cast(out["conf_logits"], tf.float32),
                loc_t, cls_t, cfg.neg_pos_ratio)
            total_loss = loss
            if cfg.weight_decay:
                total_loss += cfg.weight_decay * tf.add_n(
                    [tf.nn.l2_loss(v) for v in model.trainable_variables if "kernel" in v.name])
            if mixed_precision:
                total_loss = optimizer.get_scaled_loss(total_loss)
        grads = tape.gradient(total_loss, model.trainable_variables)
        if mixed_precision:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, cls_loss, loc_loss

    hist: dict[str, list] = {"loss": [], "cls_loss": [], "loc_loss": [], "lr": [], "seconds": []}
    start_epoch = 0
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = EpochCheckpoint(tf, checkpoint_dir, model, optimizer, fingerprint, log)
        start_epoch, saved = ckpt.restore()
        if start_epoch:
            hist = saved
            log(f"resuming after epoch {start_epoch}/{cfg.epochs} from "
                f"{ckpt.manager.latest_checkpoint}")
    # After the restore: tfmot's UpdatePruningStep reads the (restored) pruning step here.
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    t_start = time.perf_counter()
    global_step = start_epoch * spe
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sums = np.zeros(3)
        lr = lr_at(global_step, total, warmup, cfg.learning_rate, cfg.min_lr_fraction)
        try:
            for x, loc_t, cls_t in input_pipeline(tf, data, anchors, cfg, epoch, workers):
                lr = lr_at(global_step, total, warmup, cfg.learning_rate, cfg.min_lr_fraction)
                optimizer.learning_rate.assign(lr)
                for cb in callbacks:
                    cb.on_train_batch_begin(batch=-1)
                sums += [float(v) for v in step(x, loc_t, cls_t)]
                global_step += 1
        except tf.errors.OpError as exc:
            raise pipeline_error(exc) from None
        for cb in callbacks:
            cb.on_epoch_end(epoch)
        loss, cls_loss, loc_loss = sums / spe
        dt = time.perf_counter() - t0
        for k, v in zip(hist, (loss, cls_loss, loc_loss, lr, dt), strict=True):
            hist[k].append(float(v))
        if not np.isfinite(loss):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: loss={loss}")
        if ckpt is not None:
            ckpt.save(epoch + 1, hist)
        done = epoch + 1 - start_epoch
        eta = (time.perf_counter() - t_start) / done * (cfg.epochs - epoch - 1)
        log(f"epoch {epoch + 1}/{cfg.epochs} loss={loss:.4f} cls={cls_loss:.4f} "
            f"loc={loc_loss:.4f} lr={lr:.2e} {dt:.1f}s eta {eta:.0f}s")
    return hist


def recalibrate_batchnorm(model: Any, images: np.ndarray | Iterator[np.ndarray],
                          batch_size: int = 32) -> int:
    """Re-estimate every BatchNormalization layer's moving mean and variance on ``images`` (an
    array, or an iterator of equally sized batches).

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
    if isinstance(images, np.ndarray):
        if not bns or len(images) == 0:
            return 0
        array = images
        starts = range(0, len(array) - batch_size + 1, batch_size) or [0]
        images = (array[s:s + batch_size] for s in starts)
    elif not bns:
        return 0
    momenta = [bn.momentum for bn in bns]
    n = 0
    try:
        for batch in images:
            for bn in bns:
                bn.momentum = n / (n + 1.0)
            model(np.asarray(batch, np.float32), training=True)
            n += 1
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
    return n


def image_batches(data: TrainingImages, count: int, batch_size: int) -> Iterator[np.ndarray]:
    """The first ``count`` images of ``data`` (un-augmented) in full batches of ``batch_size``
    (one short batch when ``count < batch_size``), loaded one batch at a time."""
    starts = range(0, count - batch_size + 1, batch_size) or [0]
    for s in starts:
        yield np.stack([data.image(i) for i in range(s, min(s + batch_size, count))])


def recalibrate(model: Any, data: TrainingImages, cfg: TrainConfig,
                log: Callable[[str], None] = print) -> int:
    """:func:`recalibrate_batchnorm` on the first ``cfg.bn_recalibration_images`` training
    images (un-augmented), as configured; 0 images turns it off. Images are loaded batch by
    batch while the previous batch runs."""
    n = min(cfg.bn_recalibration_images, len(data))
    if n <= 0:
        return 0
    t0 = time.perf_counter()
    batch = min(cfg.batch_size, n)
    batches_used = recalibrate_batchnorm(model, prefetch(image_batches(data, n, batch)), batch)
    log(f"batch-norm statistics re-estimated on {n} training images "
        f"({batches_used} batches, {time.perf_counter() - t0:.1f}s)")
    return batches_used
