from edgeprune.jobs import run_tracked
from edgeprune.stages.devices import latency

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, latency, target=wc.target, arch=wc.arch, variant=wc.variant,
            dtype=wc.dtype, model_path=snakemake.input.model, out_json=snakemake.output.json,
            raw_log=snakemake.output.raw)
