from edgeprune.jobs import run_tracked
from edgeprune.stages.devices import latency_compare

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, latency_compare, target=wc.target, arch=wc.arch,
            models=list(snakemake.input.models), out_json=snakemake.output.json,
            raw_log=snakemake.output.raw, kept_log=snakemake.log.raw)
