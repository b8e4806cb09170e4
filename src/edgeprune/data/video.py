"""Video clips for application FPS: read and write them with PyAV, ship them as JPEG archives.

Clips are read and written through PyAV (FFmpeg's demuxers and muxers), so any container and
codec FFmpeg knows is accepted. The application loop wants what a camera pipeline gets: one
compressed image per frame, decoded by the application itself, so that decoding can be timed as
its own stage. A Motion-JPEG stream already is that -- every packet is a plain JPEG image -- and
its packets are handed over untouched. Any other codec (H.264 from a phone, ...) is decoded once
and re-encoded as JPEG before anything is timed (:func:`jpeg_clip`).

The demo clip is Motion-JPEG in an AVI written by FFmpeg's muxer from JPEG images that Pillow
encodes (bit-exact mode, so the same arguments give the same bytes).

SSH boards get no video container at all: :func:`write_frame_archive` stores the frames as an
uncompressed tar of JPEG files plus a ``clip.json`` (frame rate, size, count), which the board's
``remote_app.py`` reads with the standard library's ``tarfile``.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgeprune.errors import DataError
from edgeprune.fileio import atomic_path

__all__ = [
    "ARCHIVE_INDEX",
    "VideoInfo",
    "encode_jpeg",
    "jpeg_clip",
    "make_demo_video",
    "open_video",
    "probe_video",
    "write_frame_archive",
    "write_video",
]

#: Member of a frame archive that describes the clip; frames follow as ``frames/NNNNNN.jpg``.
ARCHIVE_INDEX = "clip.json"
#: Codec name (FFmpeg's) of streams whose packets are JPEG images.
MJPEG = "mjpeg"
#: Output container (FFmpeg muxer) by file suffix for :func:`write_video`.
MUXERS = {".avi": "avi", ".mkv": "matroska", ".mov": "mov"}
_SOI = b"\xff\xd8"


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a clip before decoding it."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    container: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"path": str(self.path), "frames": self.frames, "fps": self.fps,
                "width": self.width, "height": self.height, "codec": self.codec,
                "container": self.container}


# --------------------------------------------------------------------------- JPEG frames


def encode_jpeg(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    """Encode an RGB (or greyscale) uint8 image as baseline JPEG bytes."""
    if isinstance(image, np.ndarray):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3) or (
                array.ndim == 3 and array.shape[2] != 3):
            raise ValueError(f"expected a uint8 HxW or HxWx3 image, got {array.dtype} "
                             f"{array.shape}")
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def _jpeg_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) of JPEG bytes, from the header only."""
    if not data.startswith(_SOI):
        raise ValueError(f"{where}: not JPEG data (no FFD8 start-of-image marker)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: unreadable JPEG header ({exc})") from None


def _jpeg_frames(frames: Iterable[bytes | np.ndarray], quality: int, where: Path
                 ) -> Iterator[tuple[bytes, tuple[int, int]]]:
    """(JPEG bytes, (width, height)) of each frame; all frames must have the first one's size."""
    size: tuple[int, int] | None = None
    for i, frame in enumerate(frames):
        data = (bytes(frame) if isinstance(frame, bytes | bytearray | memoryview)
                else encode_jpeg(frame, quality))
        frame_size = _jpeg_size(data, f"{where} frame {i}")
        if size is None:
            size = frame_size
        elif frame_size != size:
            raise ValueError(f"{where}: frame {i} is {frame_size[0]}x{frame_size[1]}, frame 0 is "
                             f"{size[0]}x{size[1]}; all frames need one size")
        yield data, frame_size


def _rate(fps: float) -> Fraction:
    """The frame rate as a fraction, e.g. 29.97 -> 30000/1001."""
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 0 < fps <= 1000):
        raise ValueError(f"fps must be a number in (0, 1000], got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


# --------------------------------------------------------------------------- writing


def write_video(path: str | Path, frames: Iterable[bytes | np.ndarray], fps: float,
                quality: int = 90) -> VideoInfo:
    """Write ``frames`` (JPEG bytes, or uint8 RGB arrays encoded at ``quality``) as a
    Motion-JPEG clip; the container follows the suffix (``.avi``, ``.mkv`` or ``.mov``).

    The JPEG bytes go into the file as they are (one packet per frame, no re-encoding), in
    FFmpeg's bit-exact mode, so equal inputs give equal files. The file appears at ``path`` only
    when complete. Returns what :func:`probe_video` reports for it.
    """
    import av

    path = Path(path)
    muxer = MUXERS.get(path.suffix.lower())
    if muxer is None:
        raise ValueError(f"{path}: unknown video suffix; use one of {sorted(MUXERS)}")
    rate = _rate(fps)
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=muxer, options={"fflags": "+bitexact"}) as out:
            stream = None
            for count, (data, (width, height)) in enumerate(_jpeg_frames(frames, quality, path),
                                                            start=1):
                if stream is None:
                    stream = out.add_mux_stream(MJPEG, rate=rate, width=width, height=height)
                    stream.time_base = 1 / rate
                packet = av.Packet(data)
                packet.stream = stream
                packet.pts = packet.dts = count - 1
                packet.time_base = stream.time_base
                packet.is_keyframe = True
                out.mux(packet)
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
    return probe_video(path)


# --------------------------------------------------------------------------- reading


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    """The clip opened by PyAV; a missing or unreadable file is a one-line DataError."""
    import av

    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise DataError(f"{path}: not a video FFmpeg can read ({exc.strerror})") from None
    try:
        yield container
    finally:
        container.close()


def _probe(container: Any, path: Path) -> VideoInfo:
    streams = container.streams.video
    if not streams:
        raise DataError(f"{path}: no video stream (container {container.format.name})")
    stream = streams[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    frames = int(stream.frames)
    if frames <= 0:  # the container does not say (Matroska, streams cut short): count packets
        frames = sum(1 for p in container.demux(stream) if p.size)
    if frames <= 0:
        raise DataError(f"{path}: video stream without any frame")
    if not rate:
        raise DataError(f"{path}: the video stream gives no frame rate")
    context = stream.codec_context
    return VideoInfo(path, frames, float(rate), int(context.width), int(context.height),
                     context.name, container.format.name)


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, frame rate, size, codec and container of a clip (no frame is decoded).

    Raises:
        DataError: a missing file, a file FFmpeg cannot read, or one without a video stream.
    """
    path = Path(path)
    with _opened(path) as container:
        return _probe(container, path)


def _frames(path: Path, quality: int) -> Iterator[bytes]:
    with _opened(path) as container:
        stream = container.streams.video[0]
        if stream.codec_context.name == MJPEG:
            for i, packet in enumerate(p for p in container.demux(stream) if p.size):
                data = bytes(packet)
                if not data.startswith(_SOI):
                    raise DataError(f"{path}: frame {i} of the MJPEG stream is not JPEG data")
                yield data
        else:
            for frame in container.decode(stream):
                yield encode_jpeg(frame.to_ndarray(format="rgb24"), quality)


def open_video(path: str | Path, quality: int = 90) -> tuple[VideoInfo, Iterator[bytes]]:
    """Open a clip as (info, iterator of JPEG frames).

    Motion-JPEG packets come out byte for byte; frames of any other codec are decoded and
    re-encoded as JPEG at ``quality`` (slow: time them through :func:`jpeg_clip`). Errors as
    :func:`probe_video`.
    """
    info = probe_video(path)
    return info, _frames(info.path, quality)


@contextmanager
def jpeg_clip(path: str | Path, scratch: str | Path, quality: int = 90) -> Iterator[Path]:
    """The clip as Motion-JPEG: ``path`` itself when it is, else a copy written to ``scratch``
    (decoded and re-encoded once, so that no timed loop pays for the other codec)."""
    info = probe_video(path)
    if info.codec == MJPEG:
        yield info.path
        return
    copy = Path(scratch) / f"{info.path.stem}.mjpeg.avi"
    write_video(copy, _frames(info.path, quality), info.fps, quality)
    try:
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def write_frame_archive(path: str | Path, video: str | Path, quality: int = 90,
                        max_frames: int | None = None) -> VideoInfo:
    """Store the frames of ``video`` (the first ``max_frames``; None: all) as a plain tar:
    ``frames/000000.jpg``, ``frames/000001.jpg``, ... and last ``clip.json`` (frames, fps,
    width, height, and the source clip's name, codec and container).

    The archive is uncompressed (JPEG does not compress further) and reproducible (fixed
    times, owners and modes), so an identical copy on a board is recognised by its checksum.
    Returns the archive's :class:`VideoInfo` (codec ``mjpeg``, container ``tar``).
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    info, frames = open_video(video, quality)
    count = 0
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            member = tarfile.TarInfo(name)
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            tar.addfile(member, io.BytesIO(data))

        for jpeg in itertools.islice(frames, max_frames):
            add(f"frames/{count:06d}.jpg", jpeg)
            count += 1
        index = {"format": "edgeprune-frames", "version": 1, "frames": count, "fps": info.fps,
                 "width": info.width, "height": info.height,
                 "source": {"name": info.path.name, "codec": info.codec,
                            "container": info.container}}
        add(ARCHIVE_INDEX, json.dumps(index, sort_keys=True).encode())
    return VideoInfo(Path(path), count, info.fps, info.width, info.height, MJPEG, "tar")


# --------------------------------------------------------------------------- demo clip


def _window(rng: np.random.Generator, src: tuple[int, int], aspect: float,
            zoom: float) -> np.ndarray:
    """A crop box (x0, y0, x1, y1) of the given aspect ratio, ``zoom`` times the largest one."""
    sw, sh = src
    if sw / sh >= aspect:
        full_w, full_h = sh * aspect, float(sh)
    else:
        full_w, full_h = float(sw), sw / aspect
    w, h = full_w * zoom, full_h * zoom
    x0, y0 = rng.uniform(0.0, sw - w), rng.uniform(0.0, sh - h)
    return np.array([x0, y0, x0 + w, y0 + h])


def _pan_zoom_frames(image: Image.Image, n: int, size: tuple[int, int],
                     rng: np.random.Generator, quality: int) -> Iterator[bytes]:
    """``n`` frames moving a crop window from one random box to another (a Ken Burns pan)."""
    height, width = size
    zooms = rng.uniform(0.55, 1.0, size=2)
    start = _window(rng, image.size, width / height, float(zooms[0]))
    end = _window(rng, image.size, width / height, float(zooms[1]))
    for i in range(n):
        t = i / max(n - 1, 1)
        box = tuple(float(v) for v in (1.0 - t) * start + t * end)
        frame = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
        yield encode_jpeg(frame, quality)


def make_demo_video(devkit_root: str | Path, sets: Sequence[str], out_path: str | Path,
                    n_frames: int, fps: float = 30.0, size: tuple[int, int] = (240, 320),
                    seed: int = 0, seconds_per_image: float = 1.0,
                    quality: int = 90) -> VideoInfo:
    """Build a deterministic Motion-JPEG clip from the test images of a VOC-layout dataset.

    Images are taken in a seeded random order; each is shown for ``seconds_per_image`` while a
    crop window pans and zooms across it, so consecutive frames differ like camera footage and
    the detector sees objects at changing scales. ``size`` is the frame (height, width). The same
    arguments always give the same bytes.
    """
    from edgeprune.data.voc import load_sets

    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (height, width) of at least 16 pixels, got {size}")
    annotations = sorted(load_sets(devkit_root, sets), key=lambda a: a.image_id)
    if not annotations:
        raise DataError(f"{devkit_root}: image sets {list(sets)} list no images for the demo video")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(annotations))
    per_image = max(1, round(fps * seconds_per_image))

    def frames() -> Iterator[bytes]:
        produced = 0
        for k in range(math.ceil(n_frames / per_image)):
            ann = annotations[int(order[k % len(order)])]
            try:
                with Image.open(ann.image_path) as img:
                    rgb = img.convert("RGB")
            except (OSError, ValueError) as exc:
                raise DataError(f"{ann.image_path}: cannot read image ({exc})") from None
            count = min(per_image, n_frames - produced)
            yield from _pan_zoom_frames(rgb, count, (int(size[0]), int(size[1])), rng, quality)
            produced += count

    return write_video(out_path, frames(), fps, quality)
