"""Pascal VOC detection evaluation (mAP) and the devkit detection-results file format.

The matching rules follow ``voc_eval.py`` of py-faster-rcnn (itself a port of the VOC devkit):

* per class, detections are ranked by descending score (stable: ties keep their input order);
* boxes are 1-based inclusive pixel boxes, so widths and heights carry a ``+ 1``;
* each detection is compared with every ground-truth box of its class in its image; if the best
  IoU is strictly above ``iou_threshold`` the detection is a true positive unless that box is
  difficult (then the detection is ignored: neither TP nor FP) or was already matched (then it is
  a false positive); a best IoU at or below the threshold is a false positive;
* recall is over ``npos``, the number of non-difficult ground-truth boxes of the class.

A class whose ``npos`` is 0 has no defined AP: it is reported as NaN and left out of the mean.

Detections are plain Python data: ``Detections`` maps a class name to a list of
``(image_id, score, xmin, ymin, xmax, ymax)`` tuples in VOC pixel coordinates.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeprune.data.voc import Annotation, load_annotations, read_imageset
from edgeprune.errors import DataError, EdgepruneError
from edgeprune.fileio import write_json, write_text

Detection = tuple[str, float, float, float, float, float]
"""``(image_id, score, xmin, ymin, xmax, ymax)`` with a 1-based inclusive pixel box."""
ClassDetections = list[Detection]
Detections = dict[str, ClassDetections]
Metric = Literal["voc07", "all"]

DEFAULT_PREFIX = "comp4_det_test_"


@dataclass(frozen=True)
class EvalResult:
    """Evaluation outcome. ``per_class_ap`` is NaN for classes without non-difficult ground truth;
    ``mean_ap`` (alias ``mAP``) averages the other classes (NaN if there are none)."""

    per_class_ap: dict[str, float]
    mean_ap: float
    metric: Metric
    iou_threshold: float
    npos: dict[str, int]
    num_detections: dict[str, int]

    @property
    def mAP(self) -> float:
        """The conventional name of :attr:`mean_ap`."""
        return self.mean_ap

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; NaN becomes None."""
        return {
            "metric": self.metric,
            "iou_threshold": self.iou_threshold,
            "mAP": _json_float(self.mean_ap),
            "per_class_ap": {k: _json_float(v) for k, v in self.per_class_ap.items()},
            "npos": dict(self.npos),
            "num_detections": dict(self.num_detections),
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------- AP


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """Average precision from a ranked list's cumulative recall and precision.

    ``use_07_metric``: the VOC2007 11-point interpolation, the mean over
    ``t = 0, 0.1, ..., 1`` (generated as ``np.arange(0, 1.1, 0.1)`` like the reference, so
    ``t = 0.3`` is really ``0.30000000000000004``) of the best precision at recall >= t (0 if the
    recall never gets there). Otherwise the VOC2010+ measure: the exact area under the precision
    envelope (precision made monotonically non-increasing in recall), its terms summed with
    ``math.fsum`` (correctly rounded, so the result does not depend on summation order: the
    bootstrap, which sums the same terms in another layout, reproduces it exactly).
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        total = 0.0
        for t in ELEVEN_POINTS:
            reached = rec >= t
            total += float(prec[reached].max()) if reached.any() else 0.0
        return total / 11.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return math.fsum(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).tolist())


ELEVEN_POINTS = np.arange(0.0, 1.1, 0.1)
"""The VOC2007 recall thresholds, exactly as the reference generates them."""


# --------------------------------------------------------------------------- matching


@dataclass
class _ClassTruth:
    """Ground truth of one class in one image."""

    boxes: np.ndarray
    difficult: np.ndarray


def _ground_truth(
    annotations: Sequence[Annotation], name: str
) -> tuple[dict[str, _ClassTruth], int]:
    """Per-image ground truth of class ``name`` and its count of non-difficult boxes."""
    truth: dict[str, _ClassTruth] = {}
    npos = 0
    for ann in annotations:
        keep = np.array([n == name for n in ann.names], dtype=bool)
        difficult = ann.difficult.astype(bool).reshape(-1)[keep]
        truth[ann.image_id] = _ClassTruth(
            boxes=ann.boxes[keep].astype(np.float64).reshape(-1, 4),
            difficult=difficult,
        )
        npos += int((~difficult).sum())
    return truth, npos


def iou_voc(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of ``gt`` using the VOC ``+ 1`` pixel convention."""
    ixmin = np.maximum(gt[:, 0], box[0])
    iymin = np.maximum(gt[:, 1], box[1])
    ixmax = np.minimum(gt[:, 2], box[2])
    iymax = np.minimum(gt[:, 3], box[3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inter = iw * ih
    union = ((box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
             + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0) - inter)
    return inter / union


def iou_matrix(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(k, g)`` IoU of each row of ``boxes`` with each row of ``gt``: row i equals
    ``iou_voc(boxes[i], gt)`` exactly (same operations, broadcast)."""
    box = boxes[:, None, :]
    ixmin = np.maximum(gt[None, :, 0], box[..., 0])
    iymin = np.maximum(gt[None, :, 1], box[..., 1])
    ixmax = np.minimum(gt[None, :, 2], box[..., 2])
    iymax = np.minimum(gt[None, :, 3], box[..., 3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inter = iw * ih
    union = ((box[..., 2] - box[..., 0] + 1.0) * (box[..., 3] - box[..., 1] + 1.0)
             + (gt[None, :, 2] - gt[None, :, 0] + 1.0) * (gt[None, :, 3] - gt[None, :, 1] + 1.0)
             - inter)
    return inter / union


def _check_detections(name: str, dets: ClassDetections, known_ids: set[str]) -> None:
    """Reject detections on unknown images or with non-finite numbers."""
    for det in dets:
        if det[0] not in known_ids:
            raise DataError(
                f"detection for class {name!r} refers to image id {det[0]!r}, "
                "which is not among the annotated images"
            )
        if not all(math.isfinite(float(v)) for v in det[1:]):
            raise DataError(f"detection for class {name!r} on image {det[0]!r} has a "
                            f"non-finite value: {det}")


@dataclass(frozen=True)
class RankedMatches:
    """One class's detections in rank order (descending score, ties in input order), each
    classified once: ``tp``/``fp`` are 0/1 floats (both 0: ignored, matched a difficult box),
    ``image`` the index of its image in the annotations. ``npos_per_image`` counts each image's
    non-difficult boxes of the class. A detection's status depends only on the higher-ranked
    detections of its own image, which is what lets the bootstrap resample images as weights."""

    name: str
    image: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    npos_per_image: np.ndarray

    @property
    def npos(self) -> int:
        """Non-difficult ground-truth boxes of the class over all images."""
        return int(self.npos_per_image.sum())


def ranked_matches(
    annotations: Sequence[Annotation], dets: ClassDetections, name: str,
    iou_threshold: float = 0.5,
) -> RankedMatches:
    """Rank the detections of class ``name`` and mark each TP, FP or ignored (VOC rules).

    Image by image, in rank order: a best IoU at or below the threshold (or no ground truth) is
    FP; a best match on a difficult box is ignored; on a box already matched, FP; else TP.
    """
    truth, _ = _ground_truth(annotations, name)
    _check_detections(name, dets, set(truth))
    index = {ann.image_id: i for i, ann in enumerate(annotations)}
    npos_per_image = np.array([int((~truth[ann.image_id].difficult).sum())
                               for ann in annotations], dtype=np.int64)
    order = np.argsort(-np.array([float(d[1]) for d in dets], dtype=np.float64), kind="stable")
    ranked = [dets[int(position)] for position in order]
    image = np.array([index[d[0]] for d in ranked], dtype=np.int64)
    boxes = np.array([d[2:] for d in ranked], dtype=np.float64).reshape(-1, 4)
    tp = np.zeros(len(ranked))
    fp = np.zeros(len(ranked))
    by_image = np.argsort(image, kind="stable")   # rank order within each image
    starts = np.flatnonzero(np.r_[True, image[by_image][1:] != image[by_image][:-1]])
    for ranks in np.split(by_image, starts[1:]) if len(by_image) else []:
        gt = truth[annotations[int(image[ranks[0]])].image_id]
        if len(gt.boxes) == 0:
            fp[ranks] = 1.0
            continue
        overlaps = iou_matrix(boxes[ranks], gt.boxes)
        best = overlaps.argmax(axis=1)
        best_iou = overlaps[np.arange(len(ranks)), best]
        difficult = gt.difficult.tolist()
        matched = [False] * len(difficult)
        for rank, box, iou in zip(ranks.tolist(), best.tolist(), best_iou.tolist(), strict=True):
            if iou <= iou_threshold:
                fp[rank] = 1.0
            elif difficult[box]:
                continue
            elif matched[box]:
                fp[rank] = 1.0
            else:
                matched[box] = True
                tp[rank] = 1.0
    return RankedMatches(name, image, tp, fp, npos_per_image)


def _curve(matches: RankedMatches) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative recall (NaN when npos is 0) and precision over ranked matches."""
    npos = matches.npos
    tp, fp = np.cumsum(matches.tp), np.cumsum(matches.fp)
    recall = tp / npos if npos > 0 else np.full(len(tp), np.nan)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return recall, precision


def class_pr(
    annotations: Sequence[Annotation], dets: ClassDetections, name: str,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cumulative recall and precision over the ranked detections of one class, and its npos.

    Recall is NaN throughout when npos is 0.
    """
    matches = ranked_matches(annotations, dets, name, iou_threshold)
    return (*_curve(matches), matches.npos)


def match_classes(annotations: Sequence[Annotation], detections: Detections,
                  classes: Sequence[str], iou_threshold: float = 0.5) -> list[RankedMatches]:
    """:func:`ranked_matches` of every class in ``classes`` (missing from ``detections``: none).

    A key of ``detections`` not in ``classes``, duplicate image ids, or a detection on an image
    id not in ``annotations`` raises DataError.
    """
    extra = sorted(set(detections) - set(classes))
    if extra:
        raise DataError(f"detections for class {extra[0]!r}, which is not being evaluated "
                        f"(classes: {', '.join(classes)})")
    ids = [ann.image_id for ann in annotations]
    if len(set(ids)) != len(ids):
        raise DataError("annotations contain duplicate image ids")
    return [ranked_matches(annotations, detections.get(name, []), name, iou_threshold)
            for name in classes]


def evaluate(
    annotations: Sequence[Annotation],
    detections: Detections,
    classes: Sequence[str],
    metric: Metric = "voc07",
    iou_threshold: float = 0.5,
) -> EvalResult:
    """Compute per-class AP and mAP of ``detections`` against ``annotations``.

    ``metric`` is ``"voc07"`` (11-point) or ``"all"`` (all-point, VOC2010+). Classes missing from
    ``detections`` have no detections; a key of ``detections`` not in ``classes``, or a detection
    on an image id not in ``annotations``, raises DataError.
    """
    if metric not in ("voc07", "all"):
        raise ValueError(f"metric must be 'voc07' or 'all', got {metric!r}")
    per_class: dict[str, float] = {}
    npos: dict[str, int] = {}
    counts: dict[str, int] = {}
    for name, matches in zip(classes, match_classes(annotations, detections, classes,
                                                    iou_threshold), strict=True):
        recall, precision = _curve(matches)
        npos[name] = matches.npos
        counts[name] = len(matches.tp)
        per_class[name] = (voc_ap(recall, precision, metric == "voc07")
                           if npos[name] > 0 else math.nan)
    defined = [ap for ap in per_class.values() if not math.isnan(ap)]
    mean_ap = float(np.mean(defined)) if defined else math.nan
    return EvalResult(per_class, mean_ap, metric, iou_threshold, npos, counts)


def format_result(result: EvalResult) -> str:
    """A plain-text table of per-class AP, npos and detection counts, ending with the mAP."""
    width = max([len("class"), *(len(name) for name in result.per_class_ap)])
    lines = [f"{'class':<{width}}  {'AP':>7}  {'npos':>6}  {'dets':>7}"]
    for name, ap in result.per_class_ap.items():
        ap_text = "    n/a" if math.isnan(ap) else f"{ap:7.4f}"
        lines.append(f"{name:<{width}}  {ap_text}  {result.npos[name]:>6}  "
                     f"{result.num_detections[name]:>7}")
    mean = "n/a" if math.isnan(result.mean_ap) else f"{result.mean_ap:.4f}"
    lines.append(f"mAP ({result.metric}, IoU > {result.iou_threshold:g}): {mean}")
    skipped = [n for n, ap in result.per_class_ap.items() if math.isnan(ap)]
    if skipped:
        lines.append("(n/a: no non-difficult ground truth; excluded from mAP: "
                     f"{', '.join(skipped)})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- devkit files


def _format_line(det: Detection) -> str:
    image_id = str(det[0])
    if not image_id or any(c.isspace() for c in image_id):
        raise DataError(f"image id {image_id!r} cannot be written to a results file")
    score, xmin, ymin, xmax, ymax = (float(v) for v in det[1:])
    return f"{image_id} {score:.6f} {xmin:.1f} {ymin:.1f} {xmax:.1f} {ymax:.1f}\n"


def write_detections(
    det_dir: Path, detections: Detections, classes: Sequence[str], prefix: str = DEFAULT_PREFIX
) -> list[Path]:
    """Write one devkit results file per class, ``<det_dir>/<prefix><class>.txt`` (empty when a
    class has no detections), each atomically. Returns the paths written."""
    paths = []
    for name in classes:
        path = Path(det_dir) / f"{prefix}{name}.txt"
        text = "".join(_format_line(det) for det in detections.get(name, []))
        write_text(path, text)
        paths.append(path)
    return paths


def _parse_line(line: str, path: Path, lineno: int) -> Detection:
    fields = line.split()
    expected = "'<image_id> <score> <xmin> <ymin> <xmax> <ymax>'"
    if len(fields) != 6:
        raise DataError(f"{path}:{lineno}: expected {expected}, got {line.strip()!r}")
    try:
        score, xmin, ymin, xmax, ymax = (float(v) for v in fields[1:])
    except ValueError:
        raise DataError(f"{path}:{lineno}: expected numbers after the image id in {expected}, "
                        f"got {line.strip()!r}") from None
    if not all(math.isfinite(v) for v in (score, xmin, ymin, xmax, ymax)):
        raise DataError(f"{path}:{lineno}: expected finite numbers, got {line.strip()!r}")
    return fields[0], score, xmin, ymin, xmax, ymax


def read_detections(
    det_dir: Path, classes: Sequence[str], prefix: str = DEFAULT_PREFIX,
    allow_missing: bool = False,
) -> Detections:
    """Read ``<det_dir>/<prefix><class>.txt`` for each class (blank lines are skipped).

    A missing directory always raises DataError; a missing class file raises DataError unless
    ``allow_missing``, in which case the class has no detections.
    """
    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise DataError(f"{det_dir}: detections directory not found")
    detections: Detections = {}
    for name in classes:
        path = det_dir / f"{prefix}{name}.txt"
        if not path.is_file():
            if allow_missing:
                detections[name] = []
                continue
            raise DataError(f"{path}: detections file for class {name!r} not found")
        lines = path.read_text().splitlines()
        detections[name] = [
            _parse_line(line, path, lineno)
            for lineno, line in enumerate(lines, start=1) if line.strip()
        ]
    return detections


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edgeprune.evaluate",
        description="Pascal VOC mAP of devkit-format detection files.",
    )
    parser.add_argument("--annotations", required=True, type=Path,
                        help="the Annotations directory (<id>.xml files)")
    parser.add_argument("--imageset", required=True, type=Path,
                        help="image set file listing the ids to evaluate")
    parser.add_argument("--detections", required=True, type=Path,
                        help="directory holding <prefix><class>.txt result files")
    parser.add_argument("--metric", choices=("voc07", "all"), default="voc07",
                        help="11-point VOC2007 AP or all-point VOC2010+ AP (default voc07)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated class names (default: classes in the annotations)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="results file name prefix")
    parser.add_argument("--iou-threshold", type=float, default=0.5,
                        help="a match needs IoU strictly above this (default 0.5)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="treat a missing class file as no detections")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    parser.add_argument("--bootstrap", type=_positive_int, default=None, metavar="N",
                        help="also print the mAP's 95%% interval from N bootstrap resamples of "
                             "the test images (percentile interval)")
    parser.add_argument("--compare", type=Path, default=None, metavar="OTHER_DETECTIONS_DIR",
                        help="also print the paired bootstrap difference mAP(other) - mAP(main) "
                             "with its 95%% interval (N from --bootstrap, default 1000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the bootstrap resamples (default 0)")
    return parser


def _class_list(text: str | None, annotations: Sequence[Annotation]) -> list[str]:
    """Classes from ``--classes``, or the sorted names found in the annotations."""
    if text is None:
        return sorted({name for ann in annotations for name in ann.names})
    classes = [name.strip() for name in text.split(",") if name.strip()]
    if not classes:
        raise DataError(f"--classes: expected comma-separated class names, got {text!r}")
    return classes


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _run(args: argparse.Namespace) -> tuple[EvalResult, dict[str, Any], list[str]]:
    """Evaluate, then bootstrap / compare when asked: (result, extra JSON keys, extra lines)."""
    from edgeprune.measurement.bootstrap import bootstrap_map, paired_difference

    ids = read_imageset(args.imageset)
    annotations = load_annotations(args.annotations, ids, check_images=False)
    classes = _class_list(args.classes, annotations)
    detections = read_detections(args.detections, classes, args.prefix, args.allow_missing)
    result = evaluate(annotations, detections, classes, args.metric, args.iou_threshold)
    extra: dict[str, Any] = {}
    lines: list[str] = []
    if args.bootstrap is not None:
        interval = bootstrap_map(annotations, detections, classes, args.metric,
                                 args.iou_threshold, args.bootstrap, args.seed)
        extra["mAP_ci95"] = [_json_float(v) for v in interval.ci95]
        extra["bootstrap"] = {"resamples": interval.resamples, "seed": interval.seed,
                              "method": interval.method}
        lines.append(f"95% interval ({args.bootstrap} bootstrap resamples of "
                     f"{len(annotations)} test images, seed {args.seed}): "
                     f"[{interval.ci95[0]:.4f}, {interval.ci95[1]:.4f}]")
    if args.compare is not None:
        other = read_detections(args.compare, classes, args.prefix, args.allow_missing)
        resamples = args.bootstrap or 1000
        diff = paired_difference(annotations, detections, other, classes, args.metric,
                                 args.iou_threshold, resamples, args.seed)
        extra["compare"] = {"detections": str(args.compare), **diff.to_dict()}
        verdict = ("significant (interval excludes 0)" if diff.significant
                   else "within noise (interval holds 0)")
        lines.append(f"compared with {args.compare}: mAP {diff.map_b:.4f}; paired difference "
                     f"(other - main) {diff.diff:+.4f}, 95% interval "
                     f"[{diff.ci95[0]:+.4f}, {diff.ci95[1]:+.4f}] ({resamples} resamples, "
                     f"seed {args.seed}): {verdict}")
    return result, extra, lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0 on success and 2 on a data error."""
    args = _parser().parse_args(argv)
    try:
        result, extra, lines = _run(args)
        if args.json is not None:
            write_json(args.json, {**result.to_dict(), **extra})
    except EdgepruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join([format_result(result), *lines]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
