"""Motion-JPEG AVI files without a video library, and the demo clip for application FPS.

An MJPEG AVI is a RIFF file whose video frames are plain JPEG images, one ``00dc`` chunk each::

    RIFF 'AVI '
      LIST 'hdrl'
        'avih'  main header (frame period, frame count, size)
        LIST 'strl'
          'strh'  stream header: type 'vids', handler 'MJPG', rate/scale = frames per second
          'strf'  BITMAPINFOHEADER: width, height, compression 'MJPG'
      LIST 'movi'
        '00dc'  JPEG bytes of frame 0, 1, ... (each chunk padded to an even length)
      'idx1'  one 16-byte entry per frame: id, key-frame flag, offset from 'movi', length

Every frame is therefore decodable on its own with Pillow, which is exactly the per-frame work an
application does, and the reader needs nothing but :mod:`struct`. The reader also accepts files
written by ffmpeg (``JUNK`` padding, OpenDML ``odml``/``indx``/``AVIX`` extensions, ``LIST 'rec '``
groups, empty chunks for dropped frames). Camera MJPEG frames that omit the Huffman tables decode
as they are: Pillow's libjpeg-turbo falls back to the standard tables. Other containers are read
through OpenCV when ``cv2`` happens to be installed; otherwise the error says how to convert
them.
"""

from __future__ import annotations

import importlib.util
import io
import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from edgeprune.errors import DataError
from edgeprune.fileio import atomic_path

__all__ = [
    "CONVERT_HINT",
    "NotMjpegAviError",
    "VideoInfo",
    "convert_to_mjpeg_avi",
    "encode_jpeg",
    "make_demo_video",
    "open_video",
    "probe_mjpeg_avi",
    "read_mjpeg_avi",
    "write_mjpeg_avi",
]

CONVERT_HINT = "convert it with: ffmpeg -i in.mp4 -c:v mjpeg -q:v 3 -an out.avi"
#: biCompression / stream handler codes whose frames are baseline JPEG images.
MJPEG_CODECS = frozenset({"MJPG", "JPEG", "AVRN", "DMB1"})

_AVIF_HASINDEX = 0x10
_AVIIF_KEYFRAME = 0x10
_AVIH = struct.Struct("<14I")
_STRH = struct.Struct("<4s4sIHHIIIIIIiI4h")
_STRF = struct.Struct("<IiiHH4sIiiII")
_IDX1_ENTRY = struct.Struct("<4sIII")
_CHUNK = struct.Struct("<4sI")
_SOI = b"\xff\xd8"


class NotMjpegAviError(DataError):
    """The file is not a Motion-JPEG AVI (another container, or AVI with another codec)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a clip before decoding it."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    container: str = "avi"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"path": str(self.path), "frames": self.frames, "fps": self.fps,
                "width": self.width, "height": self.height, "codec": self.codec,
                "container": self.container}


# --------------------------------------------------------------------------- JPEG helpers


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
    """(width, height) of JPEG bytes, read from the header only."""
    if not data.startswith(_SOI):
        raise ValueError(f"{where}: not JPEG data (no FFD8 start-of-image marker)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: unreadable JPEG header ({exc})") from None


# --------------------------------------------------------------------------- writer


def _rate(fps: float) -> tuple[int, int]:
    """(rate, scale) with rate / scale == fps, e.g. 29.97 -> (30000, 1001)."""
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 0 < fps <= 1000):
        raise ValueError(f"fps must be a number in (0, 1000], got {fps!r}")
    frac = Fraction(fps).limit_denominator(1001)
    return frac.numerator, frac.denominator


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    return _CHUNK.pack(fourcc, len(payload)) + payload + b"\0" * (len(payload) & 1)


def _list(kind: bytes, payload: bytes) -> bytes:
    return _CHUNK.pack(b"LIST", 4 + len(payload)) + kind + payload


def _header(width: int, height: int, rate: int, scale: int, frames: int, max_chunk: int,
            movi_size: int, file_size: int) -> bytes:
    """RIFF header, hdrl list and the movi list header (fixed length for any values)."""
    usec = round(1e6 * scale / rate)
    avih = _AVIH.pack(usec, math.ceil(max_chunk * rate / scale), 0, _AVIF_HASINDEX, frames, 0, 1,
                      max_chunk, width, height, 0, 0, 0, 0)
    strh = _STRH.pack(b"vids", b"MJPG", 0, 0, 0, 0, scale, rate, 0, frames, max_chunk, -1, 0,
                      0, 0, min(width, 32767), min(height, 32767))
    strf = _STRF.pack(40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0)
    hdrl = _list(b"hdrl", _chunk(b"avih", avih) + _list(b"strl", _chunk(b"strh", strh)
                                                       + _chunk(b"strf", strf)))
    riff = _CHUNK.pack(b"RIFF", max(file_size - 8, 0)) + b"AVI "
    return riff + hdrl + _CHUNK.pack(b"LIST", movi_size) + b"movi"


def _frame_bytes(frame: bytes | np.ndarray, quality: int) -> bytes:
    if isinstance(frame, bytes | bytearray | memoryview):
        return bytes(frame)
    return encode_jpeg(frame, quality)


def write_mjpeg_avi(path: str | Path, frames: Iterable[bytes | np.ndarray], fps: float,
                    quality: int = 90) -> VideoInfo:
    """Write ``frames`` (JPEG bytes, or uint8 RGB arrays encoded at ``quality``) as an MJPEG AVI.

    Frames are streamed to disk; all must have the size of the first. The file appears at
    ``path`` only when complete. Returns what :func:`probe_mjpeg_avi` would report.
    """
    rate, scale = _rate(fps)
    path = Path(path)
    index: list[tuple[int, int]] = []  # (offset from 'movi', length)
    size: tuple[int, int] | None = None
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        header_len = len(_header(1, 1, rate, scale, 0, 0, 0, 0))
        fh.write(b"\0" * header_len)
        offset = 4  # first chunk follows the 'movi' list type
        for i, frame in enumerate(frames):
            data = _frame_bytes(frame, quality)
            frame_size = _jpeg_size(data, f"{path} frame {i}")
            if size is None:
                size = frame_size
            elif frame_size != size:
                raise ValueError(f"{path}: frame {i} is {frame_size[0]}x{frame_size[1]}, "
                                 f"frame 0 is {size[0]}x{size[1]}; all frames need one size")
            fh.write(_chunk(b"00dc", data))
            index.append((offset, len(data)))
            offset += 8 + len(data) + (len(data) & 1)
        if size is None:
            raise ValueError(f"{path}: no frames to write")
        idx1 = b"".join(_IDX1_ENTRY.pack(b"00dc", _AVIIF_KEYFRAME, off, n) for off, n in index)
        fh.write(_chunk(b"idx1", idx1))
        file_size = fh.tell()
        fh.seek(0)
        fh.write(_header(size[0], size[1], rate, scale, len(index),
                         max(n for _, n in index), offset, file_size))
    return VideoInfo(path, len(index), rate / scale, size[0], size[1], "MJPG")


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class _Layout:
    """Where the frames of an MJPEG AVI are."""

    info: VideoInfo
    chunk_ids: tuple[bytes, ...]
    movi: tuple[tuple[int, int], ...]  # (start, end) of each movi list's payload


def _not_avi(path: Path, head: bytes) -> NotMjpegAviError:
    kinds = ((b"ftyp", 4, "an MP4/QuickTime file"), (b"\x1aE\xdf\xa3", 0, "a Matroska/WebM file"),
             (b"OggS", 0, "an Ogg file"), (b"RIFF", 0, "a RIFF file but not AVI"))
    what = next((name for magic, at, name in kinds if head[at:at + len(magic)] == magic),
                "not an AVI file")
    return NotMjpegAviError(f"{path}: {what}; expected a Motion-JPEG AVI; {CONVERT_HINT}")


def _chunks(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(fourcc, payload offset, payload size) of the chunks between ``start`` and ``end``.

    A file cut short (an interrupted recording) keeps its complete frames: a RIFF or LIST that
    runs past ``end`` is read up to ``end``, and a cut-off data chunk ends the walk.
    """
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        fourcc, size = _CHUNK.unpack(fh.read(8))
        if pos + 8 + size > end:
            if fourcc in (b"RIFF", b"LIST"):
                yield fourcc, pos + 8, end - pos - 8
            return
        yield fourcc, pos + 8, size
        pos += 8 + size + (size & 1)


def _list_type(fh: BinaryIO, offset: int) -> bytes:
    fh.seek(offset)
    return fh.read(4)


def _fourcc(raw: bytes) -> str:
    return raw.decode("latin-1").strip("\0 ").upper()


def _read_struct(fh: BinaryIO, offset: int, size: int, layout: struct.Struct) -> tuple:
    """Unpack a header, zero-padding one that an old writer stored shorter."""
    fh.seek(offset)
    return layout.unpack(fh.read(min(size, layout.size)).ljust(layout.size, b"\0"))


def _video_stream(fh: BinaryIO, hdrl: tuple[int, int], path: Path
                  ) -> tuple[int, float, int, int, str]:
    """(stream index, fps, width, height, codec) of the first video stream."""
    usec_per_frame, stream = 0, 0
    for fourcc, off, size in _chunks(fh, *hdrl):
        if fourcc == b"avih":
            usec_per_frame = _read_struct(fh, off, size, _AVIH)[0]
        if fourcc != b"LIST" or _list_type(fh, off) != b"strl":
            continue
        headers = {cc: (o, n) for cc, o, n in _chunks(fh, off + 4, off + size)}
        if b"strh" not in headers or headers[b"strh"][1] < 48:
            raise DataError(f"{path}: stream {stream} has no valid 'strh' header")
        strh = _read_struct(fh, *headers[b"strh"], _STRH)
        if strh[0] == b"vids":
            if b"strf" not in headers or headers[b"strf"][1] < _STRF.size:
                raise DataError(f"{path}: video stream {stream} has no BITMAPINFOHEADER")
            strf = _read_struct(fh, *headers[b"strf"], _STRF)
            scale, rate = strh[6], strh[7]
            fps = rate / scale if rate and scale else (
                1e6 / usec_per_frame if usec_per_frame else 0.0)
            codec = _fourcc(strf[5]) or _fourcc(strh[1])
            return stream, fps, strf[1], abs(strf[2]), codec
        stream += 1
    raise NotMjpegAviError(f"{path}: AVI file without a video stream; {CONVERT_HINT}")


def _riff_lists(fh: BinaryIO, file_size: int
                ) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The hdrl list and every movi list, across the AVI and any OpenDML 'AVIX' segments."""
    hdrl: tuple[int, int] | None = None
    movi: list[tuple[int, int]] = []
    for fourcc, off, size in _chunks(fh, 0, file_size):
        kind = _list_type(fh, off)
        if fourcc != b"RIFF" or kind not in (b"AVI ", b"AVIX"):
            continue
        for inner, ioff, isize in _chunks(fh, off + 4, off + size):
            if inner != b"LIST":
                continue
            list_type = _list_type(fh, ioff)
            if list_type == b"hdrl" and hdrl is None:
                hdrl = (ioff + 4, ioff + isize)
            elif list_type == b"movi":
                movi.append((ioff + 4, ioff + isize))
    return hdrl, movi


def _frame_chunks(fh: BinaryIO, layout: _Layout) -> Iterator[tuple[int, int]]:
    """(offset, size) of every non-empty frame chunk, descending into 'rec ' lists."""

    def walk(start: int, end: int) -> Iterator[tuple[int, int]]:
        for fourcc, off, size in _chunks(fh, start, end):
            if fourcc == b"LIST":
                yield from walk(off + 4, off + size)
            elif fourcc in layout.chunk_ids and size > 0:  # empty chunk = dropped frame
                yield off, size

    for start, end in layout.movi:
        yield from walk(start, end)


def _layout(path: Path) -> _Layout:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: video file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read video ({exc})") from None
    with fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
            raise _not_avi(path, head)
        file_size = path.stat().st_size
        hdrl, movi = _riff_lists(fh, file_size)
        if hdrl is None or not movi:
            raise DataError(f"{path}: AVI file without {'an hdrl' if hdrl is None else 'a movi'} "
                            f"list (damaged?); {CONVERT_HINT}")
        stream, fps, width, height, codec = _video_stream(fh, hdrl, path)
        if codec not in MJPEG_CODECS:
            raise NotMjpegAviError(f"{path}: AVI whose video codec is {codec!r}, not Motion-JPEG "
                                   f"(MJPG); {CONVERT_HINT}")
        ids = (f"{stream:02d}dc".encode(), f"{stream:02d}db".encode())
        partial = _Layout(VideoInfo(path, 0, fps, width, height, codec), ids, tuple(movi))
        frames = sum(1 for _ in _frame_chunks(fh, partial))
    if frames == 0:
        raise DataError(f"{path}: MJPEG AVI without any frame")
    if fps <= 0:
        raise DataError(f"{path}: AVI stream header gives no frame rate")
    return _Layout(VideoInfo(path, frames, fps, width, height, codec), ids, tuple(movi))


def probe_mjpeg_avi(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size of an MJPEG AVI (headers and chunk headers only).

    Raises:
        NotMjpegAviError: another container, or an AVI with a non-JPEG codec (the message names
            the file and gives the ffmpeg command that converts it).
        DataError: a missing, truncated or damaged file.
    """
    return _layout(Path(path)).info


def read_mjpeg_avi(path: str | Path) -> Iterator[bytes]:
    """Yield each frame of an MJPEG AVI as JPEG bytes, in order (errors as :func:`probe_...`)."""
    layout = _layout(Path(path))
    return _read_frames(layout)


def _read_frames(layout: _Layout) -> Iterator[bytes]:
    with open(layout.info.path, "rb") as fh:
        for i, (off, size) in enumerate(list(_frame_chunks(fh, layout))):
            fh.seek(off)
            data = fh.read(size)
            if not data.startswith(_SOI):
                raise DataError(f"{layout.info.path}: frame {i} is not JPEG data")
            yield data


# --------------------------------------------------------------------------- any container


def _cv2_video(path: Path, quality: int) -> tuple[VideoInfo, Iterator[bytes]]:
    """Read another container through OpenCV, re-encoding each frame as JPEG."""
    import cv2  # optional dependency; ImportError is handled by the caller

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"{path}: OpenCV cannot open this video; {CONVERT_HINT}")
    info = VideoInfo(path, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                     float(capture.get(cv2.CAP_PROP_FPS)),
                     int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), "cv2", "cv2")

    def frames() -> Iterator[bytes]:
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    raise DataError(f"{path}: OpenCV could not re-encode a frame as JPEG")
                yield jpeg.tobytes()
        finally:
            capture.release()

    return info, frames()


def open_video(path: str | Path, quality: int = 90) -> tuple[VideoInfo, Iterator[bytes]]:
    """Open a clip as (info, iterator of JPEG frames).

    MJPEG AVIs are read directly, frame bytes untouched. Any other file is read through OpenCV
    if ``cv2`` is importable (frames re-encoded as JPEG at ``quality``); without OpenCV the
    :class:`NotMjpegAviError` says how to convert the file.
    """
    path = Path(path)
    try:
        layout = _layout(path)
    except NotMjpegAviError:
        if importlib.util.find_spec("cv2") is None:
            raise
        return _cv2_video(path, quality)
    return layout.info, _read_frames(layout)


def convert_to_mjpeg_avi(src: str | Path, dst: str | Path, quality: int = 90) -> VideoInfo:
    """Copy any readable clip (see :func:`open_video`) to an MJPEG AVI at ``dst``."""
    info, frames = open_video(src, quality)
    return write_mjpeg_avi(dst, frames, info.fps if info.fps > 0 else 30.0, quality)


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
    """Build a deterministic MJPEG clip from the test images of a VOC-layout dataset.

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

    return write_mjpeg_avi(out_path, frames(), fps, quality)
