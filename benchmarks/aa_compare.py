"""A/A resolution of the interleaved timing engine: a model against a byte copy of itself.

The half-width of the A/A difference interval is the smallest latency difference (%) a
comparison of this length resolves on this machine. Builds an untrained detector of the default
config's shape (or takes ``--model``), writes it and a byte copy, and times them together with
``edgeprune.measurement.compare`` on a host target::

    .venv/bin/python benchmarks/aa_compare.py --target host-openvino --seconds 60 --repeats 2

Prints one line per repeat (median, A/A difference with its 95 % interval, half-width, groups,
load average) and writes the comparisons to ``--json`` when given. Not a test: it takes minutes
and its numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edgeprune import tfenv  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow loads
from edgeprune.fileio import write_json
from edgeprune.measurement.compare import compare_on_target, settings_for
from edgeprune.measurement.targets import parse_targets


def build_model(out_dir: Path, arch: str, size: int, width: float, ext: str) -> Path:
    """An untrained detector (random weights, 20 classes) as OpenVINO IR or float32 TFLite."""
    import tf_keras

    from edgeprune.detection.models.registry import DetectorSpec, build_detector, export_model

    tf_keras.utils.set_random_seed(0)
    spec = DetectorSpec(arch=arch, num_classes=20, input_size=(size, size),
                        width_multiplier=width, first_stride=8)
    model = build_detector(spec, tf_keras)
    if ext == ".xml":
        from edgeprune.compression.openvino_rt import convert_to_ir

        return convert_to_ir(model, out_dir / "a.xml", fp16=False)
    import tensorflow as tf

    path = out_dir / "a.tflite"
    converter = tf.lite.TFLiteConverter.from_keras_model(export_model(model, tf_keras))
    path.write_bytes(converter.convert())
    return path


def byte_copy(model: Path, out_dir: Path) -> Path:
    """Copy ``model`` (and an IR's .bin) to ``out_dir/b.<ext>``."""
    copy = out_dir / f"b{model.suffix}"
    shutil.copyfile(model, copy)
    if model.suffix == ".xml":
        shutil.copyfile(model.with_suffix(".bin"), copy.with_suffix(".bin"))
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host-openvino")
    parser.add_argument("--model", help="existing .xml/.tflite (default: build one)")
    parser.add_argument("--arch", default="ssd_mobilenet_v1")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    target = parse_targets({"threads": args.threads or 2})[args.target]
    ext = ".tflite" if target.runtime == "litert-python" else ".xml"
    results = []
    with tempfile.TemporaryDirectory(prefix="aa-compare-") as tmp:
        work = Path(tmp)
        if args.model:
            model = work / f"a{Path(args.model).suffix}"
            shutil.copyfile(args.model, model)
            if model.suffix == ".xml":
                shutil.copyfile(Path(args.model).with_suffix(".bin"), model.with_suffix(".bin"))
        else:
            model = build_model(work, args.arch, args.size, args.width, ext)
        copy = byte_copy(model, work)
        for seed in range(args.repeats):
            load = os.getloadavg()[0]
            settings = settings_for(target, seed=seed, seconds=args.seconds)
            comparison = compare_on_target(target, [model, copy], settings)
            diff = comparison.differences[0]
            lo, hi = diff.ci95_pct
            print(f"seed {seed}: {target.name} threads {comparison.identity.get('threads_used')}"
                  f", median {comparison.models[0].median_ms:.4f} ms; A/A {diff.diff_pct:+.3f} % "
                  f"[{lo:+.3f}, {hi:+.3f}], half-width {(hi - lo) / 2:.3f} %, significant "
                  f"{diff.significant}; {len(comparison.raw['groups'])} groups in "
                  f"{comparison.raw['elapsed_s']:.0f} s; load {load:.1f} -> "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            results.append(comparison.to_dict())
    if args.json:
        write_json(args.json, {"runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
