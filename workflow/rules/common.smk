# Shared helpers: config validation, derived lists, and input functions.
import os
import time
import uuid

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from edgeprune import config as C
from edgeprune.errors import ConfigError

validate(config, "../schemas/config.schema.yaml")
try:
    C.check(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# One id for every job of this invocation: MLflow runs are tagged with it.
os.environ.setdefault("EDGEPRUNE_DAG_RUN", time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])

RESULTS = "results"
ARCHS = list(config["detectors"])
THREADS = int(config["threads"])


wildcard_constraints:
    arch="|".join(ARCHS),


def data_ready(wildcards=None):
    """The generated dataset's summary (synthetic source) or nothing (a local VOCdevkit)."""
    if config["data"]["source"] == "synthetic":
        return [f"{RESULTS}/data/synthetic.json"]
    root = C.devkit_root(config)
    if not root.is_dir():
        raise WorkflowError(f"config key 'data.root': VOCdevkit directory {root} does not exist")
    return []


def model_file(wildcards):
    """Keras model of a variant (``base`` or a pruned variant)."""
    return f"{RESULTS}/models/{wildcards.arch}/{wildcards.variant}.keras"


def spec_file(wildcards):
    """Spec JSON (architecture, widths, anchor layout) of a variant."""
    return f"{RESULTS}/models/{wildcards.arch}/{wildcards.variant}.spec.json"


def artifact_file(wildcards):
    """The file a runtime reads: Keras model, TFLite flatbuffer or OpenVINO IR."""
    rt = wildcards.runtime
    if rt == "keras":
        return model_file(wildcards)
    if rt.startswith("tflite-"):
        return f"{RESULTS}/tflite/{wildcards.arch}/{wildcards.variant}_{rt[7:]}.tflite"
    if rt.startswith("openvino-"):
        return f"{RESULTS}/openvino/{wildcards.arch}/{wildcards.variant}_{rt[9:]}.xml"
    raise WorkflowError(f"unknown runtime {rt!r}")


# ----------------------------------------------------------------------------- targets
from edgeprune.targets import enabled_targets, parse_targets

try:
    TARGETS = enabled_targets(parse_targets(config))
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


def tflite_targets():
    """Enabled targets whose runtime times .tflite files (Table 2's FPS columns)."""
    return [n for n, t in TARGETS.items() if t.runtime in ("litert-python", "benchmark_model")]


def latency_file(target, arch, variant, dtype):
    """Latency JSON of one model on one target."""
    return f"{RESULTS}/latency/{target}/{arch}/{variant}_{dtype}.json"
