"""Tests for edgeprune.data.video: Motion-JPEG clips written and read through PyAV, other codecs
re-encoded as JPEG, the frame archive SSH boards read (with remote_app's reader), and the demo
clip."""

from __future__ import annotations

import io
import json
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from tiny_clip import board_remote_app, random_frames, write_clip

from edgeprune.data.synthetic import generate_dataset
from edgeprune.data.video import (
    encode_jpeg,
    jpeg_clip,
    make_demo_video,
    open_video,
    probe_video,
    write_frame_archive,
    write_video,
)
from edgeprune.errors import DataError

remote_app = board_remote_app()  # the board's reader of frame archives


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def write_mpeg4(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """A clip in another codec (MPEG-4 Part 2 in MP4), as a phone or camera might give."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


# --------------------------------------------------------------------------- write + read


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_round_trip_keeps_the_jpeg_bytes(tmp_path: Path, suffix: str) -> None:
    frames = random_frames(6, (24, 40))
    path = tmp_path / f"clip{suffix}"
    info = write_video(path, iter(frames), fps=30000 / 1001, quality=85)  # NTSC rate
    assert (info.frames, info.width, info.height, info.codec) == (6, 40, 24, "mjpeg")
    assert Fraction(info.fps).limit_denominator(1001) == Fraction(30000, 1001)
    assert probe_video(path) == info
    got_info, jpegs = open_video(path)
    stored = list(jpegs)
    assert got_info == info
    assert stored == [encode_jpeg(f, 85) for f in frames]  # packets are the JPEG files verbatim
    for original, jpeg in zip(frames, stored, strict=True):
        assert np.abs(decode(jpeg).astype(int) - original).mean() < 25  # lossy, but close
    again = write_video(tmp_path / f"copy{suffix}", stored, fps=30000 / 1001)
    assert again.path.read_bytes() == path.read_bytes()  # bit-exact: same frames, same file
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_avi_is_a_standard_motion_jpeg_avi(tmp_path: Path) -> None:
    data = write_clip(tmp_path / "clip.avi", 3, (16, 24), fps=12.5).path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"AVI "
    assert b"vids" in data and b"MJPG" in data and data.count(b"00dc") >= 3
    assert b"idx1" in data  # the index players use to seek
    assert b"Lavf" not in data  # bit-exact mode: no muxer version in the file


def test_other_codecs_are_reencoded_as_jpeg(tmp_path: Path) -> None:
    frames = [np.full((16, 32, 3), v, np.uint8) for v in (20, 90, 160, 230)]
    clip = write_mpeg4(tmp_path / "phone.mp4", frames)
    info, jpegs = open_video(clip, quality=95)
    assert (info.frames, info.fps, info.width, info.height, info.codec) == (4, 10.0, 32, 16,
                                                                            "mpeg4")
    assert info.container.startswith("mov,mp4")
    images = [decode(j).astype(int) for j in jpegs]
    assert [round(float(img.mean())) for img in images] == pytest.approx([20, 90, 160, 230],
                                                                        abs=4)
    with jpeg_clip(clip, tmp_path) as copy:
        assert copy != clip and probe_video(copy).codec == "mjpeg"
        assert probe_video(copy).frames == 4 and probe_video(copy).fps == 10.0
    assert not copy.exists()  # the copy is removed afterwards
    mjpeg = write_clip(tmp_path / "clip.avi", 3).path
    with jpeg_clip(mjpeg, tmp_path) as same:
        assert same == mjpeg  # already Motion-JPEG: no copy


# --------------------------------------------------------------------------- errors


def test_missing_unreadable_and_streamless_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.avi: video file not found"):
        probe_video(tmp_path / "nope.avi")
    text = tmp_path / "notes.avi"
    text.write_text("not a video at all\n" * 20)
    with pytest.raises(DataError, match=r"notes\.avi: not a video FFmpeg can read"):
        open_video(text)
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(DataError, match=r"tone\.wav: no video stream"):
        probe_video(audio)


def test_writer_rejects_bad_frames(tmp_path: Path) -> None:
    small, large = random_frames(1, (16, 16))[0], random_frames(1, (24, 16))[0]
    with pytest.raises(ValueError, match=r"frame 1 is 16x24, frame 0 is 16x16"):
        write_video(tmp_path / "a.avi", [small, large], fps=10)
    with pytest.raises(ValueError, match=r"frame 0: not JPEG data"):
        write_video(tmp_path / "b.avi", [b"PNG not jpeg"], fps=10)
    with pytest.raises(ValueError, match="fps must be"):
        write_video(tmp_path / "c.avi", [small], fps=0)
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(tmp_path / "d.avi", [], fps=10)
    with pytest.raises(ValueError, match=r"e\.gif: unknown video suffix"):
        write_video(tmp_path / "e.gif", [small], fps=10)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- frame archive


def test_frame_archive_is_a_plain_tar_the_board_reads(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 5, (24, 32), fps=12.5).path
    _, jpegs = open_video(clip)
    frames = list(jpegs)
    archive = tmp_path / "clip.frames.tar"
    info = write_frame_archive(archive, clip)
    assert (info.frames, info.container, info.path) == (5, "tar", archive)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert names == [f"frames/{i:06d}.jpg" for i in range(5)] + ["clip.json"]
        assert [tar.extractfile(f"frames/{i:06d}.jpg").read() for i in range(5)] == frames
        index = json.loads(tar.extractfile("clip.json").read())
    assert (index["frames"], index["fps"], index["width"], index["height"]) == (5, 12.5, 32, 24)
    assert index["source"] == {"name": "clip.avi", "codec": "mjpeg", "container": "avi"}
    board = remote_app.FrameArchive(str(archive))
    assert (len(board), board.fps, board.width, board.height) == (5, 12.5, 32, 24)
    assert list(board.frames()) == frames
    board.close()
    # reproducible: the same clip gives the same archive (a board copy is recognised by hash)
    assert write_frame_archive(tmp_path / "again.tar", clip).path.read_bytes() == \
        archive.read_bytes()
    short = write_frame_archive(tmp_path / "short.tar", clip, max_frames=2)
    assert short.frames == 2 and len(remote_app.FrameArchive(str(short.path))) == 2


def test_board_reader_refuses_other_files(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 2).path
    with pytest.raises(SystemExit):
        remote_app.FrameArchive(str(clip))  # a video container is not a frame archive
    bare = tmp_path / "bare.tar"
    with tarfile.open(bare, "w") as tar:
        tar.add(clip, arcname="frames/000000.jpg")
    with pytest.raises(SystemExit):
        remote_app.FrameArchive(str(bare))  # no clip.json


# --------------------------------------------------------------------------- demo clip


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("devkit")
    generate_dataset(root / "SYNTH", ["circle", "square"], {"test": 3}, (48, 64), seed=5)
    return root


def test_demo_video_is_deterministic_and_moves(devkit: Path, tmp_path: Path) -> None:
    args = (devkit, ["SYNTH/test"])
    first = make_demo_video(*args, tmp_path / "a.avi", n_frames=9, fps=4, size=(32, 48), seed=1)
    second = make_demo_video(*args, tmp_path / "b.avi", n_frames=9, fps=4, size=(32, 48), seed=1)
    other = make_demo_video(*args, tmp_path / "c.avi", n_frames=9, fps=4, size=(32, 48), seed=2)
    assert (first.frames, first.width, first.height, first.fps) == (9, 48, 32, 4.0)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.read_bytes() != other.path.read_bytes()
    images = [decode(j).astype(int) for j in open_video(first.path)[1]]
    assert all(img.shape == (32, 48, 3) for img in images)
    steps = [np.abs(a - b).mean() for a, b in zip(images, images[1:], strict=False)]
    assert min(steps) > 0.1  # every frame differs from the one before (pan/zoom)
    assert max(steps[:3]) < max(steps)  # within one image the motion is gentle; cuts are larger


def test_demo_video_errors(devkit: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_frames"):
        make_demo_video(devkit, ["SYNTH/test"], tmp_path / "x.avi", n_frames=0)
    with pytest.raises(DataError, match="image set file not found"):
        make_demo_video(devkit, ["SYNTH/nope"], tmp_path / "x.avi", n_frames=3)
