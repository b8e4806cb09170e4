"""Tests for edgeprune.data.video: the MJPEG AVI writer/reader and the demo clip."""

from __future__ import annotations

import importlib.machinery
import io
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_clip import random_frames, write_clip

import edgeprune.measurement.devices
from edgeprune.data.synthetic import generate_dataset
from edgeprune.data.video import (
    NotMjpegAviError,
    encode_jpeg,
    make_demo_video,
    open_video,
    probe_mjpeg_avi,
    read_mjpeg_avi,
    write_mjpeg_avi,
)
from edgeprune.errors import DataError

DEVICES_DIR = Path(edgeprune.measurement.devices.__file__).parent  # the shipped standalone scripts


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def chunk(fourcc: bytes, payload: bytes) -> bytes:
    return struct.pack("<4sI", fourcc, len(payload)) + payload + b"\0" * (len(payload) & 1)


def riff_list(kind: bytes, payload: bytes) -> bytes:
    return struct.pack("<4sI", b"LIST", 4 + len(payload)) + kind + payload


# --------------------------------------------------------------------------- writer + reader


def test_round_trip_arrays_and_bytes(tmp_path: Path) -> None:
    frames = random_frames(6, (24, 40))
    path = tmp_path / "clip.avi"
    info = write_mjpeg_avi(path, iter(frames), fps=30000 / 1001, quality=85)  # NTSC
    assert (info.frames, info.width, info.height, info.codec) == (6, 40, 24, "MJPG")
    assert probe_mjpeg_avi(path) == info
    assert info.fps == 30000 / 1001  # stored exactly as rate 30000 / scale 1001
    stored = list(read_mjpeg_avi(path))
    assert stored == [encode_jpeg(f, 85) for f in frames]  # frame bytes are kept verbatim
    for original, jpeg in zip(frames, stored, strict=True):
        assert np.abs(decode(jpeg).astype(int) - original).mean() < 25  # lossy, but close
    # JPEG bytes are written as given; an odd length is padded in the file, not in the frame.
    odd = stored[0] + b"\0" if len(stored[0]) % 2 == 0 else stored[0]
    copy = write_mjpeg_avi(tmp_path / "copy.avi", [odd, stored[1], odd], fps=5)
    assert list(read_mjpeg_avi(copy.path)) == [odd, stored[1], odd]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_file_layout_follows_the_avi_spec(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.avi", 3, (16, 24), fps=12.5).path
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"AVI "
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    avih = data.index(b"avih") + 8
    usec, _, _, flags, total, _, streams, _, width, height = struct.unpack("<10I",
                                                                          data[avih:avih + 40])
    assert (usec, flags & 0x10, total, streams, width, height) == (80000, 0x10, 3, 1, 24, 16)
    strh = data.index(b"strh") + 8
    kind, handler = data[strh:strh + 4], data[strh + 4:strh + 8]
    scale, rate, _, length = struct.unpack("<4I", data[strh + 20:strh + 36])
    assert (kind, handler, rate / scale, length) == (b"vids", b"MJPG", 12.5, 3)
    strf = data.index(b"strf") + 8
    assert struct.unpack("<Iii", data[strf:strf + 12]) == (40, 24, 16)
    assert data[strf + 16:strf + 20] == b"MJPG"
    movi = data.index(b"movi")
    idx1 = data.index(b"idx1")
    entries = [struct.unpack("<4sIII", data[idx1 + 8 + 16 * i:idx1 + 24 + 16 * i])
               for i in range(3)]
    frames = list(read_mjpeg_avi(path))
    for (ckid, flags, offset, size), frame in zip(entries, frames, strict=True):
        assert (ckid, flags & 0x10, size) == (b"00dc", 0x10, len(frame))
        assert data[movi + offset:movi + offset + 4] == b"00dc"  # offsets count from 'movi'
        assert data[movi + offset + 8:movi + offset + 8 + size] == frame


def test_reads_ffmpeg_style_files(tmp_path: Path) -> None:
    """Audio stream first (video is stream 01), JUNK, a 'rec ' list, an empty dropped frame,
    and an OpenDML 'AVIX' segment after the first RIFF (files over 1 GB)."""
    jpegs = [encode_jpeg(f) for f in random_frames(4, (16, 16))]
    strh_a = struct.pack("<4s4sIHHIIIIIIiI4h", b"auds", b"\0" * 4, 0, 0, 0, 0, 1, 8000, 0, 0,
                         0, -1, 2, 0, 0, 0, 0)
    strh_v = struct.pack("<4s4sIHHIIIIIIiI4h", b"vids", b"MJPG", 0, 0, 0, 0, 1, 10, 0, 3, 0,
                         -1, 0, 0, 0, 16, 16)
    strf_v = struct.pack("<IiiHH4sIiiII", 40, 16, 16, 1, 24, b"MJPG", 768, 0, 0, 0, 0)
    avih = struct.pack("<14I", 100000, 0, 0, 0x10, 3, 0, 2, 0, 16, 16, 0, 0, 0, 0)
    hdrl = riff_list(b"hdrl", chunk(b"avih", avih)
                     + riff_list(b"strl", chunk(b"strh", strh_a) + chunk(b"strf", b"\0" * 18))
                     + riff_list(b"strl", chunk(b"strh", strh_v) + chunk(b"strf", strf_v)))
    movi = riff_list(b"movi", chunk(b"01wb", b"\1" * 7) + chunk(b"01dc", jpegs[0])
                     + chunk(b"01dc", b"")
                     + riff_list(b"rec ", chunk(b"01wb", b"\2" * 4) + chunk(b"01dc", jpegs[1]))
                     + chunk(b"ix01", b"\0" * 24) + chunk(b"01dc", jpegs[2]))
    body = b"AVI " + hdrl + chunk(b"JUNK", b"\0" * 13) + movi
    extension = b"AVIX" + riff_list(b"movi", chunk(b"01dc", jpegs[3]))
    path = tmp_path / "ffmpeg-like.avi"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body
                     + b"RIFF" + struct.pack("<I", len(extension)) + extension)
    info = probe_mjpeg_avi(path)
    assert (info.frames, info.fps, info.width, info.height) == (4, 10.0, 16, 16)
    assert list(read_mjpeg_avi(path)) == jpegs

    sys.path.insert(0, str(DEVICES_DIR))
    try:
        import remote_app
    finally:
        sys.path.pop(0)
    remote = remote_app.MjpegAvi(str(path))
    assert (len(remote), remote.fps, remote.width, remote.height) == (4, 10.0, 16, 16)
    assert list(remote.frames()) == jpegs


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"\0\0\0\x18ftypisom" + b"\0" * 40, "an MP4/QuickTime file"),
        (b"\x1aE\xdf\xa3" + b"\0" * 40, "a Matroska/WebM file"),
        (b"RIFF\x10\0\0\0WAVEfmt " + b"\0" * 40, "a RIFF file but not AVI"),
        (b"hello", "not an AVI file"),
    ],
)
def test_other_containers_name_the_file_and_the_fix(tmp_path: Path, head: bytes,
                                                    what: str) -> None:
    path = tmp_path / "input.mp4"
    path.write_bytes(head)
    with pytest.raises(NotMjpegAviError) as info:
        probe_mjpeg_avi(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {what}; expected a Motion-JPEG AVI")
    assert "ffmpeg -i in.mp4 -c:v mjpeg -q:v 3" in message
    with pytest.raises(NotMjpegAviError):
        read_mjpeg_avi(path)


def test_avi_with_another_codec(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.avi", 2).path
    data = bytearray(path.read_bytes())
    strf = data.index(b"strf") + 8
    data[strf + 16:strf + 20] = b"H264"
    path.write_bytes(bytes(data))
    with pytest.raises(NotMjpegAviError, match=r"clip\.avi: AVI whose video codec is 'H264', "
                                               r"not Motion-JPEG .*ffmpeg -i"):
        probe_mjpeg_avi(path)


def test_missing_truncated_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.avi: video file not found"):
        probe_mjpeg_avi(tmp_path / "nope.avi")
    path = write_clip(tmp_path / "clip.avi", 4).path
    data = path.read_bytes()
    frames = list(read_mjpeg_avi(path))
    third = data.index(frames[2])
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: third + 100])  # an interrupted recording keeps its whole frames
    assert probe_mjpeg_avi(cut).frames == 2
    assert list(read_mjpeg_avi(cut)) == frames[:2]
    cut.write_bytes(data[: data.index(frames[0]) + 100])
    with pytest.raises(DataError, match=r"cut\.avi: MJPEG AVI without any frame"):
        probe_mjpeg_avi(cut)
    with pytest.raises(ValueError, match="no frames"):
        write_mjpeg_avi(tmp_path / "empty.avi", [], fps=10)
    assert not (tmp_path / "empty.avi").exists()


def test_writer_rejects_bad_frames(tmp_path: Path) -> None:
    small, large = random_frames(1, (16, 16))[0], random_frames(1, (24, 16))[0]
    with pytest.raises(ValueError, match=r"frame 1 is 16x24, frame 0 is 16x16"):
        write_mjpeg_avi(tmp_path / "a.avi", [small, large], fps=10)
    with pytest.raises(ValueError, match=r"frame 0: not JPEG data"):
        write_mjpeg_avi(tmp_path / "b.avi", [b"PNG not jpeg"], fps=10)
    with pytest.raises(ValueError, match="fps must be"):
        write_mjpeg_avi(tmp_path / "c.avi", [small], fps=0)
    assert not list(tmp_path.iterdir())


def test_open_video_uses_opencv_for_other_containers(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A STAND-IN cv2 module (OpenCV is not installed here) that plays three BGR frames."""
    frames = random_frames(3, (16, 24))

    class Capture:
        def __init__(self, path: str) -> None:
            self.left = [f[..., ::-1].copy() for f in frames]
            self.released = False

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return True

        def get(self, prop: int) -> float:
            return {1: 3.0, 2: 25.0, 3: 24.0, 4: 16.0}[prop]

        def read(self) -> tuple[bool, np.ndarray | None]:
            return (True, self.left.pop(0)) if self.left else (False, None)

        def release(self) -> None:
            self.released = True

    def imencode(ext: str, bgr: np.ndarray, params: list[int]) -> tuple[bool, np.ndarray]:
        assert ext == ".jpg" and params == [7, 90]
        return True, np.frombuffer(encode_jpeg(bgr[..., ::-1].copy(), 90), np.uint8)

    cv2 = types.ModuleType("cv2")
    cv2.__spec__ = importlib.machinery.ModuleSpec("cv2", None)
    cv2.VideoCapture = Capture
    cv2.imencode = imencode
    cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FPS = 1, 2
    cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT = 3, 4
    cv2.IMWRITE_JPEG_QUALITY = 7
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    clip = tmp_path / "phone.mp4"
    clip.write_bytes(b"\0\0\0\x18ftypisom")
    info, jpegs = open_video(clip)
    assert (info.frames, info.fps, info.width, info.height, info.container) == (
        3, 25.0, 24, 16, "cv2")
    assert list(jpegs) == [encode_jpeg(f, 90) for f in frames]


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
    images = [decode(j).astype(int) for j in read_mjpeg_avi(first.path)]
    assert all(img.shape == (32, 48, 3) for img in images)
    steps = [np.abs(a - b).mean() for a, b in zip(images, images[1:], strict=False)]
    assert min(steps) > 0.1  # every frame differs from the one before (pan/zoom)
    assert max(steps[:3]) < max(steps)  # within one image the motion is gentle; cuts are larger


def test_demo_video_errors(devkit: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_frames"):
        make_demo_video(devkit, ["SYNTH/test"], tmp_path / "x.avi", n_frames=0)
    with pytest.raises(DataError, match="image set file not found"):
        make_demo_video(devkit, ["SYNTH/nope"], tmp_path / "x.avi", n_frames=3)
