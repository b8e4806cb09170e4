# Helpers of the edge-device stage (workflow/rules/devices.smk, which includes this file).
#
# Targets come from the `targets:` config section (edgeprune.targets); the `app:` section picks
# the clip (null: a demo clip generated from the embedded test split) and how many frames are
# timed. Every physical device is a Snakemake resource with a default limit of 1
# (device_host, device_ssh_<host>_<port>, device_adb_<serial>), and each timing job takes one unit
# of its own device, so two timing jobs never share a device. Jobs on this machine also take
# every core, so nothing else runs beside them while they time.
import re

from snakemake.exceptions import WorkflowError

from edgeprune.errors import ConfigError
from edgeprune.stages.devices import app_settings, device_resource
from edgeprune.targets import enabled_targets, parse_targets

# Every configured target, disabled ones included, so that asking for a disabled target's result
# fails with the documented TargetError. (common.smk's TARGETS holds the enabled ones only.)
try:
    CONFIGURED_TARGETS = parse_targets(config)
    APP = app_settings(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

ENABLED_TARGETS = list(enabled_targets(CONFIGURED_TARGETS))
DEVICE_OF = {name: device_resource(target) for name, target in CONFIGURED_TARGETS.items()}
DEVICES = sorted(set(DEVICE_OF.values()))
APP_VIDEO = APP.video or f"{RESULTS}/data/demo.avi"
LITERT_RUNTIMES = ("litert-python", "benchmark_model")

# Default limit 1 per device; `--resources device_host=2` on the command line still wins.
for _device in DEVICES:
    if _device not in workflow.global_resources:
        workflow.global_resources[_device] = 1


def device_resources():
    """For each device resource, a function giving 1 for jobs on that device and 0 otherwise."""
    return {dev: (lambda wildcards, dev=dev: int(DEVICE_OF[wildcards.target] == dev))
            for dev in DEVICES}


def timing_threads(wildcards):
    """All cores for a job timed on this machine; one for a remote device (the host waits)."""
    return workflow.cores if CONFIGURED_TARGETS[wildcards.target].transport == "local" else 1


def timing_model(wildcards):
    """The model file a target's runtime reads: .tflite for LiteRT, OpenVINO IR otherwise."""
    stem = f"{wildcards.arch}/{wildcards.variant}_{wildcards.dtype}"
    if CONFIGURED_TARGETS[wildcards.target].runtime in LITERT_RUNTIMES:
        return f"{RESULTS}/tflite/{stem}.tflite"
    return f"{RESULTS}/openvino/{stem}.xml"


def latency_results(archs, variants, dtypes, targets=None):
    """Latency JSONs, one per enabled target (or `targets`) x arch x variant x dtype."""
    return expand(f"{RESULTS}/latency/{{target}}/{{arch}}/{{variant}}_{{dtype}}.json",
                  target=targets or ENABLED_TARGETS, arch=archs, variant=variants, dtype=dtypes)


def app_results(archs, variants, dtypes, targets=None):
    """Application-FPS JSONs; adb targets are left out (no Python on the device)."""
    names = [t for t in (targets or ENABLED_TARGETS) if CONFIGURED_TARGETS[t].transport != "adb"]
    return expand(f"{RESULTS}/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.json",
                  target=names, arch=archs, variant=variants, dtype=dtypes)


TIMING_CONSTRAINTS = {
    "target": "|".join(re.escape(name) for name in CONFIGURED_TARGETS),
    "variant": "[A-Za-z0-9]+",
    "dtype": "[A-Za-z0-9]+",
}
