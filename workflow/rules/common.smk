# Shared helpers: config validation, derived lists, and input functions.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from edgeprune import config as C
from edgeprune.compression.cluster.convert import RUNTIME_FORMAT as P2_RUNTIME_FORMAT
from edgeprune.compression.cluster.settings import paper2_settings
from edgeprune.errors import ConfigError
from edgeprune.fileio import remove_stale_temps
from edgeprune.reporting.tracking import (
    Tracking,
    end_invocation,
    git_source,
    new_dag_run,
    start_invocation,
    sync,
)
from edgeprune.compression.prune import variant_name
from edgeprune.stages.devices import app_settings, device_resource
from edgeprune.stages.paper1 import CONTROL as P1_CONTROL
from edgeprune.stages.paper2 import figure_paths, report_figures
from edgeprune.measurement.targets import enabled_targets, parse_targets

_errors = C.schema_errors(config, workflow.source_path("../schemas/config.schema.yaml"))
if _errors:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(_errors))
validate(config, "../schemas/config.schema.yaml")  # fills in the schema's defaults
try:
    C.check(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# One id for every job of this invocation (MLflow tag edgeprune.dag_run), made by the main
# snakemake process and handed to every job through the environment: local jobs and SLURM jobs
# (sbatch exports it) inherit it, executors that do not share the environment get it in the
# job's command (`envvars:`), and a job process that re-parses this file keeps it. onstart
# creates the invocation's parent MLflow run and passes its id the same way.
if workflow.is_main_process or not os.environ.get("EDGEPRUNE_DAG_RUN"):
    os.environ["EDGEPRUNE_DAG_RUN"] = new_dag_run()
os.environ.setdefault("EDGEPRUNE_PARENT_RUN", "")
# The conda env file (envs/edgeprune.yaml) and its post-deploy script find the project's lock
# and package through this: Snakemake builds the env from a copy under .snakemake/conda/.
os.environ["EDGEPRUNE_ROOT"] = workflow.basedir


envvars:
    "EDGEPRUNE_DAG_RUN",
    "EDGEPRUNE_PARENT_RUN",
    "EDGEPRUNE_ROOT",


onstart:
    # Before the first job: remove temporaries of writes a kill interrupted, log runs earlier
    # invocations left pending, end their killed runs, and open this invocation's parent run.
    remove_stale_temps(RESULTS)
    if TRACKING is not None:
        start_invocation(
            TRACKING,
            os.environ["EDGEPRUNE_DAG_RUN"],
            sys.argv[1:],
            git_source(workflow.basedir),
        )


onsuccess:
    if TRACKING is not None:
        end_invocation(TRACKING, os.environ["EDGEPRUNE_DAG_RUN"], "FINISHED")


onerror:
    if TRACKING is not None:
        end_invocation(TRACKING, os.environ["EDGEPRUNE_DAG_RUN"], "FAILED")


RESULTS = "results"
TRACKING = Tracking.from_config(config)
# A rerun with nothing to do runs no onstart: what a killed invocation left (open markers,
# pending runs) is ended or logged here, by the main process of a real run, when no other
# invocation holds this directory (Snakemake takes its lock after parsing).
if (
    TRACKING is not None
    and workflow.is_main_process
    and not getattr(workflow, "dryrun", True)
    and not any(Path(".snakemake/locks").glob("*"))
    and any(Path(TRACKING.state_dir).rglob("*.json"))
):
    sync(TRACKING, current_dag_run=os.environ["EDGEPRUNE_DAG_RUN"])
ARCHS = list(config["detectors"])
THREADS = int(config["threads"])


wildcard_constraints:
    arch="|".join(ARCHS),


def config_params(*paths):
    """A `params` function holding the config entries at dotted ``paths`` (``{arch}`` and
    ``{target}`` filled from the job's wildcards): editing one of them re-runs the rule's jobs
    through Snakemake's params rerun trigger; edits elsewhere leave them alone."""

    def digest(wildcards):
        values = {}
        for path in paths:
            path = path.format(**dict(wildcards.items()))
            node = config
            for key in path.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            values[path] = node
        return json.dumps(values, sort_keys=True, default=str)

    return digest


def data_ready(wildcards=None):
    """The generated dataset's summary (synthetic source) or nothing (a local VOCdevkit)."""
    if config["data"]["source"] == "synthetic":
        return [f"{RESULTS}/data/synthetic.json"]
    root = C.devkit_root(config)
    if not root.is_dir():
        raise WorkflowError(
            f"config key 'data.root': VOCdevkit directory {root} does not exist"
        )
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


# ----------------------------------------------------------------------------- edge devices
# Used by devices.smk, paper1.smk (Table 2 FPS columns) and paper2.smk (timing jobs).
# Targets come from the `targets:` config section (edgeprune.measurement.targets); the `app:` section picks
# the clip (null: a demo clip generated from the embedded test split) and how many frames are
# timed. Every physical device is a Snakemake resource with a default limit of 1
# (device_host, device_ssh_<host>_<port>, device_adb_<serial>), and each timing job takes one unit
# of its own device, so two timing jobs never share a device. Jobs on this machine also take
# every core, so nothing else runs beside them while they time.


# Every configured target, disabled ones included, so that asking for a disabled target's result
# fails with the documented TargetError; ENABLED_TARGETS holds the enabled ones.
try:
    CONFIGURED_TARGETS = parse_targets(config)
    APP = app_settings(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

ENABLED_TARGETS = list(enabled_targets(CONFIGURED_TARGETS))
DEVICE_OF = {
    name: device_resource(target) for name, target in CONFIGURED_TARGETS.items()
}
DEVICES = sorted(set(DEVICE_OF.values()))
APP_VIDEO = APP.video or f"{RESULTS}/data/demo.avi"
LITERT_RUNTIMES = ("litert-python", "benchmark_model")

# Default limit 1 per device; `--resources device_host=2` on the command line still wins.
for _device in DEVICES:
    if _device not in workflow.global_resources:
        workflow.global_resources[_device] = 1


def device_resources():
    """For each device resource, a function giving 1 for jobs on that device and 0 otherwise."""
    return {
        dev: (lambda wildcards, dev=dev: int(DEVICE_OF[wildcards.target] == dev))
        for dev in DEVICES
    }


def target_spec(wildcards):
    """The job's target as parsed, defaults included: a `params` value, so that editing the
    target's settings re-runs its timing jobs."""
    return repr(CONFIGURED_TARGETS[wildcards.target])


def timing_threads(wildcards):
    """All cores for a job timed on this machine; one for a remote device (the host waits).
    Submitted to a cluster without --cores (profiles/slurm) there is no core count here: the
    job asks SLURM for a whole node (--exclusive) and, on the node, takes all of its cores.
    """
    if CONFIGURED_TARGETS[wildcards.target].transport != "local":
        return 1
    return 1 if workflow.resource_settings.cores is None else workflow.cores


def timing_model(wildcards):
    """The model file a target's runtime reads: .tflite for LiteRT, OpenVINO IR otherwise."""
    stem = f"{wildcards.arch}/{wildcards.variant}_{wildcards.dtype}"
    if CONFIGURED_TARGETS[wildcards.target].runtime in LITERT_RUNTIMES:
        return f"{RESULTS}/tflite/{stem}.tflite"
    return f"{RESULTS}/openvino/{stem}.xml"


def tflite_targets():
    """Enabled targets whose runtime times .tflite files (Table 2's FPS columns)."""
    return [
        t for t in ENABLED_TARGETS if CONFIGURED_TARGETS[t].runtime in LITERT_RUNTIMES
    ]


def app_results(archs, variants, dtypes, targets=None):
    """Application-FPS JSONs; adb targets are left out (no Python on the device)."""
    names = [
        t
        for t in (ENABLED_TARGETS if targets is None else targets)
        if CONFIGURED_TARGETS[t].transport != "adb"
    ]
    return expand(
        f"{RESULTS}/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.json",
        target=names,
        arch=archs,
        variant=variants,
        dtype=dtypes,
    )


TIMING_CONSTRAINTS = {
    "target": "|".join(re.escape(name) for name in CONFIGURED_TARGETS),
    "variant": "[A-Za-z0-9]+",
    "dtype": "[A-Za-z0-9]+",
}


# ----------------------------------------------------------------------------- paper 1

P1 = config["paper1"]
P1_ARCH = P1["arch"]
P1_LEVELS = {variant_name(s): s for s in P1["sparsities"]}
# Table 1 rows: every sparsity level, then the fine-tuned unpruned control (paper1.control).
P1_ROWS = {**P1_LEVELS, **({P1_CONTROL: 0.0} if P1["control"] else {})}
P1_QUANT = [variant_name(s) for s in P1["quantize"]]
P1_DTYPES = list(P1["dtypes"]) + (["sparse"] if P1["sparse_tflite"] else [])


def train_metrics_file(variant):
    """Training (base) or pruning (fine-tune) metrics JSON of a variant."""
    kind = "train" if variant == "base" else "prune"
    return f"{RESULTS}/models/{P1_ARCH}/{variant}.{kind}.json"


def table2_timing_models(wildcards):
    """Table 2's converted models, timed together on one target by latency_compare; .tflite
    for LiteRT runtimes, OpenVINO IR otherwise."""
    litert = CONFIGURED_TARGETS[wildcards.target].runtime in LITERT_RUNTIMES
    root, ext = (
        (f"{RESULTS}/tflite", "tflite") if litert else (f"{RESULTS}/openvino", "xml")
    )
    return [
        f"{root}/{wildcards.arch}/{v}_{d}.{ext}" for v in P1_QUANT for d in P1_DTYPES
    ]


def table2_latency_inputs(wildcards=None):
    """One interleaved comparison JSON per enabled TFLite-capable target."""
    return expand(
        f"{RESULTS}/latency/{{target}}/{P1_ARCH}/table2.json", target=tflite_targets()
    )


def table2_app_inputs(wildcards=None):
    """End-to-end (application) FPS JSONs of every converted model on the same targets."""
    return app_results([P1_ARCH], P1_QUANT, P1_DTYPES, tflite_targets())


# ----------------------------------------------------------------------------- paper 2


try:
    P2 = paper2_settings(config)
except ConfigError as _exc:
    raise WorkflowError(str(_exc)) from None

# Each backend's results: Keras under results/paper2/, torch beside them under
# results/paper2/torch/. Paper 2's rules match either through the `p2root` wildcard; the first
# listed backend is the one the pareto chooser reads.
P2_ROOTS = {"keras": "paper2", "torch": "paper2/torch"}
P2_ROOT = f"{RESULTS}/{{p2root}}"
P2_FIGS = f"{P2_ROOT}/figures"
P2_ROOT_RE = "|".join(re.escape(P2_ROOTS[b]) for b in P2.backends)
P2_BACKENDS_DIR = f"{RESULTS}/paper2/backends"


def p2_root(backend):
    """The results folder of one backend (``results/paper2`` or ``results/paper2/torch``)."""
    return f"{RESULTS}/{P2_ROOTS[backend]}"


def p2_backend(wildcards):
    """The backend whose results folder the job's `p2root` wildcard names."""
    return next(b for b, root in P2_ROOTS.items() if root == wildcards.p2root)


def p2_all(pattern, **values):
    """`pattern` (with `{p2root}`) for every configured backend, other wildcards from `values`."""
    return [
        path
        for backend in P2.backends
        for path in expand(pattern, p2root=P2_ROOTS[backend], **values)
    ]


P2_TARGETS = list(P2.targets)
P2_METHODS = ["filter", "cluster"]
P2_TARGET_RE = "|".join(re.escape(t) for t in P2_TARGETS)
P2_LAYER_RE = "[A-Za-z0-9_]+"


#: What the `paper2` target asks of each backend's folder.
P2_REPORT_FILES = [
    "table1.csv",
    "table2.csv",
    "table3.csv",
    "periods.csv",
    "summary.md",
]
P2_FIGURES = [
    name
    for arch in P2.archs
    for name in [
        f"fig5_sweep_latency_{arch}",
        f"fig8_sweep_map_{arch}",
        *report_figures([arch])[arch],
    ]
]


def p2_pair_inputs(wildcards):
    """Both backends' build JSONs and model folders of one architecture (side-by-side rules)."""
    return {
        f"{backend}_{kind}": expand(
            f"{p2_root(backend)}/whole/{wildcards.arch}/{name}", method=P2_METHODS
        )
        for backend in ("keras", "torch")
        for kind, name in (("builds", "{method}.json"), ("models", "models_{method}"))
    }


def p2_params(*keys):
    """The paper2 settings a rule depends on (changing them re-runs its jobs)."""
    return config_params(*(f"paper2.{key}" for key in keys))


def p2_sweep_csvs(wildcards):
    return [
        f"{RESULTS}/{wildcards.p2root}/sweeps/{wildcards.arch}/{layer}/{target}.csv"
        for layer in P2.sweep.layers[wildcards.arch]
        for target in P2_TARGETS
    ]


def p2_figure_files(name):
    return [str(p) for p in figure_paths(P2_FIGS, name)]


def p2_report_figure(name, caption, figure, arch="{arch}"):
    """PNG (in `snakemake --report`, with its caption) and PDF of one paper 2 figure."""
    png, pdf = p2_figure_files(name)
    labels = {"figure": figure, "architecture": arch}
    shown = report(
        png, caption=f"../report/{caption}", category="Paper 2", labels=labels
    )
    return [shown, pdf]


def p2_table(path, caption):
    """A paper 2 table or text in `snakemake --report`, with its caption."""
    return report(path, caption=f"../report/{caption}", category="Paper 2 tables")


# ----------------------------------------------------------------------------- deployment chooser
# pareto.smk: every variant timed on a target, with the Pareto front marked.


PARETO_TARGETS = [
    t for t in ENABLED_TARGETS if t in tflite_targets() or t in P2_TARGETS
]


def pareto_inputs(wildcards):
    """Table 2 when paper 1 times on the target; paper 2's whole-model timings when it does."""
    inputs = {}
    if wildcards.target in tflite_targets():
        inputs["table2"] = f"{RESULTS}/table2.csv"
    if wildcards.target in P2_TARGETS:
        inputs["whole"] = expand(
            f"{p2_root(P2.backend)}/whole/{{arch}}/{wildcards.target}.csv",
            arch=P2.archs,
        )
    return inputs


def pareto_format(wildcards):
    """The file format paper 2 times on the target (its size estimate uses it)."""
    if wildcards.target not in P2_TARGETS:
        return ""
    return P2_RUNTIME_FORMAT[P2.targets[wildcards.target].runtime]
