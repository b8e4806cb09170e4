"""Tests for Pascal VOC reading (edgeprune.data.voc)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeprune.data.voc import (
    VOC_CLASSES,
    Annotation,
    class_indices,
    load_image,
    load_images,
    load_split,
    normalized_boxes,
    parse_annotation,
    read_imageset,
    to_voc_pixels,
)
from edgeprune.errors import ConfigError, DataError


def _object_xml(name: str, box: tuple[str, ...], difficult: str | None = "0",
                truncated: str | None = "0") -> str:
    flags = ""
    if difficult is not None:
        flags += f"<difficult>{difficult}</difficult>"
    if truncated is not None:
        flags += f"<truncated>{truncated}</truncated>"
    coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box,
                                                          strict=True))
    return f"<object><name>{name}</name>{flags}<bndbox>{coords}</bndbox></object>"


def _annotation_xml(objects: list[str], filename: str | None = "img.jpg", width: int = 100,
                    height: int = 80) -> str:
    fn = f"<filename>{filename}</filename>" if filename is not None else ""
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation>{fn}{size}{''.join(objects)}</annotation>"


def _write_image(path: Path, width: int = 100, height: int = 80, colour: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (colour, 255 - colour, 7)).save(path)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    _write_image(tmp_path / "JPEGImages" / "img.jpg")
    return tmp_path / "JPEGImages"


def test_voc_classes_standard_order() -> None:
    assert len(VOC_CLASSES) == 20
    assert VOC_CLASSES[0] == "aeroplane"
    assert VOC_CLASSES[14] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor"


def test_parse_flags_float_coords_and_missing_difficult(tmp_path: Path, image_dir: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(_annotation_xml([
        _object_xml("dog", ("10", "20", "50", "60"), difficult="1", truncated="0"),
        _object_xml("cat", ("1.5", "2.25", "99.5", "80"), difficult=None, truncated="1"),
        _object_xml("cat", ("3", "4", "5", "6"), difficult=None, truncated=None),
    ]))
    ann = parse_annotation(xml, image_dir)
    assert ann.image_id == "a"
    assert ann.image_path == image_dir / "img.jpg"
    assert (ann.width, ann.height) == (100, 80)
    assert ann.names == ("dog", "cat", "cat")
    assert ann.boxes.dtype == np.float32 and ann.boxes.shape == (3, 4)
    np.testing.assert_array_equal(ann.boxes[1], [1.5, 2.25, 99.5, 80.0])
    np.testing.assert_array_equal(ann.difficult, [True, False, False])
    np.testing.assert_array_equal(ann.truncated, [False, True, False])
    assert len(ann) == 3


def test_parse_without_objects_or_filename(tmp_path: Path) -> None:
    xml = tmp_path / "000042.xml"
    xml.write_text(_annotation_xml([], filename=None))
    ann = parse_annotation(xml, tmp_path, check_image=False)
    assert ann.image_path == tmp_path / "000042.jpg"
    assert ann.boxes.shape == (0, 4)
    assert ann.names == () and ann.difficult.shape == (0,)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<annotation><size><width>10</width>", "malformed"),
        (_annotation_xml(["<object><name>dog</name></object>"]), "bndbox"),
        (_annotation_xml([_object_xml("dog", ("1", "2", "3", "4")).replace(
            "<name>dog</name>", "")]), "<name>"),
        ("<annotation><filename>img.jpg</filename></annotation>", "<size>"),
        (_annotation_xml([_object_xml("dog", ("1", "two", "3", "4"))]), "'two'"),
        (_annotation_xml([_object_xml("dog", ("30", "2", "10", "4"))]), "xmin <= xmax"),
        (_annotation_xml([_object_xml("dog", ("1", "2", "102", "4"))]), "inside the 100x80"),
        (_annotation_xml([_object_xml("dog", ("1", "2", "3", "4"), difficult="2")]), "0 or 1"),
        (_annotation_xml([], width=0), "positive integer"),
    ],
)
def test_malformed_xml_names_file(tmp_path: Path, image_dir: Path, content: str,
                                  expected: str) -> None:
    xml = tmp_path / "broken_17.xml"
    xml.write_text(content)
    with pytest.raises(DataError) as info:
        parse_annotation(xml, image_dir)
    assert "broken_17.xml" in str(info.value)
    assert expected in str(info.value)


def test_box_one_pixel_outside_is_tolerated(tmp_path: Path, image_dir: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(_annotation_xml([_object_xml("dog", ("0", "0", "101", "81"))]))
    np.testing.assert_array_equal(parse_annotation(xml, image_dir).boxes[0], [0, 0, 101, 81])


def test_missing_image_names_image(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(_annotation_xml([], filename="missing_pic.jpg"))
    with pytest.raises(DataError, match="missing_pic.jpg"):
        parse_annotation(xml, tmp_path)
    assert parse_annotation(xml, tmp_path, check_image=False).image_id == "a"


@pytest.mark.parametrize("filename", ["../secret.jpg", "sub/../../x.jpg", "/etc/passwd",
                                      "..\\x.jpg", "C:/x.jpg"])
def test_filename_outside_the_image_folder_is_refused(tmp_path: Path, filename: str) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(_annotation_xml([], filename=filename))
    with pytest.raises(DataError, match=r"a\.xml: <filename> .* inside the dataset"):
        parse_annotation(xml, tmp_path, check_image=False)


def test_missing_xml_names_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.xml"):
        parse_annotation(tmp_path / "nothere.xml", tmp_path)


def test_read_imageset(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("000001\n\n  000002  \n000003 -1\n\n")
    assert read_imageset(path) == ["000001", "000002", "000003"]
    with pytest.raises(DataError, match="val.txt"):
        read_imageset(tmp_path / "val.txt")
    latin = tmp_path / "test.txt"
    latin.write_bytes("000001\nimage_\xe9t\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"test\.txt: image set is not UTF-8 text"):
        read_imageset(latin)


def _make_year(root: Path, year: str, split: str, ids: list[str], name: str = "dog") -> None:
    base = root / year
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for image_id in ids:
        (base / "Annotations" / f"{image_id}.xml").write_text(
            _annotation_xml([_object_xml(name, ("1", "1", "10", "10"))], f"{image_id}.jpg"))
        _write_image(base / "JPEGImages" / f"{image_id}.jpg")


def test_load_split_single_year_keeps_plain_ids(tmp_path: Path) -> None:
    _make_year(tmp_path, "VOC2007", "train", ["000001", "000002"])
    _make_year(tmp_path, "VOC2007", "val", ["000003"])
    anns = load_split(tmp_path, ["VOC2007/train", "VOC2007/val"])
    assert [a.image_id for a in anns] == ["000001", "000002", "000003"]
    assert anns[2].image_path == tmp_path / "VOC2007" / "JPEGImages" / "000003.jpg"


def test_load_split_two_years_prefixes_ids(tmp_path: Path) -> None:
    _make_year(tmp_path, "VOC2007", "trainval", ["000001"], name="dog")
    _make_year(tmp_path, "VOC2012", "trainval", ["000001"], name="cat")
    anns = load_split(tmp_path, ["VOC2007/trainval", "VOC2012/trainval"])
    assert [a.image_id for a in anns] == ["VOC2007_000001", "VOC2012_000001"]
    assert [a.names for a in anns] == [("dog",), ("cat",)]


def test_load_split_missing_files(tmp_path: Path) -> None:
    _make_year(tmp_path, "SYNTH", "train", ["000001", "000002"])
    (tmp_path / "SYNTH" / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="000002.jpg"):
        load_split(tmp_path, ["SYNTH/train"])
    assert len(load_split(tmp_path, ["SYNTH/train"], check_images=False)) == 2
    (tmp_path / "SYNTH" / "Annotations" / "000001.xml").unlink()
    with pytest.raises(DataError, match="000001.xml"):
        load_split(tmp_path, ["SYNTH/train"])
    with pytest.raises(DataError, match="test.txt"):
        load_split(tmp_path, ["SYNTH/test"])


def test_load_split_rejects_bad_spec_and_duplicates(tmp_path: Path) -> None:
    _make_year(tmp_path, "SYNTH", "train", ["000001"])
    with pytest.raises(ConfigError, match="YEAR_DIR"):
        load_split(tmp_path, ["train"])
    with pytest.raises(DataError, match="000001"):
        load_split(tmp_path, ["SYNTH/train", "SYNTH/train"])


def _ann(boxes: list[list[float]], names: tuple[str, ...], width: int = 100,
         height: int = 80) -> Annotation:
    n = len(names)
    return Annotation("img7", Path("img7.jpg"), width, height,
                      np.asarray(boxes, dtype=np.float32).reshape(-1, 4), names,
                      np.zeros(n, bool), np.zeros(n, bool))


def test_normalized_boxes_convention_and_round_trip() -> None:
    ann = _ann([[1, 1, 100, 80], [11, 21, 60, 40], [0, 0, 101, 81]], ("a", "b", "c"))
    norm = normalized_boxes(ann)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[0], [0, 0, 1, 1])
    np.testing.assert_allclose(norm[1], [0.1, 0.25, 0.6, 0.5])
    np.testing.assert_allclose(norm[2], [0, 0, 1, 1])  # clipped
    back = to_voc_pixels(norm, 100, 80)
    np.testing.assert_allclose(back[:2], ann.boxes[:2], atol=1e-4)
    np.testing.assert_allclose(back[2], [1, 1, 100, 80])  # clipped to the image
    np.testing.assert_allclose(to_voc_pixels(np.array([[-0.5, 0, 2, 1]]), 100, 80),
                               [[1, 1, 100, 80]])


def test_class_indices() -> None:
    ann = _ann([[1, 1, 2, 2]] * 3, ("cat", "dog", "cat"))
    idx = class_indices(ann, ["dog", "cat"])
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx, [1, 0, 1])
    with pytest.raises(DataError) as info:
        class_indices(ann, ["dog"])
    assert "img7" in str(info.value) and "'cat'" in str(info.value)


def test_load_image_and_images(tmp_path: Path) -> None:
    _write_image(tmp_path / "a.jpg", width=40, height=30, colour=200)
    _write_image(tmp_path / "b.png", width=20, height=10, colour=10)
    img = load_image(tmp_path / "a.jpg", None)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    small = load_image(tmp_path / "b.png", (16, 24))
    assert small.shape == (16, 24, 3)
    np.testing.assert_array_equal(small[0, 0], [10, 245, 7])

    anns = [Annotation(name, tmp_path / name, 1, 1, np.zeros((0, 4), np.float32), (),
                       np.zeros(0, bool), np.zeros(0, bool)) for name in ("a.jpg", "b.png")]
    calls: list[tuple[int, int]] = []
    batch = load_images(anns, (8, 12), progress=lambda done, total: calls.append((done, total)))
    assert batch.shape == (2, 8, 12, 3) and batch.dtype == np.uint8
    assert calls == [(1, 2), (2, 2)]
    with pytest.raises(DataError, match="b.png"):
        load_images(anns, None)  # different sizes without resizing


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg", None)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="corrupt.jpg"):
        load_image(bad, (8, 8))
