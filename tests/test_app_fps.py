"""Tests for application FPS: the in-process loop, the standalone board script (which decodes
boxes with a copy of edgeprune/detection/boxes.py itself) and run_app_on_target on this machine
and over real SSH (the sshd fixture of test_transport.py)."""

from __future__ import annotations

import inspect
import io
import json
import platform
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_transport import SshServer, single_target, sshd  # noqa: F401 - sshd is a fixture
from tiny_clip import board_remote_app, tiny_anchors, write_clip
from tiny_models import IMAGE_SIZE, NUM_CLASSES, tiny_models

from edgeprune.data.video import open_video
from edgeprune.detection import boxes
from edgeprune.detection.boxes import AnchorSpec, PostprocessConfig, generate_anchors, postprocess
from edgeprune.errors import DataError, TargetError
from edgeprune.measurement.app_fps import STAGES, run_app, run_app_on_target
from edgeprune.measurement.targets import parse_targets

remote_app = board_remote_app()  # the standalone script, imported as a board runs it

INPUT = (IMAGE_SIZE, IMAGE_SIZE)


# --------------------------------------------------------------------------- remote decode + NMS


def random_outputs(rng: np.random.Generator, anchors: int, classes: int,
                   ties: bool) -> tuple[np.ndarray, np.ndarray]:
    loc = rng.normal(0.0, 1.5, size=(anchors, 4)).astype(np.float32)
    logits = rng.normal(0.0, 2.0, size=(anchors, classes + 1))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if ties:  # int8-like outputs: many equal scores
        probs = np.round(probs * 16) / 16
    return loc, probs.astype(np.float32)


def test_one_copy_of_box_decoding_and_nms() -> None:
    """The board imports boxes.py, a byte copy of edgeprune/detection/boxes.py, and has no box
    code of its own."""
    board_boxes = sys.modules[remote_app.postprocess.__module__]
    assert board_boxes.__name__ == "boxes" and board_boxes is not boxes
    assert Path(inspect.getsourcefile(board_boxes)).read_bytes() == Path(
        boxes.__file__).read_bytes()
    source = inspect.getsource(remote_app)
    for duplicate in ("def nms", "def decode", "def postprocess", "argsort(-", "np.exp(np.clip"):
        assert duplicate not in source


@pytest.mark.parametrize("seed", range(6))
def test_board_postprocess_equals_host_postprocess(seed: int) -> None:
    rng = np.random.default_rng(seed)
    anchors = generate_anchors(AnchorSpec(((8, 8), (4, 4), (2, 2)), 0.1, 0.9, (1.0, 2.0, 0.5)))
    cfg = PostprocessConfig(
        score_threshold=float(rng.choice([0.0, 0.01, 0.2, 0.6, 0.99])),
        iou_threshold=float(rng.uniform(0.1, 0.8)),
        max_per_class=int(rng.choice([1, 5, 40, 100])),
        max_total=int(rng.choice([1, 10, 200])),
    )
    loc, probs = random_outputs(rng, len(anchors), int(rng.integers(1, 6)), ties=seed % 2 == 0)
    expected = postprocess(loc, probs, anchors, cfg)
    board_cfg = remote_app.PostprocessConfig(cfg.score_threshold, cfg.iou_threshold,
                                             cfg.max_per_class, cfg.max_total)
    got = remote_app.postprocess(loc, probs, anchors, board_cfg)
    for want, have in zip(expected, got, strict=True):
        assert have.dtype == want.dtype and have.shape == want.shape
        np.testing.assert_array_equal(have, want)


def test_remote_postprocess_with_nothing_above_threshold() -> None:
    loc, probs = random_outputs(np.random.default_rng(0), 10, 2, ties=False)
    cfg = remote_app.PostprocessConfig(1.0, 0.5, 10, 10)
    found, scores, classes = remote_app.postprocess(loc, probs, tiny_anchors()[:10], cfg)
    assert found.shape == (0, 4) and scores.shape == (0,) and classes.dtype == np.int32


def test_pick_outputs() -> None:
    assert remote_app.pick_outputs({"conf": [1, 9, 3], "loc": [1, 9, 4]}, 2) == ("loc", "conf")
    named = {"Identity_loc:0": [1, 9, 4], "Identity_conf:0": [1, 9, 4]}
    assert remote_app.pick_outputs(named, 3) == ("Identity_loc:0", "Identity_conf:0")
    by_shape = {"StatefulPartitionedCall:0": [1, 9, 3], "StatefulPartitionedCall:1": [1, 9, 4]}
    assert remote_app.pick_outputs(by_shape, 2) == ("StatefulPartitionedCall:1",
                                                   "StatefulPartitionedCall:0")
    with pytest.raises(SystemExit):  # 3 classes + background = 4 = box size: ambiguous
        remote_app.pick_outputs({"a": [1, 9, 4], "b": [1, 9, 4]}, 3)


# --------------------------------------------------------------------------- in-process loop


def test_run_app_times_every_stage_of_every_frame(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 9, size=(24, 32)).path
    anchors = tiny_anchors()
    seen: list[np.ndarray] = []

    def outputs(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shade = float(batch.mean()) / 255.0
        loc = np.full((1, len(anchors), 4), shade - 0.5, np.float32)
        probs = np.tile(np.array([1 - shade, shade * 0.7, shade * 0.3], np.float32),
                        (1, len(anchors), 1))
        return loc, probs

    def runner(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(batch)
        return outputs(batch)

    cfg = PostprocessConfig(score_threshold=0.2, max_per_class=3)
    result = run_app(runner, clip, INPUT, anchors, cfg, warmup_frames=2, max_frames=5)
    assert result["frames"] == 5 and result["warmup_frames"] == 2 and len(seen) == 7
    assert set(result["stages"]) == {*STAGES, "frame"}
    assert all(len(v) == 5 for v in result["samples_ms"].values())
    frame_ms = np.array(result["samples_ms"]["frame"])
    parts = sum(np.array(result["samples_ms"][s]) for s in STAGES)
    np.testing.assert_allclose(parts, frame_ms, rtol=0.05, atol=0.05)
    assert result["fps"] == pytest.approx(5 / result["wall_s"])
    assert result["wall_s"] * 1000 >= frame_ms.sum()
    assert result["video"]["frames"] == 9 and result["input_size"] == list(INPUT)

    jpegs = list(open_video(clip)[1])
    for jpeg, batch in zip(jpegs[:7], seen, strict=True):
        image = Image.open(io.BytesIO(jpeg)).convert("RGB").resize(
            (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        assert batch.dtype == np.float32 and batch.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
        np.testing.assert_array_equal(batch[0], np.asarray(image, np.float32))
    expected_detections = sum(len(postprocess(*(o[0] for o in outputs(b)), anchors, cfg)[1])
                              for b in seen[2:])
    assert result["detections"] == expected_detections > 0


def test_run_app_needs_more_frames_than_warmup(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "short.avi", 3).path
    with pytest.raises(DataError, match=r"short\.avi: 3 frame\(s\), but 3 warm-up"):
        run_app(lambda b: (b, b), clip, INPUT, tiny_anchors(), warmup_frames=3)


# --------------------------------------------------------------------------- targets


def app_on(target: Any, tmp_path: Path, clip: Path, name: str, **kw: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"warmup_frames": 1, "max_frames": 6, "pp_cfg": PostprocessConfig(
        score_threshold=0.3, max_per_class=5)}
    options.update(kw)
    return run_app_on_target(target, tiny_models().float_path, tiny_anchors(), clip,
                             tmp_path / "logs" / f"{name}.log", INPUT, NUM_CLASSES, **options)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.avi", 8, size=(30, 40)).path


@pytest.fixture(scope="module")
def shared_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A board directory kept across tests: files already there are not copied again (every
    copy is one more SSH connection)."""
    return tmp_path_factory.mktemp("shared-board")


def test_local_target_in_process(tmp_path: Path, clip: Path) -> None:
    target = parse_targets({"targets": {"host-litert": {"threads": 1}}})["host-litert"]
    result = app_on(target, tmp_path, clip, "host")
    assert (result["target"], result["transport"], result["engine"]) == ("host-litert", "local",
                                                                         "litert")
    assert result["frames"] == 6 and result["fps"] > 0 and result["pushed"] == []
    assert result["settings"]["threads"] == 1 and result["settings"]["postprocess"][
        "score_threshold"] == 0.3
    ident = result["identity"]
    assert ident["runtime"] == "ai-edge-litert" and ident["delegate"] == "xnnpack"
    assert ident["kernel"] == platform.release() and ident["threads"] == 1
    raw = json.loads((tmp_path / "logs" / "host.log").read_text())
    assert raw["edgeprune_app"] == 1 and raw["samples_ms"] == result["samples_ms"]


def test_ssh_target_runs_the_remote_script(sshd: SshServer, tmp_path: Path,  # noqa: F811
                                           clip: Path) -> None:
    workdir = tmp_path / "board"
    target = single_target("board", sshd.spec(runtime="litert-python", python=sys.executable,
                                              workdir=str(workdir), threads=1))
    result = app_on(target, tmp_path, clip, "board")
    assert result["target"] == "board" and result["transport"] == "ssh"
    assert result["frames"] == 6 and result["warmup_frames"] == 1
    assert set(result["stages"]) == {*STAGES, "frame"}
    ident = result["identity"]
    assert ident["runtime"] == "ai-edge-litert" and ident["kernel"] == platform.release()
    assert ident["python"] == platform.python_version() and ident["threads"] == 1
    assert sorted(Path(p).parent.name for p in result["pushed"]) == [
        "app", "board", "board", "board", "models", "videos"]
    # The app script and the modules it imports sit side by side in the work directory.
    assert {str(workdir / name) for name in ("remote_app.py", "remote_runner.py", "boxes.py")
            } <= set(result["pushed"])
    assert (workdir / "boxes.py").read_bytes() == Path(boxes.__file__).read_bytes()
    # The model lives under its checksum, as for latency jobs.
    staged = next(Path(p) for p in result["pushed"] if Path(p).parent.name == "models")
    assert staged.name == f"{result['model_sha256'][:16]}.tflite"
    # The clip arrives as a tar of the JPEG frames the run reads (1 warm-up + 6 timed).
    with tarfile.open(workdir / "videos" / "clip.frames.tar") as tar:
        shipped = [tar.extractfile(m).read() for m in tar.getmembers()
                   if m.name.startswith("frames/")]
    assert shipped == list(open_video(clip)[1])[:7]
    assert result["video"]["codec"] == "mjpeg" and result["video"]["shipped"]["frames"] == 7
    assert "--max-frames 6" in result["command"] and "--threads 1" in result["command"]
    raw = (tmp_path / "logs" / "board.log").read_text()
    payload = next(line for line in raw.splitlines() if line.startswith('{"'))
    assert json.loads(payload)["samples_ms"] == result["samples_ms"]

    # Same model, clip and settings in this process: the same detections.
    local = parse_targets({"targets": {"host-litert": {"threads": 1}}})["host-litert"]
    assert app_on(local, tmp_path, clip, "local")["detections"] == result["detections"] > 0
    again = app_on(target, tmp_path, clip, "board2")
    assert again["pushed"] == []  # script, model, anchors and clip already there


def test_ssh_target_with_openvino(sshd: SshServer, tmp_path: Path,  # noqa: F811
                                  clip: Path, shared_workdir: Path) -> None:
    target = single_target("ov-board", sshd.spec(runtime="openvino", device="CPU",
                                                 python=sys.executable,
                                                 workdir=str(shared_workdir)))
    result = app_on(target, tmp_path, clip, "ov", max_frames=3)
    assert result["frames"] == 3 and result["engine"] == "openvino"
    assert result["identity"]["runtime"] == "openvino"
    assert result["identity"]["openvino_device"] == "CPU"


def test_remote_script_failure_keeps_raw_output(sshd: SshServer, tmp_path: Path,  # noqa: F811
                                                clip: Path, shared_workdir: Path) -> None:
    model = tmp_path / "broken.tflite"
    model.write_bytes(b"not a flatbuffer")
    target = single_target("board", sshd.spec(runtime="litert-python", python=sys.executable,
                                              workdir=str(shared_workdir)))
    with pytest.raises(TargetError, match=r"target 'board' \(ssh .*\): remote_app\.py exit "
                                          r"status 1; last lines: .*not a valid Flatbuffer.*; "
                                          r"output kept in .*board\.log"):
        run_app_on_target(target, model, tiny_anchors(), clip, tmp_path / "board.log", INPUT,
                          NUM_CLASSES, warmup_frames=1)
    assert "Traceback" in (tmp_path / "board.log").read_text()


def test_clip_shorter_than_warmup_is_refused_before_copying(sshd: SshServer,  # noqa: F811
                                                            tmp_path: Path) -> None:
    short = write_clip(tmp_path / "short.avi", 3).path
    target = single_target("board", sshd.spec(runtime="litert-python", python=sys.executable,
                                              workdir=str(tmp_path / "w")))
    with pytest.raises(DataError, match=r"short\.avi: 3 frame\(s\), but 3 warm-up"):
        app_on(target, tmp_path, short, "short", warmup_frames=3)
    assert not (tmp_path / "w").exists()


def test_adb_and_disabled_targets_are_refused(tmp_path: Path, clip: Path) -> None:
    phone = single_target("phone", {"transport": "adb", "serial": "R58M123ABC",
                                    "runtime": "benchmark_model", "binary": "bm"})
    with pytest.raises(TargetError) as info:
        app_on(phone, tmp_path, clip, "phone")
    assert str(info.value).startswith("target 'phone' (adb serial R58M123ABC): application FPS "
                                      "needs Python on the device")
    assert "benchmark_model latency" in str(info.value)
    off = parse_targets({"targets": {"host-litert": {"enabled": False}}})["host-litert"]
    with pytest.raises(TargetError) as info:
        app_on(off, tmp_path, clip, "off")
    assert str(info.value) == (
        "target 'host-litert' is disabled in config (targets.host-litert.enabled: false)")
    assert not (tmp_path / "logs").exists()
