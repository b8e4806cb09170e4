"""Small clips, a detector spec and anchors matching tests/tiny_models.py, for the app-FPS tests,
and the board-side application script imported as a board runs it.

The tiny model has a 16x16 input, one 8x8 feature map with two anchors per cell (aspect ratio
1 plus the extra square anchor) and two classes, so its spec and anchors are written out here.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from tiny_models import IMAGE_SIZE, NUM_ANCHORS, NUM_CLASSES

from edgeprune.data.video import VideoInfo, write_video
from edgeprune.detection.model_io import anchors_from_spec
from edgeprune.fileio import write_json

TINY_SPEC: dict[str, Any] = {
    "arch": "mobilenet_v2_ssd",
    "num_classes": NUM_CLASSES,
    "input_size": [IMAGE_SIZE, IMAGE_SIZE],
    "width_multiplier": 1.0,
    "widths": None,
    "min_scale": 0.2,
    "max_scale": 0.9,
    "aspect_ratios": [1.0],
    "feature_sizes": [[IMAGE_SIZE // 2, IMAGE_SIZE // 2]],
}


def tiny_anchors() -> np.ndarray:
    """Anchors of the tiny model, (NUM_ANCHORS, 4) centre form."""
    anchors = anchors_from_spec(TINY_SPEC)
    assert anchors.shape == (NUM_ANCHORS, 4)
    return anchors


def write_tiny_spec(path: Path) -> Path:
    """Write the spec JSON (as model_io.save_spec would) and return its path."""
    write_json(path, TINY_SPEC)
    return path


def random_frames(n: int, size: tuple[int, int] = (24, 32), seed: int = 0) -> list[np.ndarray]:
    """``n`` smooth random RGB frames of (height, width) ``size``."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        coarse = rng.uniform(0, 255, size=(4, 4, 3))
        frame = np.kron(coarse, np.ones((size[0] // 4 + 1, size[1] // 4 + 1, 1)))
        frames.append(frame[: size[0], : size[1]].astype(np.uint8))
    return frames


def write_clip(path: Path, n: int, size: tuple[int, int] = (24, 32), fps: float = 25.0,
               seed: int = 0) -> VideoInfo:
    """A Motion-JPEG AVI of ``n`` random frames."""
    return write_video(path, random_frames(n, size, seed), fps)


def board_remote_app() -> ModuleType:
    """``remote_app`` imported the way a board runs it: the files app_fps ships
    (``BOARD_FILES``) copied into one folder, and nothing else of edgeprune on the path."""
    from edgeprune.measurement.app_fps import BOARD_FILES

    if "remote_app" in sys.modules:
        return sys.modules["remote_app"]
    board = Path(tempfile.mkdtemp(prefix="edgeprune-board-"))
    atexit.register(shutil.rmtree, board, True)
    for name, source in BOARD_FILES.items():
        shutil.copyfile(source, board / name)
    sys.path.insert(0, str(board))
    try:
        import remote_app
    finally:
        sys.path.remove(str(board))
    return remote_app
