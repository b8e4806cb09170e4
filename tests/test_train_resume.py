"""Training survives a kill: checkpoints after every epoch (model, optimizer, epoch, loss
history; with tfmot wrappers also the pruning step and masks), and a rerun resumes after the
last saved epoch. The kill is real: the training process SIGKILLs itself right after epoch 2's
progress line (its checkpoint is written before the line), as SLURM's preemption or a node
failure would. Also: the tf.data input pipeline gives the same batches whatever its thread
count, and a checkpoint written for other settings is never resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from detector_helpers import build_tiny, random_detection_data, tf_keras, tiny_spec

from edgeprune.data.augment import AugmentConfig
from edgeprune.detection.models.registry import anchors_for
from edgeprune.detection.train import (
    TrainConfig,
    epoch_order,
    input_pipeline,
    train,
    training_example,
)

TESTS = Path(__file__).resolve().parent
EPOCHS = 4

#: A tiny training in its own process: ``python -c CHILD <ckpt dir> <kill after epoch|0>
#: <plain|prune>``; prints every progress line, then the history as JSON.
CHILD = textwrap.dedent(f"""
    import json, os, signal, sys
    sys.path.insert(0, {str(TESTS)!r})
    from detector_helpers import build_tiny, random_detection_data, tiny_spec
    from edgeprune.compression.prune import PruneConfig, apply_pruning, strip, update_step_callback
    from edgeprune.compression.prune import measured_sparsity, prunable_layers
    from edgeprune.data.augment import AugmentConfig
    from edgeprune.detection.models.registry import anchors_for
    from edgeprune.detection.train import TrainConfig, steps_per_epoch, train

    from edgeprune.tfenv import setup

    ckpt, kill_after, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # Executing the training step eagerly: tracing it costs more than 8 tiny steps.
    setup(2, 0)[0].config.run_functions_eagerly(True)
    spec = tiny_spec("ssd_mobilenet_v1")
    model = build_tiny(spec, seed=0)
    anchors = anchors_for(spec, model)
    data = random_detection_data(8, seed=0)
    cfg = TrainConfig(epochs={EPOCHS}, batch_size=4, learning_rate=1e-3, warmup_epochs=0.5,
                      augment=AugmentConfig(zoom_range=(0.8, 1.2)), input_workers=2)
    callbacks = []
    if mode == "prune":
        total = steps_per_epoch(len(data), cfg.batch_size) * cfg.epochs
        model = apply_pruning(model, 0.5, total, PruneConfig(end_fraction=0.6))
        callbacks = [update_step_callback()]

    def log(line):
        print(line, flush=True)
        if kill_after and line.startswith(f"epoch {{kill_after}}/"):
            os.kill(os.getpid(), signal.SIGKILL)

    hist = train(model, data, anchors, cfg, log=log, callbacks=callbacks, checkpoint_dir=ckpt,
                 fingerprint={{"mode": mode}})
    out = {{"history": hist}}
    if mode == "prune":
        wrapper = next(layer for layer in model.layers if hasattr(layer, "pruning_step"))
        out["pruning_step"] = int(wrapper.pruning_step.numpy())
        final = strip(model)
        out["sparsity"] = measured_sparsity(final, prunable_layers(final, ("Conv2D",)))["sparsity"]
    print("RESULT " + json.dumps(out), flush=True)
""")


def run_child(ckpt: Path, kill_after: int, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(kill_after), mode],
                          capture_output=True, text=True, timeout=600)


def epoch_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("epoch ")]


def logged_loss(line: str) -> float:
    return float(line.split("loss=")[1].split()[0])


def result(out: str) -> dict:
    return json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])


@pytest.mark.parametrize("mode", ["plain", "prune"])
def test_killed_training_resumes_at_epoch_3(tmp_path: Path, mode: str) -> None:
    ckpt = tmp_path / "model.ckpt"
    killed = run_child(ckpt, 2, mode)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    first = epoch_lines(killed.stdout)
    assert [ln.split()[1] for ln in first] == ["1/4", "2/4"]
    assert (ckpt / "checkpoint").is_file()

    rerun = run_child(ckpt, 0, mode)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming after epoch 2/{EPOCHS}" in rerun.stdout
    second = epoch_lines(rerun.stdout)
    assert [ln.split()[1] for ln in second] == ["3/4", "4/4"]  # starts at epoch 3
    hist = result(rerun.stdout)
    # The loss history continues: epochs 1-2 from the killed run, 3-4 from the rerun.
    assert len(hist["history"]["loss"]) == EPOCHS
    logged = [logged_loss(ln) for ln in first + second]
    np.testing.assert_allclose(hist["history"]["loss"], logged, atol=6e-5)
    if mode == "prune":
        # The pruning step continued from the checkpoint (2 steps per epoch, 4 epochs) and the
        # masks reached the target: tfmot's state was part of the checkpoint.
        assert hist["pruning_step"] == 2 * EPOCHS
        assert hist["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_input_pipeline_is_deterministic_whatever_the_threads() -> None:
    """Batches depend on (seed, epoch, image) only: 1 or 3 workers, twice, give the same
    batches, equal to the examples built one by one in the epoch's order."""
    tf, _ = tf_keras()
    spec = tiny_spec("ssd_mobilenet_v1")
    anchors = anchors_for(spec, build_tiny(spec))
    data = random_detection_data(6, seed=3)
    cfg = TrainConfig(batch_size=3, seed=5, augment=AugmentConfig())
    runs = [[tuple(t.numpy() for t in b) for b in input_pipeline(tf, data, anchors, cfg, 1, w)]
            for w in (1, 3, 3)]
    order = epoch_order(len(data), cfg.seed, 1)
    expected = [training_example(data, anchors, cfg, 1, int(i)) for i in order]
    for batches in runs:
        assert len(batches) == 2
        for b, batch in enumerate(batches):
            for part in range(3):
                np.testing.assert_array_equal(
                    batch[part], np.stack([e[part] for e in expected[b * 3:(b + 1) * 3]]))
    # Another epoch: another order and other augmentations.
    assert not np.array_equal(epoch_order(len(data), cfg.seed, 2), order)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    tf_keras()
    spec = tiny_spec("ssd_mobilenet_v1")
    data = random_detection_data(4, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=4, augment=AugmentConfig(enabled=False))
    ckpt = tmp_path / "ckpt"
    lines: list[str] = []
    model = build_tiny(spec)
    train(model, data, anchors_for(spec, model), cfg, log=lines.append, checkpoint_dir=ckpt,
          fingerprint={"lr": 1})
    assert (ckpt / "checkpoint").is_file()
    lines.clear()
    model = build_tiny(spec)
    train(model, data, anchors_for(spec, model), cfg, log=lines.append, checkpoint_dir=ckpt,
          fingerprint={"lr": 2})
    assert any(line.startswith("discarding checkpoints") for line in lines)
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == ["1/1"]


def test_image_files_are_read_on_demand_and_cached_within_a_budget(tmp_path: Path) -> None:
    from PIL import Image

    from edgeprune.detection.dataset import DetectionFiles

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.jpg")
        Image.new("RGB", (40, 30), (60 * i, 20, 90)).save(paths[-1])
    empty = [np.zeros((0, 4), np.float32)] * 3
    one = 16 * 16 * 3
    data = DetectionFiles(paths, empty, [np.zeros(0, np.int64)] * 3, (16, 16), cache_bytes=2 * one)
    first = [data.image(i) for i in range(3)]
    assert [im.shape for im in first] == [(16, 16, 3)] * 3 and len(data) == 3
    assert sorted(data._cache) == [0, 1]  # the budget holds two decoded images
    assert not data.image(0).flags.writeable  # cached arrays are shared: read-only
    np.testing.assert_array_equal(data.image(2), first[2])  # re-read from its file


def test_a_bad_image_in_the_input_pipeline_is_a_one_line_data_error() -> None:
    from edgeprune.detection.train import pipeline_error
    from edgeprune.errors import DataError

    raised = RuntimeError("UnknownError: Traceback ...\n  DataError: /data/x.jpg: cannot read "
                          "image (truncated)\n [[{{node PyFunc}}]]")
    err = pipeline_error(raised)
    assert isinstance(err, DataError) and str(err) == "/data/x.jpg: cannot read image (truncated)"
    other = RuntimeError("ResourceExhaustedError: OOM")
    assert pipeline_error(other) is other
