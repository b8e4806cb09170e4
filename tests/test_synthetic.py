"""Tests for the synthetic VOC-layout dataset generator (edgeprune.data.synthetic)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from edgeprune.data.synthetic import SHAPES, generate_dataset
from edgeprune.data.voc import load_image, load_split, read_imageset
from edgeprune.errors import ConfigError

SIZE = (96, 112)  # (height, width): deliberately not square
CLASSES = ["circle", "square", "triangle", "star"]


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "SYNTH"
    summary = generate_dataset(root, CLASSES, {"train": 50, "val": 10, "test": 20}, SIZE, seed=3)
    return root, summary


def test_shapes_cover_required_names() -> None:
    required = {"circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon"}
    assert required <= set(SHAPES)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    splits = {"train": 6, "test": 3}
    for run, seed in (("a", 11), ("b", 11), ("c", 12)):
        generate_dataset(tmp_path / run / "SYNTH", list(SHAPES), splits, (64, 64), seed=seed)
    first, second, other = (_hashes(tmp_path / run / "SYNTH") for run in "abc")
    assert len(first) == 9 * 2 + 3  # jpg + xml per image, train/test/trainval lists
    assert first == second
    jpgs = [k for k in first if k.endswith(".jpg")]
    assert all(first[k] != other[k] for k in jpgs)


def test_images_do_not_depend_on_split_layout(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a" / "S", CLASSES, {"train": 4}, (64, 64), seed=5)
    generate_dataset(tmp_path / "b" / "S", CLASSES, {"train": 2, "test": 3}, (64, 64), seed=5)
    a, b = _hashes(tmp_path / "a" / "S"), _hashes(tmp_path / "b" / "S")
    for image_id in ("000001", "000002", "000003", "000004"):
        assert a[f"JPEGImages/{image_id}.jpg"] == b[f"JPEGImages/{image_id}.jpg"]
        assert a[f"Annotations/{image_id}.xml"] == b[f"Annotations/{image_id}.xml"]


def test_split_files_and_counts(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    main = root / "ImageSets" / "Main"
    train, val, test = (read_imageset(main / f"{s}.txt") for s in ("train", "val", "test"))
    assert train == [f"{i:06d}" for i in range(1, 51)]
    assert val == [f"{i:06d}" for i in range(51, 61)]
    assert test == [f"{i:06d}" for i in range(61, 81)]
    assert read_imageset(main / "trainval.txt") == train + val
    assert {k: v["images"] for k, v in summary["splits"].items()} == {
        "train": 50, "val": 10, "test": 20}
    assert summary["total"]["images"] == 80
    assert summary["classes"] == CLASSES


def test_annotations_parse_and_match_summary(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    height, width = SIZE
    anns = load_split(root.parent, ["SYNTH/train", "SYNTH/val", "SYNTH/test"])
    assert len(anns) == 80
    boxes = np.concatenate([a.boxes for a in anns])
    names = [n for a in anns for n in a.names]
    difficult = np.concatenate([a.difficult for a in anns])
    truncated = np.concatenate([a.truncated for a in anns])
    assert all((a.width, a.height) == (width, height) for a in anns)
    assert set(names) <= set(CLASSES)
    np.testing.assert_array_equal(boxes, np.round(boxes))  # integer pixel coordinates
    assert (boxes[:, 0] >= 1).all() and (boxes[:, 1] >= 1).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    total = summary["total"]
    assert total["objects"] == len(names) >= 80
    assert total["difficult"] == int(difficult.sum()) > 0
    assert total["truncated"] == int(truncated.sum()) > 0
    assert int(difficult.sum()) < 0.35 * len(names)
    assert total["per_class"] == {c: names.count(c) for c in CLASSES}
    # a truncated object is cut by the border, so its box touches it
    cut = boxes[truncated]
    touches = ((cut[:, 0] == 1) | (cut[:, 1] == 1) | (cut[:, 2] == width)
               | (cut[:, 3] == height))
    assert touches.all()
    image = load_image(anns[0].image_path, None)
    assert image.shape == (height, width, 3)


def test_objects_per_image_respects_limits(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "S", CLASSES, {"train": 12}, (64, 64), seed=1, min_objects=2,
                     max_objects=3)
    counts = [len(a) for a in load_split(tmp_path, ["S/train"])]
    assert max(counts) <= 3 and min(counts) >= 1  # a crowded image may place fewer than asked
    assert sum(counts) >= 2 * len(counts) - 2


def test_progress_callback(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_dataset(tmp_path / "S", ["ring"], {"train": 2, "val": 1}, (48, 48), seed=0,
                     progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_unknown_class_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        generate_dataset(tmp_path / "S", ["circle", "pentagon"], {"train": 1}, (64, 64), seed=0)
    message = str(info.value)
    assert "data.synthetic.classes" in message and "pentagon" in message
    assert all(name in message for name in SHAPES)
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"splits": {"train": 0}}, "data.synthetic.splits"),
        ({"splits": {"trainval": 3}}, "data.synthetic.splits"),
        ({"classes": []}, "data.synthetic.classes"),
        ({"classes": ["ring", "ring"]}, "data.synthetic.classes"),
        ({"scale_range": (0.5, 0.2)}, "data.synthetic.scale_range"),
        ({"image_size": (8, 64)}, "data.synthetic.image_size"),
        ({"seed": -1}, "data.synthetic.seed"),
    ],
)
def test_invalid_arguments_name_config_key(tmp_path: Path, kwargs: dict, key: str) -> None:
    args = {"classes": CLASSES, "splits": {"train": 1}, "image_size": (64, 64), "seed": 0}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=key):
        generate_dataset(tmp_path / "S", **args)
